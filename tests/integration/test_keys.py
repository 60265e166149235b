"""DC uplink keys managed on the MoM like salt-key, against real daemons.

The DC's key is NOT pre-seeded here: it announces it through Redis, the MoM lists it as
pending and trusts nothing from that DC until an operator accepts it.
"""

from __future__ import annotations

import time

import pytest

from lab import Lab, parse_json_output
from lab import wait_until as wait_for
from salt_redis_syndic.security.signing import load_or_create_signer

pytestmark = pytest.mark.integration



def run_json(lab: Lab, *args: str):
    return parse_json_output(lab.salt_run(*args, "--out=json").stdout)


def test_dc_key_workflow_pending_accept_reject(make_lab) -> None:
    lab: Lab = make_lab(dcs=("east",), minions_per_dc=1, mom_bridge={"dc_keys": None})
    east_kid = load_or_create_signer(str(lab.dc_private_key("east")), create=False).key_id

    keys = wait_for(lambda: (k := run_json(lab, "redis_syndic.keys")).get("pending") and k, 30, "a pending key")
    assert keys == {"pending": {"east": east_kid}}
    status = run_json(lab, "redis_syndic.status")
    assert status["east"]["alive"] is False and "unknown_key" in status["east"]["error"]
    assert "DC east announced a new uplink key" in lab.log("mom")

    refused = lab.salt_run("redis_syndic.accept", "east")  # without the key id: refused, naming it
    assert f"redis_syndic.accept east {east_kid}" in refused.stdout + refused.stderr
    assert run_json(lab, "redis_syndic.keys") == {"pending": {"east": east_kid}}
    assert f"redis_syndic.accept east {east_kid}" in lab.log("mom")  # the log line names the key id to compare
    assert run_json(lab, "redis_syndic.accept", "east", east_kid) == {"dc": "east", "state": "accepted",
                                                                        "key_id": east_kid}
    assert run_json(lab, "redis_syndic.keys") == {"accepted": {"east": east_kid}}
    lab.wait_bridge(timeout=60)  # east-m1 answers through the bridge now
    assert run_json(lab, "redis_syndic.status")["east"]["alive"] is True

    assert run_json(lab, "redis_syndic.reject", "east")["state"] == "rejected"
    jid = lab.salt_async("east-m1", "test.echo", "after-reject")
    wait_for(lambda: "unknown_key" in lab.log("mom") and "rejected uplink batch" in lab.log("mom"), 30,
             "east's batches refused after the reject")
    time.sleep(2)
    assert lab.mom_job_returns(jid) == {}
