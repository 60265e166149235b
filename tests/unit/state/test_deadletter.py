"""The local dead-letter directory keeps the newest deadletter_max records, and says so when it prunes."""

from __future__ import annotations

import hashlib
import logging
import os
import stat

import pytest

from salt_redis_syndic.state.deadletter import RECORD_MAX, DeadLetters
from salt_redis_syndic.wire.codec import pack

pytestmark = pytest.mark.unit


def test_local_dead_letters_are_bounded_newest_kept(tmp_path, caplog):
    dl = DeadLetters(str(tmp_path / "dl"), "ns:deadletter", max_entries=10, client=None)
    with caplog.at_level(logging.WARNING):
        for i in range(25):
            dl.add("dc:east", f"{i}-0", "malformed", "", b"x")
    kept = dl.local()
    assert 10 <= len(kept) <= 11
    assert kept[-1]["entry_id"] == "24-0" and kept[0]["entry_id"] != "0-0"
    prunes = [r.getMessage() for r in caplog.records if "reached deadletter_max" in r.getMessage()]
    assert prunes and all("(10)" in line for line in prunes)
    # a new instance (engine restart) counts what is there and keeps bounding
    again = DeadLetters(str(tmp_path / "dl"), "ns:deadletter", max_entries=10, client=None)
    for i in range(25, 40):
        again.add("dc:east", f"{i}-0", "malformed", "", b"x")
    assert len(again.local()) <= 11 and again.local()[-1]["entry_id"] == "39-0"


def test_each_record_is_capped_with_a_marker_and_the_digest_of_what_was_rejected(tmp_path):
    dl = DeadLetters(str(tmp_path / "dl"), "ns:deadletter", max_entries=10, client=None)
    raw = {f"f{i}".encode(): bytes([i]) * 100_000 for i in range(64)}  # 64 fields of 100 KB
    dl.add("dc:east", "1-0", "malformed", "d" * 10_000, raw)
    dl.add("dc:east", "2-0", "malformed", "small", {b"b": b"x"})
    sizes = sorted(p.stat().st_size for p in (tmp_path / "dl").iterdir())
    assert sizes[-1] <= RECORD_MAX
    big, small = dl.local()
    assert big["raw"]["truncated"] is True and big["raw"]["size"] == len(pack(raw))
    assert big["raw"]["sha256"] == hashlib.sha256(pack(raw)).hexdigest()
    assert len(big["detail"]) <= 1024 and big["entry_id"] == "1-0"
    assert "truncated" not in small["raw"] and small["detail"] == "small"  # small records as before


def test_dead_letter_files_are_readable_by_their_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        dl = DeadLetters(str(tmp_path / "dl"), "ns:deadletter", max_entries=10, client=None)
        dl.add("dc:east", "1-0", "malformed", "", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "dl").st_mode) == 0o700
    (name,) = os.listdir(tmp_path / "dl")
    assert stat.S_IMODE(os.stat(tmp_path / "dl" / name).st_mode) == 0o600
