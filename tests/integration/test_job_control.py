"""Job control from the MoM: find, list and kill a bridged job as on a single master.

A bridged job keeps the MoM's jid on every DC, and every DC minion is in the MoM's key list
(mirrored keys), so ``saltutil.find_job`` / ``saltutil.running`` / ``saltutil.kill_job`` sent from
the MoM reach the DC minions like any job, and ``salt-run jobs.active`` lists the job once,
under the MoM's jid. Processes are checked on the minions themselves, not in a log.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import salt.payload

from lab import Lab, find_script, parse_json_output, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bridged(lab: Lab) -> Lab:
    lab.wait_bridge(timeout=120)
    # the key mirror has listed every DC minion on the MoM (the estate loop, a few seconds)
    wait_until(lambda: set(lab.minion_ids) <= accepted_on_mom(lab), timeout=60,
               what="every DC minion listed in the MoM's key store")
    return lab


def accepted_on_mom(lab: Lab) -> set[str]:
    result = subprocess.run([find_script("salt-key"), "-c", str(lab.conf_dir(lab.top)), "-L", "--out=json"],
                            capture_output=True, text=True, timeout=60, check=False)
    return set(parse_json_output(result.stdout, result).get("minions", []))


def proc_files(lab: Lab, minion: str, jid: str) -> list[dict[str, Any]]:
    """The minion's own record of the job processes it runs for ``jid`` (Salt's proc dir)."""
    path = Path(lab.minion_file(minion, "cache/proc")) / jid
    if not path.exists():
        return []
    try:
        data = salt.payload.loads(path.read_bytes())
    except Exception:  # being written or removed right now
        return []
    return [data] if isinstance(data, dict) else []


def running_pids(lab: Lab, jid: str) -> dict[str, int]:
    out = {}
    for minion in lab.minion_ids:
        for data in proc_files(lab, minion, jid):
            pid = data.get("pid")
            if isinstance(pid, int) and psutil.pid_exists(pid):
                out[minion] = pid
    return out


@pytest.fixture
def sleeping(bridged: Lab) -> Iterator[str]:
    """A ``test.sleep 300`` from the MoM, running on every DC minion."""
    jid = bridged.salt_async("*", "test.sleep", "300")
    wait_until(lambda: set(running_pids(bridged, jid)) == set(bridged.minion_ids), timeout=60,
               what=f"job {jid} running on every minion")
    yield jid
    bridged.salt("*", "saltutil.kill_job", jid, "--out=json", timeout=60)  # never leave it running


def test_find_job_and_running_answer_from_the_mom(bridged: Lab, sleeping: str) -> None:
    found = bridged.salt_json("*", "saltutil.find_job", sleeping)
    assert set(found) == set(bridged.minion_ids)
    assert all(found[m].get("jid") == sleeping and found[m].get("fun") == "test.sleep" for m in found), found
    running = bridged.salt_json("*", "saltutil.running")
    assert {m for m, jobs in running.items() if any(j.get("jid") == sleeping for j in jobs)} == set(bridged.minion_ids)


def test_jobs_active_lists_the_bridged_job_once_under_the_moms_jid(bridged: Lab, sleeping: str) -> None:
    active = bridged.salt_run_json("jobs.active")
    assert sleeping in active, sorted(active)
    assert active[sleeping]["Function"] == "test.sleep"
    running_on = {m for entry in active[sleeping]["Running"] for m in entry}
    assert running_on == set(bridged.minion_ids)
    # no DC-local jid: every job listed is one the MoM published
    assert [j for j, job in active.items() if job.get("Function") == "test.sleep"] == [sleeping]


def test_kill_job_from_the_mom_stops_it_on_every_dc_minion(bridged: Lab, sleeping: str) -> None:
    pids = running_pids(bridged, sleeping)
    killed = bridged.salt_json("*", "saltutil.kill_job", sleeping)
    assert set(killed) == set(bridged.minion_ids)
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids.values()), timeout=30,
               what=f"the processes of job {sleeping} gone on every minion")
    assert running_pids(bridged, sleeping) == {}
    assert bridged.salt_json("*", "saltutil.find_job", sleeping) == {m: {} for m in bridged.minion_ids}
