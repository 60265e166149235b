"""The local dead-letter directory keeps the newest deadletter_max records, and says so when it prunes."""

from __future__ import annotations

import logging

import pytest

from salt_redis_syndic.state.deadletter import DeadLetters

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
