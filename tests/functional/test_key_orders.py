"""Key management from the MoM (key_management): signed orders carried out with salt.key on a DC.

Real redis-server, the runner's own ``send``, the DC estate loop and Salt's ``salt.key`` on a
pki_dir laid out like a master's; no daemons.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import ConfigError
from salt_redis_syndic.estate.dc_estate import DcEstate
from salt_redis_syndic.estate.key_orders import KeyOrders
from salt_redis_syndic.estate.keycmd import make_command, send, sign_command
from salt_redis_syndic.estate.roster import scan_pki
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.signing import Signer, write_private_key
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.transport.keys import Keys

pytestmark = pytest.mark.functional


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def world(tmp_path: Path, redis_server):
    import salt.config

    from salt_redis_syndic.salt_adapter import KeyManager

    pki = tmp_path / "east" / "pki"
    for sub, minion in (("minions", "east-m1"), ("minions_pre", "east-new"), ("minions_pre", "east-other")):
        (pki / sub).mkdir(parents=True, exist_ok=True)
        (pki / sub / minion).write_text(rsa_pem())
    mom_key = tmp_path / "mom.pem"
    write_private_key(str(mom_key), Ed25519PrivateKey.generate())
    mom = load_settings({"id": "mom", "cachedir": str(tmp_path / "mom")},
                        {"role": "mom", "redis_url": redis_server.url, "signing_key": str(mom_key), "key_management": True})
    dc = load_settings({"id": "east", "cachedir": str(tmp_path / "east" / "cache"), "pki_dir": str(pki)},
                       {"role": "dc", "dc": "east", "redis_url": redis_server.url, "key_management": True,
                        "trusted_keys": [str(tmp_path / "mom.pub")], "drift_roots": []})
    conf = tmp_path / "east" / "master"
    conf.write_text(f"pki_dir: {pki}\ncachedir: {tmp_path / 'east' / 'cache'}\nsock_dir: {tmp_path / 'sock'}\n"
                    f"log_file: {tmp_path / 'east' / 'master.log'}\n")
    opts = salt.config.master_config(str(conf))
    deadletters = DeadLetters(str(tmp_path / "dl"), Keys("redis_syndic").deadletter, 100, None)
    counters = Counters()
    orders = KeyOrders(dc, lambda: KeyManager(opts), deadletters, None, counters)
    estate = DcEstate(dc, {"pki_dir": str(pki)}, Signer(Ed25519PrivateKey.generate()), threading.Event(), counters,
                      orders=orders)
    return mom, dc, estate, pki, deadletters


def test_orders_are_carried_out_once_and_audited(world, redis_server, caplog: pytest.LogCaptureFixture) -> None:
    mom, dc, estate, pki, deadletters = world
    client = redis_server.client()
    estate.tick(client, 1000.0)  # key management starts after the stream's end
    caplog.set_level(logging.WARNING, logger="salt_redis_syndic")
    order = send(mom, "east", "accept", "east-new", by="alice")
    estate.tick(client, time.time())
    assert scan_pki(str(pki))["east-new"] == "accepted"
    audit = [r.getMessage() for r in caplog.records if "AUDIT" in r.getMessage()]
    assert f"key order {order['order']} sent to DC east: accept minion east-new (by alice" in audit[0]
    assert "key of minion east-new on DC east: accept (minions_pre -> minions)" in audit[1] and order["order"] in audit[1]

    # The same entry written again is not carried out twice.
    entry_id, fields = client.xrange(Keys("redis_syndic").keycmd("east"))[-1]
    client.xadd(Keys("redis_syndic").keycmd("east"), fields)
    send(mom, "east", "delete", "east-m1", by="alice")
    estate.tick(client, time.time())
    assert "east-m1" not in scan_pki(str(pki))
    assert [r["reason"] for r in deadletters.local()] == ["replayed"]
    assert estate.counters.snapshot()["key_orders"] == 2


def test_forged_foreign_expired_and_glob_orders_are_refused(world, redis_server) -> None:
    mom, dc, estate, pki, deadletters = world
    client = redis_server.client()
    estate.tick(client, 1000.0)
    stream = Keys("redis_syndic").keycmd("east")
    forger = Signer(Ed25519PrivateKey.generate())
    client.xadd(stream, sign_command(make_command("east", "east-other", "accept", "mom", "mallory"), forger))
    mom_signer_path = mom.signing_key
    from salt_redis_syndic.security.signing import load_or_create_signer

    signer = load_or_create_signer(mom_signer_path, create=False)
    client.xadd(stream, sign_command(make_command("west", "east-other", "accept", "mom", "bob"), signer))
    client.xadd(stream, sign_command(make_command("east", "east-other", "accept", "mom", "bob", now=1.0), signer))
    estate.tick(client, time.time())
    assert scan_pki(str(pki))["east-other"] == "pending"
    assert sorted(r["reason"] for r in deadletters.local()) == ["expired", "not_for_this_dc", "unknown_key"]
    with pytest.raises(ConfigError):
        send(mom, "east", "accept", "east-*", by="bob")
    with pytest.raises(ConfigError):
        send(mom, "east", "promote", "east-other", by="bob")


def test_key_management_is_off_by_default(tmp_path: Path, redis_server) -> None:
    mom = load_settings({"id": "mom", "cachedir": str(tmp_path)}, {"role": "mom", "redis_url": redis_server.url})
    assert mom.key_management is False
    with pytest.raises(ConfigError, match="key_management"):
        send(mom, "east", "accept", "east-new", by="bob")


def test_a_max_id_entry_does_not_hide_later_orders_nor_survive_the_stream_being_recreated(world, redis_server) -> None:
    mom, dc, estate, pki, deadletters = world
    client = redis_server.client()
    stream = Keys("redis_syndic").keycmd("east")
    estate.tick(client, time.time())
    # An attacker without the MoM's key adds an entry with the highest id but one.
    client.xadd(stream, {"r": b"forged"}, id="18446744073709551615-0")
    estate.tick(client, time.time())
    assert [r["reason"] for r in deadletters.local()] == ["id_ahead"]
    send(mom, "east", "accept", "east-new", by="alice")  # XADD *: after the forged entry
    estate.tick(client, time.time())
    assert scan_pki(str(pki))["east-new"] == "accepted"
    assert estate.counters.snapshot()["key_orders"] == 1

    # The operator deletes the poisoned stream; the next order opens a new one at the clock's time.
    client.delete(stream)
    send(mom, "east", "accept", "east-other", by="alice")
    estate.tick(client, time.time())  # an empty read past the new stream's end: a reset, read again
    estate.tick(client, time.time())
    assert scan_pki(str(pki))["east-other"] == "accepted"
    assert estate.counters.snapshot()["stream_resets"] == 1
    assert estate.counters.snapshot()["key_orders"] == 2
