"""The estate loops against a real redis-server: DC roster and fingerprints in, MoM view out.

The DC and MoM loops run in-process tick by tick (no Salt daemons), with real Ed25519 keys,
a real keyring and a fake ``pki_dir`` laid out like Salt's ``localfs_key`` driver.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import dc_keys_dir, load_settings
from salt_redis_syndic.estate.dc_estate import DcEstate
from salt_redis_syndic.estate.drift_watch import ServedFiles
from salt_redis_syndic.estate.mom_estate import MomEstate
from salt_redis_syndic.estate.records import encode_delta
from salt_redis_syndic.estate.roster import Delta, Entry
from salt_redis_syndic.ops.estate_report import drift_view, minions_view
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.wire.sealed import seal

from support.fakes import FakeBus

pytestmark = pytest.mark.functional
MOM_PUB = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"


def write_tree(base: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)


def add_key(pki: Path, state_dir: str, minion: str) -> None:
    (pki / state_dir).mkdir(parents=True, exist_ok=True)
    (pki / state_dir / minion).write_text("-----BEGIN PUBLIC KEY-----\n...\n")


class Estate:
    """One DC (east) and the MoM on one redis-server, driven tick by tick."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp = tmp
        self.url = url
        self.pki = tmp / "east" / "pki"
        for minion in ("east-m1", "east-m2"):
            add_key(self.pki, "minions", minion)
        add_key(self.pki, "minions_pre", "east-new")
        add_key(self.pki, "minions_rejected", "east-bad")
        add_key(self.pki, "minions_denied", "east-m1")  # also accepted: shown as accepted
        tree = {"top.sls": "base:\n  '*': [web]\n", "web/init.sls": "nginx: pkg.installed\n"}
        write_tree(tmp / "mom" / "salt", tree)
        write_tree(tmp / "east" / "salt", tree)
        self.signer = Signer(Ed25519PrivateKey.generate())
        self.dc_settings = load_settings(
            {"id": "east", "cachedir": str(tmp / "east" / "cache"), "pki_dir": str(self.pki)},
            {"role": "dc", "dc": "east", "redis_url": url, "trusted_keys": [MOM_PUB], "drift_roots": ["file_roots"]})
        self.mom_settings = load_settings(
            {"id": "mom", "cachedir": str(tmp / "mom" / "cache"), "pki_dir": str(tmp / "mom" / "pki")},
            {"role": "mom", "redis_url": url, "dc_keys": {"east": self.signer.public_pem}, "drift_roots": ["file_roots"]})
        self.dc_opts = {"pki_dir": str(self.pki), "file_roots": {"base": [str(tmp / "east" / "salt")]}}
        self.mom_opts = {"file_roots": {"base": [str(tmp / "mom" / "salt")]}}
        self.bus = FakeBus()
        self.counters = Counters()
        self.dc = self.new_dc()
        keyring = DcKeyring(dc_keys_dir(self.mom_settings), dict(self.mom_settings.dc_keys))
        self.deadletters = DeadLetters(str(tmp / "deadletter"), Keys("redis_syndic").deadletter, 100, None)
        # Both sides fingerprint their roots at every step (interval 0), not every drift_interval.
        self.mom = MomEstate(self.mom_settings, self.mom_opts, keyring, self.bus, self.deadletters, self.counters,
                             threading.Event(), own=ServedFiles(self.mom_opts, ("file_roots",), 0.0))

    def new_dc(self) -> DcEstate:
        return DcEstate(self.dc_settings, self.dc_opts, self.signer, threading.Event(),
                        files=ServedFiles(self.dc_opts, ("file_roots",), 0.0))

    def step(self, client: Any, now: float = 1000.0) -> dict[str, Any]:
        self.dc.tick(client, now)
        self.mom.tick(client, now)
        return minions_view(self.mom_settings)


@pytest.fixture
def estate(tmp_path: Path, redis_server) -> Estate:
    return Estate(tmp_path, redis_server.url)


def states(view: dict[str, Any]) -> dict[str, str]:
    return {m: row["state"] for m, row in view.items()}


def test_roster_reaches_the_mom_and_follows_changes(estate: Estate, redis_server) -> None:
    client = redis_server.client()
    view = estate.step(client)
    assert states(view) == {"east-m1": "accepted", "east-m2": "accepted", "east-new": "pending", "east-bad": "rejected"}
    assert all(row["dc"] == "east" for row in view.values())

    add_key(estate.pki, "minions", "east-m3")
    (estate.pki / "minions" / "east-m2").unlink()
    (estate.pki / "minions_pre" / "east-new").rename(estate.pki / "minions" / "east-new")
    view = estate.step(client)
    assert states(view) == {"east-m1": "accepted", "east-m3": "accepted", "east-new": "accepted", "east-bad": "rejected"}
    assert minions_view(estate.mom_settings, state="accepted").keys() == {"east-m1", "east-m3", "east-new"}
    assert minions_view(estate.mom_settings, dc="west") == {}
    roster_events = [d for t, d in estate.bus.events if t == "redis_syndic/roster/east"]
    assert roster_events[-1]["added"] == ["east-m3"] and roster_events[-1]["removed"] == ["east-m2"]
    assert roster_events[-1]["state_changed"] == {"east-new": "accepted"}
    # The second step travelled as one delta, not a new snapshot.
    assert client.xlen(Keys("redis_syndic").roster_deltas("east")) == 1


def test_idle_roster_sends_only_the_head(estate: Estate, redis_server) -> None:
    client = redis_server.client()
    estate.step(client)
    keys = Keys("redis_syndic")
    snapshot = client.get(keys.roster("east"))
    estate.step(client, now=1010.0)
    estate.step(client, now=1020.0)
    assert client.xlen(keys.roster_deltas("east")) == 0
    assert client.get(keys.roster("east")) == snapshot


