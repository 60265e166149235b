"""The documented ACL layout against a real redis-server: a DC's user cannot add a job.

Every operation below is the library's own code path (JobStream, Shipper, DeadLetters,
UplinkQueue) running as the restricted user, so the rules cover what the engines really send.
"""

from __future__ import annotations

import threading

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.returns.shipper import Shipper
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.acl import dc_rules, mom_rules
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.transport.connection import make_client
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.transport.queue import UplinkQueue
from salt_redis_syndic.transport.stream import JobStream
from salt_redis_syndic.wire.confirm import Confirm
from salt_redis_syndic.wire.sealed import seal

from support.fakes import FakeBus

pytestmark = pytest.mark.functional
NS = "redis_syndic"
MOM_SIGNER = Signer(Ed25519PrivateKey.generate())


@pytest.fixture
def acl_redis(redis_server):
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "mom", "on", ">mom-secret", *mom_rules(NS, "mom"))
    admin.execute_command("ACL", "SETUSER", "dc-east", "on", ">east-secret", *dc_rules(NS, "east", ["mom"]))
    return redis_server


def settings_for(server, user, password, role, tmp_path, **extra):
    block = {"role": role, "redis_url": f"redis://{user}:{password}@127.0.0.1:{server.port}/0", **extra}
    if role == "dc":
        block.update(dc="east", trusted_keys=[MOM_SIGNER.public_pem])
    opts = {"id": "mom" if role == "mom" else "east", "cachedir": str(tmp_path / role), "pki_dir": str(tmp_path / "pki")}
    return load_settings(opts, block)


