"""returner.event_return: what Salt's EventReturn hands it ends up in the spool, and it never raises."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from salt_redis_syndic import returner
from salt_redis_syndic.state.ledger import DcLedger, ledger_file
from salt_redis_syndic.state.spool import Spool

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
OTHER_JID = "20240501123456789013"
PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + "A" * 43 + "=\n-----END PUBLIC KEY-----\n"


def dc_opts(tmp_path: Path, **block: Any) -> dict[str, Any]:
    return {"id": "dc-east", "cachedir": str(tmp_path / "cache"), "redis_syndic": {
        "role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:6379/0", "trusted_keys": [PEM],
        "state_dir": str(tmp_path / "state"), "spool_dir": str(tmp_path / "spool"), **block}}


def ret(jid: str, minion: str) -> dict[str, Any]:
    return {"tag": f"salt/job/{jid}/ret/{minion}",
            "data": {"id": minion, "jid": jid, "fun": "test.ping", "return": True, "retcode": 0}}


def spooled(opts: dict[str, Any]) -> list[dict[str, Any]]:
    spool = Spool(opts["redis_syndic"]["spool_dir"])
    return [msg for item in spool.pending() for msg in spool.read(item) or []]


@pytest.fixture(autouse=True)
def fresh_cache():
    """The returner keeps its settings per opts object; each test starts without them."""
    returner.forget_setup()
    yield
    returner.forget_setup()


def test_returns_of_a_bridged_job_are_spooled_for_its_mom(tmp_path):
    opts = dc_opts(tmp_path)
    ledger = DcLedger(ledger_file(opts["redis_syndic"]["state_dir"], "dc"))
    ledger.claim(JID, "mom1")  # what the DC engine records before it publishes the MoM's job
    ledger.close()

    returner.event_return([ret(JID, "m1"), ret(OTHER_JID, "m2"), {"tag": "salt/auth", "data": {}}], opts)

    (msg,) = spooled(opts)
    assert (msg["t"], msg["jid"], msg["id"], msg["dc"], msg["mom"]) == ("ret", JID, "m1", "east", "mom1")
    assert msg["load"]["return"] is True


def test_nothing_bridged_spools_nothing(tmp_path):
    opts = dc_opts(tmp_path)
    returner.event_return([ret(OTHER_JID, "m2")], opts)
    assert spooled(opts) == []


def test_on_a_mom_it_logs_the_option_and_never_raises(tmp_path, caplog):
    opts = dc_opts(tmp_path, role="mom")
    with caplog.at_level(logging.ERROR, logger="salt_redis_syndic.returner"):
        returner.event_return([ret(JID, "m1")], opts)
        returner.event_return([ret(JID, "m1")], opts)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # rate-limited: one line, not one per batch
    assert "role" in lines[0] and "NOT forwarded" in lines[0]


def test_an_unwritable_spool_is_critical_and_never_raises(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    opts = dc_opts(tmp_path, spool_dir=str(blocker / "spool"))
    ledger = DcLedger(ledger_file(opts["redis_syndic"]["state_dir"], "dc"))
    ledger.claim(JID, "mom1")
    ledger.close()
    with caplog.at_level(logging.CRITICAL, logger="salt_redis_syndic.returner"):
        returner.event_return([ret(JID, "m1")], opts)
    assert any("returns are being lost" in r.getMessage() for r in caplog.records), caplog.text


def test_an_unexpected_error_is_logged_not_raised(tmp_path, caplog, monkeypatch):
    opts = dc_opts(tmp_path)

    def boom(*_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        raise RuntimeError("bug")

    monkeypatch.setattr(returner, "returns_to_spool", boom)
    with caplog.at_level(logging.ERROR, logger="salt_redis_syndic.returner"):
        returner.event_return([ret(JID, "m1")], opts)
    assert "unexpected error" in caplog.text