def test_restarted_dc_is_reloaded_from_its_new_snapshot(estate: Estate, redis_server) -> None:
    client = redis_server.client()
    estate.step(client)
    add_key(estate.pki, "minions", "east-m9")
    estate.dc = estate.new_dc()  # a new engine run: a new epoch
    view = estate.step(client)
    assert "east-m9" in view and estate.counters.snapshot()["roster_reloads"] == 2


def test_missing_delta_makes_the_mom_ask_for_a_snapshot(estate: Estate, redis_server) -> None:
    client = redis_server.client()
    keys = Keys("redis_syndic")
    estate.step(client)
    add_key(estate.pki, "minions", "east-m4")
    estate.dc.tick(client, 1001.0)
    client.delete(keys.roster_deltas("east"))  # the delta is lost (trimmed, a failover...)
    add_key(estate.pki, "minions", "east-m5")
    estate.dc.tick(client, 1002.0)
    estate.mom.tick(client, 1002.0)
    assert client.get(keys.resync("east")) == b"1"
    assert "east-m5" not in minions_view(estate.mom_settings)
    view = estate.step(client, 1003.0)  # the DC sees the request, writes a snapshot, the MoM loads it
    assert {"east-m4", "east-m5"} <= view.keys()
    assert client.get(keys.resync("east")) is None


def test_delta_signed_by_another_key_is_dead_lettered_and_ignored(estate: Estate, redis_server) -> None:
    client = redis_server.client()
    keys = Keys("redis_syndic")
    estate.step(client)
    forger = Signer(Ed25519PrivateKey.generate())
    evil = Delta(estate.dc.source.epoch, estate.dc.source.seq + 1, {"evil": Entry("accepted")}, ["east-m1"])
    client.xadd(keys.roster_deltas("east"), {"r": seal(encode_delta("east", evil), forger)})
    estate.mom.tick(client, 1001.0)  # the head says nothing changed: the forged delta is not even read
    add_key(estate.pki, "minions", "east-m6")
    view = estate.step(client, 1002.0)
    assert "evil" not in view and "east-m1" in view and "east-m6" in view
    assert [r["reason"] for r in estate.deadletters.local()] == ["unknown_key"]
    assert "redis_syndic/rejected/unknown_key" in estate.bus.tags()


def test_drift_names_the_file_then_clears(estate: Estate, redis_server) -> None:
    client = redis_server.client()
    estate.step(client)
    assert drift_view(estate.mom_settings)["dcs"]["east"] == {"file_roots": {"base": "in sync"}}
    web = estate.tmp / "east" / "salt" / "web" / "init.sls"
    web.write_text("nginx: pkg.removed\n")
    write_tree(estate.tmp / "east" / "salt", {"extra.sls": "x: y\n"})
    estate.step(client, 1001.0)
    row = drift_view(estate.mom_settings)["dcs"]["east"]["file_roots"]["base"]
    assert row == {"changed": ["web/init.sls"], "only_on_dc": ["extra.sls"]}
    drift_events = [d for t, d in estate.bus.events if t == "redis_syndic/drift"]
    assert [d["in_sync"] for d in drift_events] == [False]
    web.write_text("nginx: pkg.installed\n")
    (estate.tmp / "east" / "salt" / "extra.sls").unlink()
    estate.step(client, 1002.0)
    assert drift_view(estate.mom_settings)["dcs"]["east"] == {"file_roots": {"base": "in sync"}}
    assert [d["in_sync"] for t, d in estate.bus.events if t == "redis_syndic/drift"] == [False, True]


def test_between_full_scans_only_heard_minions_are_looked_at(estate: Estate, redis_server) -> None:
    import os

    from salt_redis_syndic.estate.dc_estate import FULL_SCAN_EVERY

    client = redis_server.client()
    estate.step(client)
    estate.dc.clock.note("east-m2", 5000.0)  # heard on the bus
    view = estate.step(client, 1001.0)
    assert view["east-m2"]["last_seen"] == "1970-01-01T01:23:20+00:00" and view["east-m1"]["last_seen"] is None
    # A key written on a filesystem whose directory times did not move is still found by the
    # periodic full scan.
    accepted = estate.pki / "minions"
    before = os.stat(accepted)
    add_key(estate.pki, "minions", "east-late")
    os.utime(accepted, ns=(before.st_atime_ns, before.st_mtime_ns))
    for tick in range(FULL_SCAN_EVERY - 1):  # the tick above was a quick one too
        assert "east-late" not in estate.step(client, 1002.0 + tick)
    assert "east-late" in estate.step(client, 1010.0)


def test_bad_heads_are_reported_once_and_unaccepted_dcs_quietly_ignored(estate: Estate, redis_server) -> None:
    from salt_redis_syndic.estate.records import EstateHead

    client = redis_server.client()
    keys = Keys("redis_syndic")
    stranger = Signer(Ed25519PrivateKey.generate())  # a DC whose key nobody accepted
    client.sadd(keys.dcs, "north", "west")
    for tick in range(3):
        for dc, signer in (("north", stranger), ("west", estate.signer)):  # west's head signed with east's key
            head = EstateHead(dc=dc, at=1000.0 + tick, epoch="0123456789abcdef", seq=1, snapshot_seq=1,
                              digest="0" * 32, counts={}, files={})
            client.set(keys.estate(dc), seal(head.encode(), signer))
        estate.mom.tick(client, 1000.0 + tick)
    assert [r["reason"] for r in estate.deadletters.local()] == ["wrong_dc"]
    assert minions_view(estate.mom_settings) == {}
