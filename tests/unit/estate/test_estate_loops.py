"""The estate loops' decisions, without Redis: what a DC tick writes, how the MoM follows a DC,
when files are fingerprinted again, and which drift verdicts are news."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.estate.dc_estate import DcEstate
from salt_redis_syndic.estate.drift_watch import ServedFiles, describe, drift_news
from salt_redis_syndic.estate.mom_estate import roster_step
from salt_redis_syndic.estate.records import EstateHead
from salt_redis_syndic.estate.roster import RosterView
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.transport.keys import Keys

pytestmark = pytest.mark.unit
KEYS = Keys("redis_syndic")


class CountingFingerprinter:
    def __init__(self) -> None:
        self.calls = 0

    def listing(self, opts, roots):
        self.calls += 1
        return {"file_roots": {"base": {"top.sls": f"sha-{self.calls}"}}}


def dc_estate(tmp_path: Path, files: ServedFiles | None = None, **block) -> DcEstate:
    pki = tmp_path / "pki"
    (pki / "minions").mkdir(parents=True, exist_ok=True)
    (pki / "minions" / "m1").write_text("key")
    mom = Signer(Ed25519PrivateKey.generate())
    settings = load_settings({"id": "east", "cachedir": str(tmp_path / "cache"), "pki_dir": str(pki)},
                             {"role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1/0",
                              "trusted_keys": [mom.public_pem], "drift_roots": ["file_roots"], **block})
    return DcEstate(settings, {"pki_dir": str(pki)}, Signer(Ed25519PrivateKey.generate()), threading.Event(),
                    files=files)


def ops(writes) -> list[tuple[str, str]]:
    return [(w.op, w.key) for w in writes]


def test_first_tick_writes_snapshot_files_and_head_then_only_what_changed(tmp_path: Path) -> None:
    fingerprints = CountingFingerprinter()
    estate = dc_estate(tmp_path, ServedFiles({}, ("file_roots",), 60.0, fingerprints))
    first = estate.records(1000.0)
    assert ops(first) == [("set", KEYS.roster("east")), ("sadd", KEYS.dcs), ("set", KEYS.files("east")),
                          ("set", KEYS.estate("east"))]
    estate.written()
    assert ops(estate.records(1010.0)) == [("set", KEYS.estate("east"))]  # idle: the head only
    assert fingerprints.calls == 1  # not due again before drift_interval
    accepted = tmp_path / "pki" / "minions"
    before = os.stat(accepted).st_mtime_ns
    (accepted / "m2").write_text("key")
    os.utime(accepted, ns=(before + 10**9, before + 10**9))  # the directory's time moved, whatever the clock
    assert ops(estate.records(1070.0)) == [("xadd", KEYS.roster_deltas("east")), ("set", KEYS.files("east")),
                                           ("set", KEYS.estate("east"))]
    assert fingerprints.calls == 2  # due again: the fingerprint changed, the listing is written whole


def test_served_files_are_due_every_interval_and_never_without_roots() -> None:
    files = ServedFiles({}, ("file_roots",), 60.0, CountingFingerprinter())
    assert files.due(0.0)
    assert files.refresh(100.0) == {"file_roots": {"base": {"top.sls": "sha-1"}}} == files.current
    assert not files.due(159.0) and files.due(160.0)
    assert not ServedFiles({}, (), 60.0).due(1e9)


def head(epoch: str, seq: int) -> EstateHead:
    return EstateHead("east", 0.0, epoch, seq, 0, "", {}, {})


def view(epoch: str, seq: int) -> RosterView:
    roster = RosterView()
    roster.load(epoch, seq, {})
    return roster


@pytest.mark.parametrize(("head_at", "view_at", "step"), [
    (("e1", 5), ("e1", 5), "none"),
    (("e1", 7), ("e1", 5), "deltas"),
    (("e1", 3), ("e1", 5), "reload"),  # the DC went back: its snapshot is the truth
    (("e2", 7), ("e1", 5), "reload"),  # a new run of the DC
    (("e1", 0), ("", -1), "reload"),   # never loaded
])
def test_roster_step(head_at, view_at, step) -> None:
    assert roster_step(head(*head_at), view(*view_at)) == step


DIFF = {"file_roots": {"base": {"changed": ["web/init.sls"]}}}
SYNC = {"file_roots": {"base": "in sync"}}
PENDING = {"file_roots": {"base": {"differs": "listing not fetched yet"}}}


def test_drift_news_first_verdicts() -> None:
    news = {n.dc: n for n in drift_news({"east": SYNC, "west": DIFF, "north": PENDING}, {})}
    assert set(news) == {"east", "west"}  # no verdict without the listing
    assert not news["east"].announce  # a DC in sync from the start is no news for a reactor
    assert news["west"].announce and not news["west"].in_sync
    assert news["west"].describe() == "file_roots:base (web/init.sls)"


def test_drift_news_only_changes_and_the_return_to_sync() -> None:
    assert drift_news({"west": DIFF}, {"west": DIFF}) == []
    (back,) = drift_news({"west": SYNC}, {"west": DIFF})
    assert back.in_sync and back.known and back.announce


def test_describe_names_git_remotes_by_short_sha() -> None:
    row = {"gitfs": {"base": {"changed": {"https://git/r": {"mom": "a" * 40, "dc": "b" * 40}},
                              "only_on_dc": {"https://git/x": "c" * 40}}}}
    assert describe(row) == f"gitfs:base (https://git/r {'a' * 12} -> {'b' * 12}, https://git/x only on the DC)"
