"""salt_adapter.publish against the installed Salt: which events ``ClearFuncs`` fires for a job, in
which order against the saved load, and that the load rebuilt from the saved one is the one
Salt's own ``_prep_pub`` sends to the minions.

Run on both CI venvs (Salt 3008 in .venv, 3006 in .venv-salt3006); a release-specific assertion
is chosen by the running release, so each branch runs in one of them.
"""

from __future__ import annotations

import inspect
import logging
import types
from typing import Any

import pytest

from salt_redis_syndic.salt_adapter.publish import PublishEvents, publish_load, publish_tag
from salt_redis_syndic.salt_adapter.release import fires_publish_event, running

from support.fakes import FakeBus, FakeCache

pytestmark = pytest.mark.unit

JID = "20261202120000123456"


def clear_load() -> dict[str, Any]:
    """What a LocalClient sends the master for ``salt -b``-less CLI use, every optional field set."""
    return {"fun": "test.arg", "arg": ["a", {"__kwarg__": True, "k": 1}], "tgt": "web|1", "tgt_type": "grain",
            "ret": "syslog", "user": "root", "jid": JID, "to": 12,
            "kwargs": {"metadata": {"team": "x"}, "delimiter": "|", "ret_config": "alt", "ret_kwargs": {"a": 1},
                       "module_executors": ["direct_call"], "executor_opts": {"x": 1}, "master_id": "top",
                       "id": "caller", "start_event": True, "show_jid": False}}


def salts_prep_pub() -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Salt's own ``ClearFuncs._prep_pub``: (the minion-bound load, every event and save in order)."""
    import salt.master

    done: list[tuple[str, Any]] = []
    funcs = object.__new__(salt.master.ClearFuncs)  # only what _prep_pub reads; no master started
    funcs.opts = {"ext_job_cache": "", "master_job_cache": "local_cache"}
    funcs.event = types.SimpleNamespace(fire_event=lambda data, tag: done.append(("event " + tag, dict(data))))
    funcs.mminion = types.SimpleNamespace(returners={
        "local_cache.save_load": lambda jid, load, minions=None: done.append(("save_load", dict(load)))})
    load = clear_load()
    sent = funcs._prep_pub(["web1"], JID, load, load["kwargs"], [])
    return sent, done


def test_the_load_rebuilt_from_the_saved_one_is_what_salt_sends_the_minions() -> None:
    sent, done = salts_prep_pub()
    (saved,) = [data for what, data in done if what == "save_load"]
    assert publish_load(JID, saved) == sent


def test_salt_announces_new_before_it_saves_the_load_and_new_lacks_ret_and_kwargs() -> None:
    _, done = salts_prep_pub()
    order = [what for what, _ in done]
    assert order.index(f"event salt/job/{JID}/new") < order.index("save_load")
    new = dict(done)[f"event salt/job/{JID}/new"]
    assert "missing" in new and "ret" not in new and "kwargs" not in new


def test_which_release_fires_a_publish_event() -> None:
    import salt.master

    fires = 'tagify([jid, "publish"], "job")' in inspect.getsource(salt.master.ClearFuncs)
    assert fires == fires_publish_event(running())
    assert fires == (running() >= (3007, 0))


def new_event(**extra: Any) -> tuple[str, dict[str, Any]]:
    return f"salt/job/{JID}/new", {"jid": JID, "tgt": "web|1", "tgt_type": "grain", "user": "root",
                                   "fun": "test.arg", "arg": [], "minions": [], "missing": [], **extra}


def test_on_3006_each_new_job_is_followed_by_its_publish_event_from_the_saved_load() -> None:
    bus, saved = FakeBus(listen=True), clear_load()
    bus.incoming = [new_event(), ("salt/job/x/ret/m1", {"jid": "x"})]
    events = PublishEvents(bus, FakeCache({JID: saved}).get_load, release=(3006, 29))
    got = [events.get(0.1) for _ in range(4)]
    assert got == [new_event(), (publish_tag(JID), publish_load(JID, saved, (3006, 29))),
                   ("salt/job/x/ret/m1", {"jid": "x"}), None]
    assert got[1][0] == f"salt/job/{JID}/publish" and got[1][1]["ret"] == "syslog" and "start_event" not in got[1][1]


def test_on_3006_the_publish_event_waits_for_the_load_salt_saves_after_new() -> None:
    bus, saved, asked, slept = FakeBus(listen=True), clear_load(), [], []

    def get_load(jid: str) -> dict[str, Any]:
        asked.append(jid)
        return saved if len(asked) >= 3 else {}

    bus.incoming = [new_event()]
    events = PublishEvents(bus, get_load, release=(3006, 29), sleep=slept.append)
    assert events.get(0.1) == new_event()
    assert len(asked) == 3 and len(slept) == 2
    assert events.get(0.1) == (publish_tag(JID), publish_load(JID, saved, (3006, 29)))


def test_on_3006_a_load_never_saved_is_one_error_line_and_no_job(caplog: pytest.LogCaptureFixture) -> None:
    bus = FakeBus(listen=True)
    bus.incoming = [new_event()]
    events = PublishEvents(bus, FakeCache().get_load, release=(3006, 29), load_wait=0.05)
    with caplog.at_level(logging.ERROR, logger="salt_redis_syndic"):
        assert events.get(0.1) == new_event()
        assert events.get(0.1) is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert JID in line and "not sent to the DCs" in line


def test_on_3006_a_peer_publish_new_event_is_not_a_job_to_bridge() -> None:
    """masterapi's peer publish fires ``new`` without ``missing``; 3007+ fires no publish event for it."""
    bus = FakeBus(listen=True)
    tag, data = new_event()
    del data["missing"]
    bus.incoming = [(tag, data), ("syndic/east/salt/job/1/new", {"fun": "x", "missing": []})]
    events = PublishEvents(bus, FakeCache({JID: clear_load()}).get_load, release=(3006, 29))
    assert [events.get(0.1) for _ in range(3)] == [(tag, data), ("syndic/east/salt/job/1/new",
                                                                  {"fun": "x", "missing": []}), None]


def test_on_3007_and_later_the_bus_is_unchanged() -> None:
    bus = FakeBus(listen=True)
    bus.incoming = [new_event()]
    events = PublishEvents(bus, FakeCache({JID: clear_load()}).get_load, release=(3008, 4))
    assert [events.get(0.1), events.get(0.1)] == [new_event(), None]
    assert events.open() is bus  # the rest is the bus's
