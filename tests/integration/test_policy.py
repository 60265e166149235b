"""DC policy against real daemons: west denies cmd.*, east allows everything.

A ``cmd.run`` from the MoM runs on east only; west refuses it before publishing (its minion
never sees the job) and reports ``refused`` upward, which ``redis_syndic.job`` shows.
``test.ping`` still reaches both DCs.
"""

from __future__ import annotations

import re
from typing import Callable

import pytest

from lab import Lab, parse_json_output
from lab import wait_until as wait_for

pytestmark = pytest.mark.integration



def test_west_refuses_cmd_run_east_runs_it_ping_reaches_both(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(dcs=("east", "west"), minions_per_dc=1,
                   dc_bridge=lambda dc: {"deny_functions": ["cmd.*"]} if dc == "west" else {})
    lab.wait_bridge(timeout=60)  # test.ping from the MoM answered by east-m1 and west-m1

    result = lab.salt("*", "cmd.run", "echo hi", "--show-jid", "--out=json", timeout=60)
    match = re.search(r"^jid: (\d{20})", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    jid = match.group(1)
    assert parse_json_output(result.stdout, result) == {"east-m1": "hi"}

    report = wait_for(lambda: (lambda r: r if r.get("west", {}).get("status") == "refused" else None)(
        lab.salt_run_json("redis_syndic.job", jid)), 30, "west's refusal in redis_syndic.job", interval=1)
    assert report["west"]["acknowledged"] is True and report["west"]["targeted"] == []
    assert report["east"]["status"] == "published" and report["east"]["returned"] == ["east-m1"]

    # west never published it: nothing in its job cache, its minion never ran it
    assert lab.job_returns("west", jid) == {}
    assert jid not in lab.minion_jids("west-m1")
    assert lab.job_returns("east", jid) == {"east-m1": "hi"}
    assert set(lab.mom_job_returns(jid)) == {"east-m1"}
    west_log = lab.log("west")
    assert re.search(rf"job {jid} \(cmd\.run .*refused by the policy of DC west: function 'cmd\.run' is denied", west_log)
    assert re.search(rf"job {jid} was not run on DC west: refused", lab.log("mom"))

    assert lab.salt_json("*", "test.ping") == {"east-m1": True, "west-m1": True}
