"""Delivery under faults, with real daemons, a real redis-server and a TCP proxy on each DC link.

Each scenario publishes jobs from the MoM to both DCs (2 minions each) and checks that every
(jid, minion) return is on the MoM exactly once and that every minion ran every job exactly
once (``state.apply lab.jid`` appends the jid to a file on the minion).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil
import pytest

from lab import Lab, parse_json_output
from lab import wait_until as wait_for

pytestmark = pytest.mark.integration

ALL = {"east-m1", "east-m2", "west-m1", "west-m2"}
EAST = {"east-m1", "east-m2"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> Any:
    lab = Lab(dc_links=True)
    try:
        lab.start()
        lab.wait_bridge(timeout=90)
        yield lab
    finally:
        lab.stop()


@pytest.fixture(autouse=True)
def healed(faulty: Lab):
    yield
    for dc in faulty.dcs:
        faulty.link(dc).heal()



def job_report(lab: Lab, jid: str) -> dict[str, Any]:
    return parse_json_output(lab.salt_run("redis_syndic.job", jid, "--out=json").stdout)


def acked(lab: Lab, jid: str, dc: str) -> bool:
    return job_report(lab, jid).get(dc, {}).get("acknowledged", False)


def assert_exactly_once(lab: Lab, jids: list[str], minions: set[str] = ALL, timeout: float = 120) -> None:
    for jid in jids:
        wait_for(lambda: set(lab.mom_job_returns(jid)) >= minions, timeout, f"returns of {jid} on the MoM")
    for minion in minions:
        ran = lab.minion_jids(minion)
        for jid in jids:
            assert ran.count(jid) == 1, (minion, jid, ran)
    for jid in jids:
        stored = lab.mom_job_returns(jid)
        assert set(stored) == minions, (jid, stored)


def publish(lab: Lab, n: int = 1) -> list[str]:
    # queue=True: Salt refuses a second concurrent state run on a minion instead of queueing it
    return [lab.salt_async("*", "state.apply", "lab.jid", "queue=True") for _ in range(n)]


def test_link_cut_while_a_job_runs(faulty: Lab) -> None:
    (jid,) = publish(faulty)
    wait_for(lambda: acked(faulty, jid, "east"), 30, "east ack")
    faulty.link("east").cut()
    time.sleep(10)
    faulty.link("east").heal()
    assert_exactly_once(faulty, [jid])


def test_link_cut_while_a_job_is_published(faulty: Lab) -> None:
    faulty.link("east").cut()
    jids = publish(faulty, 2)
    time.sleep(10)
    assert not any(set(faulty.mom_job_returns(j)) & EAST for j in jids)
    faulty.link("east").heal()
    assert_exactly_once(faulty, jids)


def test_link_blackholed_while_jobs_are_published(faulty: Lab) -> None:
    faulty.link("east").blackhole()
    jids = publish(faulty, 3)
    time.sleep(30)
    faulty.link("east").heal()
    assert_exactly_once(faulty, jids, timeout=150)


def test_dc_master_restarted_while_returns_are_spooled(faulty: Lab) -> None:
    # the job outlives the ack check, so its returns are made after the cut even on a loaded host
    (jid,) = [faulty.salt_async("*", "cmd.run", "sleep 20; echo done")]
    wait_for(lambda: acked(faulty, jid, "east"), 30, "east ack")
    faulty.link("east").cut()
    spool = faulty.master("east").cachedir / "redis_syndic" / "spool"
    wait_for(lambda: len(list(spool.glob("*.mp"))) >= 2, 60, "east returns spooled")
    faulty.stop_master("east")
    faulty.start_master("east")
    faulty.link("east").heal()
    wait_for(lambda: set(faulty.mom_job_returns(jid)) == ALL, 120, "every return after the restart")
    assert set(faulty.mom_job_returns(jid).values()) == {"done"}


def test_dc_engine_killed_mid_burst_is_restarted_and_loses_nothing(faulty: Lab) -> None:
    jids = publish(faulty, 4)
    conf = str(faulty.master("east").conf_dir)
    engines = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and conf in " ".join(p.info["cmdline"]) and "redis_syndic" in " ".join(p.info["cmdline"])
               and "Engine" in " ".join(p.info["cmdline"])]
    assert engines, "no east engine process found"
    for proc in engines:
        os.kill(proc.pid, signal.SIGKILL)
    jids += publish(faulty, 2)
    assert_exactly_once(faulty, jids, timeout=150)


def test_job_that_expires_while_its_dc_is_cut_off_is_reported_never_run(make_lab) -> None:
    lab: Lab = make_lab(dc_links=True, minions_per_dc=1, mom_bridge={"job_ttl": 5}, dc_bridge={"clock_skew": 0})
    lab.wait_bridge(timeout=90)
    lab.link("east").cut()
    jid = lab.salt_async("*", "cmd.run", "echo {{ opts['id'] }} >> {{ opts['root_dir'] }}/expiry.txt", "template=jinja")
    wait_for(lambda: set(lab.mom_job_returns(jid)) == {"west-m1"}, 60, "west's return")
    time.sleep(8)  # past job_ttl while east cannot read the stream
    lab.link("east").heal()
    report = wait_for(lambda: (lambda r: r if r.get("east", {}).get("status") == "expired" else None)(job_report(lab, jid)),
                      60, "east reporting the job expired")
    assert report["west"]["returned"] == ["west-m1"]
    assert not lab.minion_file("east-m1", "expiry.txt").exists()
    assert lab.job_returns("east", jid) == {}
    assert f"redis_syndic: job {jid} was not run on DC east: expired" in lab.log("mom")


def test_a_half_written_return_on_the_mom_is_completed(faulty: Lab) -> None:
    # What a MoM killed between local_cache's makedirs(<jid>/<minion>) and its write of return.p
    # leaves: the minion's directory, empty, when the DC's return comes.  Salt's returner refuses
    # such a return for good ("Duplicate return"); the MoM must still end with it stored.
    import salt.utils.jid

    spec = faulty.master(faulty.top)
    jid = faulty.salt_async("east-m1", "test.sleep", "4")
    jid_dir = salt.utils.jid.jid_dir(jid, str(spec.cachedir / "jobs"), spec.config.get("hash_type", "sha256"))
    wait_for(lambda: os.path.isdir(jid_dir), 10, "the job's directory on the MoM")
    os.mkdir(os.path.join(jid_dir, "east-m1"))
    wait_for(lambda: faulty.mom_job_returns(jid) == {"east-m1": True}, 60, "the return of east-m1 on the MoM")
    assert acked(faulty, jid, "east")