def test_dc_user_reads_jobs_and_writes_its_uplink_but_cannot_add_jobs(acl_redis, tmp_path):
    mom = settings_for(acl_redis, "mom", "mom-secret", "mom", tmp_path)
    dc = settings_for(acl_redis, "dc-east", "east-secret", "dc", tmp_path)
    keys = Keys(NS)
    mom_client, dc_client = make_client(mom.redis), make_client(dc.redis)

    # MoM appends a job; the DC reads it.
    JobStream(mom_client, keys.jobs, 1000).append([{"b": b"body", "s": b"sig", "k": b"kid"}])
    entries = JobStream(dc_client, keys.jobs, 1000).read("0-0", count=10, block_ms=None)
    assert [fields[b"b"] for _, fields in entries] == [b"body"]
    assert JobStream(mom_client, keys.jobs, 1000).has(entries[0][0])  # the MoM's reconciliation check

    # The DC cannot add, trim or delete jobs.
    with pytest.raises(redis.exceptions.NoPermissionError):
        JobStream(dc_client, keys.jobs, 1000).append([{"b": b"evil", "s": b"x", "k": b"y"}])
    for command in (("XTRIM", keys.jobs, "MAXLEN", "0"), ("DEL", keys.jobs)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dc_client.execute_command(*command)
    # ...nor write another DC's status, nor read the MoM's uplink.
    with pytest.raises(redis.exceptions.NoPermissionError):
        dc_client.set(keys.status("west"), b"forged")
    with pytest.raises(redis.exceptions.NoPermissionError):
        dc_client.lrange(keys.uplink("mom"), 0, -1)

    # The DC ships its spool and heartbeat with the library's own code.
    spool = Spool(str(tmp_path / "spool"))
    spool.append([{"t": "ack", "jid": "20261127000000000001", "dc": "east", "status": "published",
                   "minions": ["m1"], "missing": [], "reason": "", "mom": "mom"}])
    signer = Signer(Ed25519PrivateKey.generate())
    ledger = DcLedger(str(tmp_path / "dc.sqlite"))
    shipper = Shipper(dc, spool, cache=None, counters=Counters(), stop=threading.Event(), wake=threading.Event(),
                      cursor=lambda: entries[-1][0], minion_count=lambda: 1, version="test", signer=signer, ledger=ledger)
    assert shipper.ship_once(dc_client) == 1
    shipper.heartbeat(dc_client)
    # The MoM confirms the batch; the DC reads the confirmation and forgets its copy.
    assert [seq for seq, _ in ledger.unconfirmed("mom")] == [1]
    mom_client.set(keys.confirm("mom", "east"), seal(Confirm("mom", "east", 1, 1, (), 1.0).encode(), MOM_SIGNER))
    shipper.reconcile(dc_client)
    assert ledger.unconfirmed("mom") == []
    with pytest.raises(redis.exceptions.NoPermissionError):
        dc_client.set(keys.confirm("mom", "east"), b"forged")
    DeadLetters(str(tmp_path / "dl"), keys.deadletter, 10, lambda: dc_client).add("dc:east", "1-0", "malformed", "", b"x")

    # The MoM drains the uplink and reads the status with its own user.
    queue = UplinkQueue(mom_client, keys.uplink("mom"), keys.inflight("mom"))
    items = queue.take(10, 0.1)
    assert len(items) == 1
    queue.done(items)
    assert queue.inflight() == []
    assert mom_client.smembers(keys.dcs) == {b"east"}
    assert mom_client.get(keys.status("east")) is not None
    assert mom_client.get(keys.dckey("east")).decode() == signer.public_pem
    # ...but cannot announce a key in another DC's name
    with pytest.raises(redis.exceptions.NoPermissionError):
        dc_client.set(keys.dckey("west"), b"forged")
    assert acl_redis.client().llen(keys.deadletter) == 1


def test_estate_loops_run_as_the_restricted_users(acl_redis, tmp_path):
    """The DC writes only its own estate records; the MoM reads them and may ask for a resync."""
    from salt_redis_syndic.estate.dc_estate import DcEstate
    from salt_redis_syndic.estate.mom_estate import MomEstate
    from salt_redis_syndic.ops.estate_report import minions_view
    from salt_redis_syndic.security.dckeys import DcKeyring

    keys = Keys(NS)
    pki = tmp_path / "pki"
    (pki / "minions").mkdir(parents=True)
    (pki / "minions" / "east-m1").write_text("key")
    signer = Signer(Ed25519PrivateKey.generate())
    dc = settings_for(acl_redis, "dc-east", "east-secret", "dc", tmp_path, drift_roots=[])
    mom = settings_for(acl_redis, "mom", "mom-secret", "mom", tmp_path, drift_roots=[], dc_keys={"east": signer.public_pem})
    dc_client, mom_client = make_client(dc.redis), make_client(mom.redis)
    dc_estate = DcEstate(dc, {"pki_dir": str(pki)}, signer, threading.Event())
    dc_estate.tick(dc_client, 1000.0)
    (pki / "minions" / "east-m2").write_text("key")
    dc_estate.tick(dc_client, 1001.0)  # a delta this time
    mom_estate = MomEstate(mom, {}, DcKeyring(str(tmp_path / "dckeys"), dict(mom.dc_keys)),
                           bus=FakeBus(), deadletters=None,
                           counters=Counters(), stop=threading.Event())
    mom_estate.tick(mom_client, 1001.0)
    assert set(minions_view(mom)) == {"east-m1", "east-m2"}
    mom_client.set(keys.resync("east"), b"1")
    dc_estate.tick(dc_client, 1002.0)  # reads and clears the MoM's request
    assert acl_redis.client().get(keys.resync("east")) is None
    for command in (("SET", keys.estate("west"), "x"), ("XADD", keys.roster_deltas("west"), "*", "r", "x"),
                    ("SET", keys.roster("west"), "x"), ("SET", keys.files("west"), "x"), ("GET", keys.resync("west"))):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dc_client.execute_command(*command)
    with pytest.raises(redis.exceptions.NoPermissionError):
        mom_client.set(keys.estate("east"), b"forged")
    # Key orders (key_management): the MoM writes them, the DC only reads its own.
    mom_client.xadd(keys.keycmd("east"), {"r": b"order"})
    assert len(dc_client.xread({keys.keycmd("east"): "0-0"})[0][1]) == 1
    for command in (("XADD", keys.keycmd("east"), "*", "r", "forged"), ("XREAD", "STREAMS", keys.keycmd("west"), "0-0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dc_client.execute_command(*command)
