"""The one reject path: counters, a rate-limited log line, a dead letter, an event."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.runtime import Counters, RateLimitedLog
from salt_redis_syndic.state.rejections import EVENTS_PER_MINUTE, LOG_PER_MINUTE, Rejections

pytestmark = pytest.mark.unit


class Letters:
    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []

    def add(self, **record: Any) -> None:
        self.added.append(record)


def test_one_rejection_counts_logs_dead_letters_and_fires(caplog):
    counters, letters, fired = Counters(), Letters(), []
    rejections = Rejections(counters, letters, lambda data, tag: fired.append((tag, data)),  # type: ignore[arg-type]
                            RateLimitedLog(logging.getLogger("t")), "dc:east")
    rej = RejectedEntry("bad_signature", "signature does not verify")
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            rejections.reject(rej, b"\x00raw", {"what": "confirm"}, log_key="k", msg="rejected %s: %s",
                              args=("x", rej), entry_id="1-0", count=("jobs_rejected",))
    snap = counters.snapshot()
    assert snap["rejected_bad_signature"] == 3 and snap["jobs_rejected"] == 3
    assert [r.getMessage() for r in caplog.records] == [f"rejected x: {rej}"]  # rate-limited
    assert letters.added[0] == {"source": "dc:east", "entry_id": "1-0", "reason": "bad_signature",
                                "detail": "signature does not verify", "raw": {"raw": b"\x00raw"}}
    assert len(letters.added) == 3
    assert fired[0] == ("redis_syndic/rejected/bad_signature",
                        {"what": "confirm", "reason": "bad_signature", "detail": "signature does not verify"})


def test_without_dead_letters_and_with_a_detail_of_its_own():
    fired: list[Any] = []
    letters = Letters()
    Rejections(Counters(), None, lambda d, t: fired.append(t), RateLimitedLog(logging.getLogger("t")),
               "mom:m").reject(RejectedEntry("malformed", "x"), {"a": 1}, {}, log_key="k", msg="m")
    assert fired == ["redis_syndic/rejected/malformed"] and letters.added == []
    letters_on = Rejections(Counters(), letters, lambda d, t: None,  # type: ignore[arg-type]
                            RateLimitedLog(logging.getLogger("t")), "mom:m")
    letters_on.reject(RejectedEntry("malformed", "x"), {"a": 1}, {}, log_key="k", msg="m", detail="head of DC e: x")
    assert letters.added[0]["detail"] == "head of DC e: x" and letters.added[0]["raw"] == {"a": 1}


def test_rate_limited_log_forgets_idle_keys_without_changing_what_it_logs(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("salt_redis_syndic.runtime.time.monotonic", lambda: now[0])
    rl = RateLimitedLog(logging.getLogger("t"), interval=60.0)
    rl.MAX_KEYS = 3
    with caplog.at_level(logging.ERROR):
        for i in range(4):
            rl.log(logging.ERROR, f"entry:{i}", "e%d", i)
        rl.log(logging.ERROR, "entry:0", "again")  # suppressed: owes a repeat count
        now[0] += 61
        rl.log(logging.ERROR, "entry:4", "e4")
        assert set(rl._last) == {"entry:0", "entry:4"}  # idle keys without a count forgotten
        rl.log(logging.ERROR, "entry:0", "e0 later")
    assert [r.getMessage() for r in caplog.records] == ["e0", "e1", "e2", "e3", "e4",
                                                        "e0 later (repeated 1 times)"]


def test_a_flood_of_distinct_rejections_logs_and_fires_a_bounded_number_of_times(caplog):
    counters, fired = Counters(), []
    rl = RateLimitedLog(logging.getLogger("t"))
    with caplog.at_level(logging.ERROR):
        for i in range(1000):  # each hostile entry has its own id, so its own log key
            Rejections(counters, None, lambda data, tag: fired.append(data), rl, "dc:east").reject(
                RejectedEntry("bad_signature", "x"), b"raw", {}, log_key=f"reject:{i}-0", msg="rejected %s", args=(i,))
    assert counters.snapshot()["rejected_bad_signature"] == 1000  # every one counted
    assert len(caplog.records) == LOG_PER_MINUTE
    assert len(fired) == EVENTS_PER_MINUTE
    # another reason has its own budget
    Rejections(counters, None, lambda data, tag: fired.append(data), rl, "dc:east").reject(
        RejectedEntry("malformed", "y"), b"raw", {}, log_key="reject:x", msg="rejected x")
    assert fired[-1]["reason"] == "malformed" and len(caplog.records) == LOG_PER_MINUTE + 1


def test_the_next_line_and_event_after_a_flood_say_how_many_were_left_out(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("salt_redis_syndic.runtime.time.monotonic", lambda: now[0])
    rl, fired = RateLimitedLog(logging.getLogger("t")), []
    rejections = Rejections(Counters(), None, lambda data, tag: fired.append(data), rl, "dc:east")
    with caplog.at_level(logging.ERROR):
        for i in range(EVENTS_PER_MINUTE + 5):
            rejections.reject(RejectedEntry("bad_signature", "x"), b"", {}, log_key=f"k{i}", msg="rejected %s", args=(i,))
        now[0] += 61
        rejections.reject(RejectedEntry("bad_signature", "x"), b"", {}, log_key="later", msg="rejected later")
    assert fired[-1]["suppressed"] == 5
    assert caplog.records[-1].getMessage() == (
        f"rejected later ({EVENTS_PER_MINUTE + 5 - LOG_PER_MINUTE} more rejected for this reason were not logged)")
