"""Roster model: key states from a pki dir, last seen, deltas and the MoM's view."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salt_redis_syndic.estate.roster import (
    Delta,
    Entry,
    RosterSource,
    RosterView,
    SeenClock,
    counts,
    digest,
    scan_pki,
)

pytestmark = pytest.mark.unit


def key(pki: Path, sub: str, name: str) -> Path:
    (pki / sub).mkdir(parents=True, exist_ok=True)
    path = pki / sub / name
    path.write_text("pub")
    return path


def test_scan_pki_reads_each_state_and_skips_what_salt_skips(tmp_path: Path) -> None:
    key(tmp_path, "minions", "web1")
    key(tmp_path, "minions_pre", "new1")
    key(tmp_path, "minions_rejected", "bad1")
    key(tmp_path, "minions_denied", "evil1")
    key(tmp_path, "minions_denied", "web1")  # a second key for an accepted id
    key(tmp_path, "minions", ".key_cache")
    (tmp_path / "minions" / "adir").mkdir()
    os.symlink(tmp_path / "minions" / "web1", tmp_path / "minions" / "link1")
    assert scan_pki(str(tmp_path)) == {"web1": "accepted", "new1": "pending", "bad1": "rejected", "evil1": "denied"}
    assert scan_pki(str(tmp_path / "missing")) == {}


def test_seen_clock_moves_only_by_its_resolution() -> None:
    clock = SeenClock(resolution=60)
    assert clock.seen("m", None) is None
    clock.note("m", 1000.5)
    assert clock.seen("m", None) == 1000
    clock.note("m", 1030.0)
    assert clock.seen("m", 1000) == 1000  # not worth a delta yet
    clock.note("m", 1061.0)
    assert clock.seen("m", 1000) == 1061
    clock.note("m", 900.0)  # an older report never moves it back
    assert clock.seen("m", 1061) == 1061
    clock.forget(["other"])
    assert clock.seen("m", 1061) == 1061  # forgotten: the published value stays


def test_source_emits_deltas_only_on_change_and_view_follows() -> None:
    source = RosterSource()
    view = RosterView()
    first = source.step({"a": Entry("accepted"), "b": Entry("pending")})
    assert first is not None and first.seq == 1
    assert source.step({"a": Entry("accepted"), "b": Entry("pending")}) is None
    second = source.step({"a": Entry("accepted", 5), "c": Entry("accepted")})
    assert second is not None and second.changed == {"a": Entry("accepted", 5), "c": Entry("accepted")}
    assert second.removed == ["b"]

    view.load(source.epoch, 0, {})
    assert view.apply(second) is False  # a gap: #1 is missing
    assert view.apply(first) is True and view.apply(second) is True
    assert view.apply(first) is None  # already applied
    assert view.minions == source.published and view.digest() == digest(source.published)
    assert view.apply(Delta("0" * 16, 3, {}, [])) is False  # another engine run
    assert counts(view.minions) == {"accepted": 2, "pending": 0, "rejected": 0, "denied": 0}


def test_digest_sees_every_field() -> None:
    base = {"a": Entry("accepted", 1, {"os": "Debian"})}
    assert digest(base) != digest({"a": Entry("accepted", 2, {"os": "Debian"})})
    assert digest(base) != digest({"a": Entry("accepted", 1, {"os": "RedHat"})})
    assert digest(base) != digest({"a": Entry("pending", 1, {"os": "Debian"})})
    assert digest(base) == digest(dict(base))


@pytest.mark.parametrize("wire", [["x", None, None], ["a", -1, None], ["a", True, None], ["a", None, []], ["a", None], "a"])
def test_entry_from_wire_rejects_junk(wire) -> None:
    with pytest.raises(ValueError):
        Entry.from_wire(wire)
