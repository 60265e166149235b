"""A job addressed to one DC, and events forwarded from the DCs, against real daemons.

One lab: MoM, DCs east and west with one minion each; both DCs forward ``custom/*`` events.

* ``salt --metadata='{"redis_syndic": {"dcs": ["east"]}}' '*' state.apply lab.jid`` runs on
  east-m1 only: west's minion never runs it, west's job cache never sees it, and the CLI
  lists east-m1 alone (the MoM does not wait for west).
* an event fired on a DC master's bus reaches the MoM bus as
  ``redis_syndic/dc/<dc>/event/<tag>``, seen by a real ``salt-run state.event`` listener.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Iterator

import pytest

from lab import Lab, find_script, parse_json_documents, wait_until

pytestmark = pytest.mark.integration

FORWARD = ["custom/*", "salt/minion/*/start"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    the_lab = Lab(dcs=("east", "west"), minions_per_dc=1, mom_bridge={"forward_events_down": ["ops/*"]},
                  dc_bridge={"forward_events": FORWARD, "moms": ["mom"]},
                  dc_opts={"event_return_whitelist": ["salt/job/*/ret/*", *FORWARD]})
    try:
        the_lab.start()
        the_lab.wait_bridge(timeout=90)
        yield the_lab
    finally:
        the_lab.stop()


def test_job_addressed_to_east_does_not_run_in_west(lab: Lab) -> None:
    # Not --static: Salt 3008 runs --static as a 100% batch, which drops --metadata.
    result = lab.salt("--metadata", json.dumps({"redis_syndic": {"dcs": ["east"]}}), "*", "state.apply", "lab.jid",
                      "--show-jid", "--out=json", timeout=90)
    match = re.search(r"^jid: (\d{20})", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    jid = match.group(1)
    assert set(parse_json_documents(result.stdout[match.end():])) == {"east-m1"}, result.stdout + result.stderr
    assert lab.minion_jids("east-m1").count(jid) == 1
    assert set(lab.mom_job_returns(jid)) == {"east-m1"}

    report = lab.salt_run_json("redis_syndic.job", jid)
    assert report["east"]["status"] == "published" and report["east"]["returned"] == ["east-m1"]
    assert report["west"] == {"acknowledged": False}
    # west read the entry (its cursor passed it) but never published it
    wait_until(lambda: re.search(r"sent to DC\(s\) east", lab.log("mom")), 10, "the MoM's publish log line")
    assert lab.job_returns("west", jid) == {}
    assert jid not in lab.minion_jids("west-m1")
    assert f"published job {jid}" not in lab.log("west")
    assert f"published job {jid}" in lab.log("east")
    # and a job without metadata still reaches both
    assert lab.salt_json("*", "test.ping") == {"east-m1": True, "west-m1": True}


def test_events_from_a_dc_reach_the_mom_bus_naming_the_dc(lab: Lab) -> None:
    argv = [find_script("salt-run"), "-c", str(lab.conf_dir("mom")), "state.event",
            "redis_syndic/dc/*/event/custom/*", "count=1"]
    listener = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    try:
        # The listener connects asynchronously: fire until it has seen one (each one would do).
        deadline = time.monotonic() + 60
        while listener.poll() is None and time.monotonic() < deadline:
            lab.dc_salt_run("west", "event.send", "custom/hello", 'data={"x": 1}', timeout=30)
            time.sleep(1)
        out, err = listener.communicate(timeout=10) if listener.poll() is not None else ("", "")
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    tag, _, payload = out.strip().partition("\t")
    assert tag == "redis_syndic/dc/west/event/custom/hello", out + err
    data, _ = json.JSONDecoder().raw_decode(payload.strip())
    assert data["dc"] == "west" and data["tag"] == "custom/hello" and data["data"]["x"] == 1
    status = lab.salt_run_json("redis_syndic.status")
    assert status["west"]["alive"] is True


def test_events_from_the_mom_reach_every_dc_bus_naming_the_mom(lab: Lab) -> None:
    argv = [find_script("salt-run"), "-c", str(lab.conf_dir("east")), "state.event",
            "redis_syndic/mom/*/event/ops/*", "count=1"]
    listener = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while listener.poll() is None and time.monotonic() < deadline:
            lab.salt_run("event.send", "ops/notice", 'data={"msg": "maintenance"}', timeout=30)
            time.sleep(1)
        out, err = listener.communicate(timeout=10) if listener.poll() is not None else ("", "")
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    tag, _, payload = out.strip().partition("\t")
    assert tag == "redis_syndic/mom/mom/event/ops/notice", out + err
    data, _ = json.JSONDecoder().raw_decode(payload.strip())
    assert data["mom"] == "mom" and data["tag"] == "ops/notice" and data["data"]["msg"] == "maintenance"
    assert "redis_syndic: rejected" not in lab.log("east") + lab.log("west")
