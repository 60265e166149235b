"""The conformance suite's comparison: what it normalizes away and what makes a case fail."""

from __future__ import annotations

import pytest

from bench.conformance import CASES_BY_NAME, Outcome, case, normalize, verdict

pytestmark = pytest.mark.unit

JID = "20261202120000123456"


def test_minion_lists_in_comments_compare_in_any_order_and_jids_are_replaced():
    a = normalize({"comment": f"Running function match.glob failed on minions: west-m2, east-m1 ({JID})"})
    b = normalize({"comment": f"Running function match.glob failed on minions: east-m1, west-m2 ({JID})"})
    assert a == b == {"comment": "Running function match.glob failed on minions: east-m1, west-m2 (<jid>)"}
    assert normalize("east-m1 and west-m2") == "east-m1 and west-m2"  # not a list: left alone


def marks(**counts: int) -> dict[str, int]:
    """Marker counts of the four lab minions (``east_m1=1`` for east-m1), zero unless given."""
    given = {k.replace("_", "-"): v for k, v in counts.items()}
    return {"east-m1": 0, "east-m2": 0, "west-m1": 0, "west-m2": 0, **given}


def test_a_marker_case_holds_when_both_masters_marked_the_same_minions_once():
    c = CASES_BY_NAME["reactor"]
    out = {"cli": {}, "markers": marks(east_m1=1, west_m1=1)}
    assert verdict(c, Outcome(0, out), Outcome(0, out)) == ("same", [])


def test_a_marker_case_fails_on_a_minion_run_twice_or_skipped_by_the_mom():
    c = CASES_BY_NAME["reactor"]
    single = Outcome(0, {"cli": {}, "markers": marks(east_m1=1, west_m1=1)})
    twice = Outcome(0, {"cli": {}, "markers": marks(east_m1=2, west_m1=1)})
    skipped = Outcome(0, {"cli": {}, "markers": marks(east_m1=1)})
    assert verdict(c, single, twice)[1] and verdict(c, single, skipped)[1]


def test_a_marker_case_that_marks_nothing_on_the_single_master_is_broken_not_same():
    c = case("nothing", "*", "test.ping", markers="never", marked=2)
    nothing = Outcome(0, {"cli": {}, "markers": marks()})
    result, problems = verdict(c, nothing, nothing)
    assert result == "broken case" and problems
