"""Uplink batches Redis lost are pushed again: the library's Shipper and Collector, a real redis-server.

The loss is what a redis-server restarted without persistence does to an unread list (its
items are gone); confirmations, probes and re-pushes go through the real code paths.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.returns.shipper import Shipper
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.transport.connection import make_client
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.transport.queue import UplinkQueue
from salt_redis_syndic.wire.confirm import Confirm
from salt_redis_syndic.wire.sealed import seal

from support.fakes import FakeBus, FakeCache

pytestmark = pytest.mark.functional

KEYS = Keys("t")
MOM_KEY, EAST_KEY = Signer(Ed25519PrivateKey.generate()), Signer(Ed25519PrivateKey.generate())
JIDS = [f"2024050112345678900{i}" for i in range(1, 4)]


def ack(jid):
    return {"t": "ack", "jid": jid, "dc": "east", "status": "published", "minions": ["m1"], "missing": [],
            "reason": "", "mom": "mom1"}


def ret(jid):
    return {"t": "ret", "jid": jid, "dc": "east", "id": "m1", "load": {"return": True, "success": True}, "mom": "mom1"}


def test_batches_lost_in_redis_are_pushed_again_and_stored_once(redis_server, tmp_path):
    client = redis_server.client()
    dc = load_settings({"id": "dc-east", "redis_syndic": {
        "role": "dc", "dc": "east", "redis_url": redis_server.url, "namespace": "t", "trusted_keys": [MOM_KEY.public_pem],
        "state_dir": str(tmp_path / "dc"), "reconcile_interval": 0.5}})
    mom = load_settings({"id": "mom1", "redis_syndic": {
        "role": "mom", "redis_url": redis_server.url, "namespace": "t", "state_dir": str(tmp_path / "mom")}})
    spool = Spool(dc.spool_dir, fsync=False)
    ledger = DcLedger(os.path.join(dc.state_dir, "dc.sqlite"))
    counters = Counters()
    shipper = Shipper(dc, spool, None, counters, threading.Event(), threading.Event(), cursor=lambda: "0-0",
                      minion_count=lambda: 1, version="t", signer=EAST_KEY, ledger=ledger)
    cache, bus = FakeCache(), FakeBus()
    uplink = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    collector = Collector(mom, bus, cache, MomLedger(os.path.join(mom.state_dir, "mom.sqlite")), queue.Queue(),
                          DeadLetters(str(tmp_path / "dl"), KEYS.deadletter, 10, None), Counters(), threading.Event(),
                          keyring=DcKeyring(str(tmp_path / "keys"), {"east": EAST_KEY.public_pem}), signer=MOM_KEY,
                          uplink=uplink)
    rc = make_client(dc.redis)

    def mom_round():
        for raw in uplink.take(max_items=50, block_seconds=0.05):
            collector.process(raw)
        collector.reconcile(client, now=time.time(), confirm_now=True)

    def dc_round():
        shipper.reconcile_now(rc, time.time())

    # batch 1 (ack + return of job 1) arrives and is confirmed
    spool.append([ack(JIDS[0]), ret(JIDS[0])])
    shipper.ship_once(rc)
    mom_round()
    dc_round()
    assert cache.stored == [(JIDS[0], "m1")] and ledger.unconfirmed("mom1") == []

    # batches 2 and 3 are pushed, then Redis loses them before the MoM reads them
    spool.append([ack(JIDS[1]), ret(JIDS[1])])
    shipper.ship_once(rc)
    spool.append([ack(JIDS[2]), ret(JIDS[2])])
    shipper.ship_once(rc)
    assert client.delete(KEYS.uplink("mom1")) == 1
    assert [s for s, _ in ledger.unconfirmed("mom1")] == [2, 3]

    # nothing newer reaches the MoM: after reconcile_interval the DC probes, the MoM sees the
    # probe (batch 4), its confirmation shows the gap, the DC pushes 2 and 3 again
    deadline = time.monotonic() + 20
    while cache.stored != [(JIDS[0], "m1"), (JIDS[1], "m1"), (JIDS[2], "m1")] or ledger.unconfirmed("mom1"):
        assert time.monotonic() < deadline, (cache.stored, ledger.unconfirmed("mom1"))
        dc_round()
        mom_round()
        time.sleep(0.1)
    assert counters.snapshot()["batches_resent"] == 2
    assert "redis_syndic/uplink/east/resent" not in bus.tags()  # the DC fires that on its own bus

    # a forged confirmation (not the MoM's key) is refused and counted; the copies are kept
    spool.append([ret(JIDS[0])])
    shipper.ship_once(rc)
    client.set(KEYS.confirm("mom1", "east"), seal(Confirm("mom1", "east", 99, 99).encode(), EAST_KEY))
    dc_round()
    assert counters.snapshot()["rejected_unknown_key"] == 1
    assert [s for s, _ in ledger.unconfirmed("mom1")] == [5]
    rc.close()
    client.close()
