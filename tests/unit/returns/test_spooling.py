"""returns_to_spool: which EventReturn events become uplink messages, and in what form."""

from __future__ import annotations

import time

import pytest

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.returns.spooling import returns_to_spool

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + "A" * 43 + "=\n-----END PUBLIC KEY-----\n"


@pytest.fixture
def settings():
    return load_settings({"id": "dc-east", "redis_syndic": {
        "role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:6379/0", "trusted_keys": [PEM]}})


def ret_event(minion="m1", jid=JID, master_id="mom1", **data):
    load = {"id": minion, "jid": jid, "fun": "test.ping", "return": True, "retcode": 0, "success": True,
            "_stamp": "2024-05-01T12:34:56.789012"}
    if master_id is not None:
        load["master_id"] = master_id
    load.update(data)
    return {"tag": f"salt/job/{jid}/ret/{minion}", "data": load}


def test_return_of_a_bridged_job_becomes_a_message(settings):
    before = time.time()
    (msg,) = returns_to_spool([ret_event()], settings)
    assert msg["t"] == "ret"
    assert (msg["jid"], msg["dc"], msg["id"], msg["mom"]) == (JID, "east", "m1", "mom1")
    assert msg["load"]["return"] is True and msg["load"]["master_id"] == "mom1"
    assert before <= msg["spooled_at"] <= time.time()
    assert "trimmed" not in msg


def test_stamp_is_stripped_but_nothing_else(settings):
    (msg,) = returns_to_spool([ret_event(out="highstate", fun_args=["a"])], settings)
    assert "_stamp" not in msg["load"]
    assert msg["load"]["out"] == "highstate" and msg["load"]["fun_args"] == ["a"]


def test_input_event_is_not_modified(settings):
    event = ret_event()
    returns_to_spool([event], settings)
    assert "_stamp" in event["data"]


@pytest.mark.parametrize("event", [
    ret_event(master_id=None),            # a job of the DC master itself (no master_id)
    ret_event(master_id=""),
    ret_event(master_id="dc-east"),       # our own id: a local job, not bridged
    ret_event(master_id=["mom1"]),
    {"tag": f"salt/job/{JID}/new", "data": {"jid": JID, "minions": ["m1"], "master_id": "mom1"}},
    {"tag": f"salt/job/{JID}/prog/m1/0", "data": {"jid": JID, "id": "m1", "master_id": "mom1", "return": 1}},
    {"tag": f"salt/job/{JID}/ret/m1/extra", "data": ret_event()["data"]},
    {"tag": "salt/job/not-a-jid/ret/m1", "data": ret_event()["data"]},
    {"tag": "salt/auth", "data": {"id": "m1", "master_id": "mom1"}},
    {"tag": f"salt/job/{JID}/ret/m1", "data": "not a dict"},
    {"tag": f"salt/job/{JID}/ret/m1", "data": None},
    {"data": ret_event()["data"]},
    {},
])
def test_other_events_are_ignored(settings, event):
    assert returns_to_spool([event], settings) == []


def test_mixed_batch_keeps_order_and_only_bridged_returns(settings):
    events = [ret_event("a"), ret_event("b", master_id=None), {"tag": "salt/key", "data": {}},
              ret_event("c", master_id="mom2"), ret_event("d")]
    msgs = returns_to_spool(events, settings)
    assert [(m["id"], m["mom"]) for m in msgs] == [("a", "mom1"), ("c", "mom2"), ("d", "mom1")]


def test_minion_and_jid_come_from_the_tag(settings):
    (msg,) = returns_to_spool([{"tag": f"salt/job/{JID}/ret/web01", "data": {"return": 1, "master_id": "mom1"}}],
                              settings)
    assert (msg["jid"], msg["id"]) == (JID, "web01")


def test_trimmed_return_is_flagged(settings):
    (msg,) = returns_to_spool([ret_event(**{"return": "VALUE_TRIMMED"})], settings)
    assert msg["trimmed"] is True


def test_nested_trimmed_value_is_flagged(settings):
    (msg,) = returns_to_spool([ret_event(**{"return": {"state": {"changes": "VALUE_TRIMMED"}}})], settings)
    assert msg["trimmed"] is True


def test_empty_input(settings):
    assert returns_to_spool([], settings) == []


def test_a_bridged_jid_is_routed_by_the_ledger_even_without_master_id(settings):
    # Salt drops master_id from jobs run from the minion's state queue (queue=True).
    event = ret_event(master_id=None)
    assert "master_id" not in event["data"]
    assert returns_to_spool([event], settings) == []  # nothing says it is bridged
    (msg,) = returns_to_spool([event], settings, origin_of={JID: "mom1"}.get)
    assert msg["mom"] == "mom1" and msg["jid"] == JID


def test_the_ledger_origin_wins_over_the_master_id_in_the_return(settings):
    (msg,) = returns_to_spool([ret_event(master_id="someone-else")], settings, origin_of={JID: "mom1"}.get)
    assert msg["mom"] == "mom1"
