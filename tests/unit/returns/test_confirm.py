"""returns/confirm: when the MoM writes its uplink confirmations (UplinkTracker.due) and how a DC names
the batches it pushes again (the planner: tests/unit/jobs/test_reconcile.py)."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.confirm import REWRITE_EVERY, UplinkTracker, ranges

pytestmark = pytest.mark.unit


def dcs(confirms):
    return [c.dc for c in confirms]


def test_changed_confirmations_at_most_once_a_second_unless_forced():
    t = UplinkTracker("mom", {"east": (3, 3), "west": (7, 7)})
    assert dcs(t.due(100.0)) == ["east", "west"]  # first write: everything
    t.taken("east", 4)
    assert t.due(100.5) == []  # too soon
    assert dcs(t.due(100.5, force=True)) == ["east"]  # forced: only what changed
    t.done("east", 4)
    assert t.due(101.0) == []
    (east,) = t.due(101.6)
    assert (east.dc, east.done_upto, east.max_seen, east.at) == ("east", 4, 4, 101.6)


def test_every_confirmation_is_rewritten_periodically():
    t = UplinkTracker("mom", {"east": (3, 3), "west": (7, 7)})
    t.due(100.0)
    assert t.due(101.5) == []  # nothing changed
    assert dcs(t.due(100.0 + REWRITE_EVERY)) == ["east", "west"]  # restores one Redis lost


def test_resent_batches_are_logged_as_ranges():
    assert ranges([7, 1, 3, 2]) == "1-3,7"
    assert ranges([4]) == "4" and ranges([]) == ""
