"""The lab itself: a plain topology (no bridge) comes up, runs the lab states, restarts a
master, and leaves no process behind.

Every integration test stands on the lab, so its own promises (readiness, the state tree,
exactly-once jid file, teardown without orphans) are pinned here without the product.
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from lab import Lab, lab_processes

pytestmark = [pytest.mark.functional, pytest.mark.integration]


@pytest.fixture(scope="module")
def plain_lab() -> Iterator[Lab]:
    lab = Lab(dcs=("east",), minions_per_dc=1, bridge=False)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


def test_config_is_plain(plain_lab: Lab) -> None:
    for master in plain_lab.masters.values():
        assert "redis_syndic" not in master.config
        assert "engines" not in master.config
        assert master.config["interface"] == master.address
    assert plain_lab.masters["mom"].config["order_masters"] is True
    assert plain_lab.masters["east"].address.endswith(".2")
    assert plain_lab.redis is None


def test_dc_master_pings_its_minion(plain_lab: Lab) -> None:
    result = plain_lab.dc_salt("east", "east-m1", "test.ping")
    assert result.returncode == 0, result.stderr
    assert plain_lab.dc_salt_json("east", "east-m1", "test.ping") == {"east-m1": True}


def test_lab_states_use_grains_and_pillar(plain_lab: Lab) -> None:
    ret = plain_lab.dc_salt_json(
        "east", "east-m1", "state.apply", "lab", 'pillar={"lab_marker": "m42"}'
    )
    assert all(state["result"] for state in ret["east-m1"].values()), ret
    text = plain_lab.minion_file("east-m1", "lab_state.txt").read_text()
    assert text == "id=east-m1\ndc=east\nrole=web\npillar_dc=east\nmarker=m42\n"


def test_pillar_comes_from_the_dc_master(plain_lab: Lab) -> None:
    # salt 3008.4 masks pillar values in returns ('**********') unless unmask=True
    ret = plain_lab.dc_salt_json("east", "east-m1", "pillar.get", "lab:dc", "unmask=True")
    assert ret == {"east-m1": "east"}


def test_jid_state_records_each_run_once(plain_lab: Lab) -> None:
    before = plain_lab.minion_jids("east-m1")
    result = plain_lab.dc_salt("east", "east-m1", "state.apply", "lab.jid", "--show-jid")
    assert result.returncode == 0, result.stdout + result.stderr
    jid = next(
        line.split(":", 1)[1].strip()
        for line in result.stdout.splitlines()
        if line.startswith("jid:")
    )
    assert plain_lab.minion_jids("east-m1") == [*before, jid]
    returns = plain_lab.job_returns("east", jid)
    assert set(returns) == {"east-m1"}


def test_master_restart(plain_lab: Lab) -> None:
    plain_lab.kill_master("east")
    assert not plain_lab.masters["east"].running()
    plain_lab.start_master("east")  # waits until east-m1 answers again
    assert plain_lab.dc_salt_json("east", "east-m1", "test.ping") == {"east-m1": True}


def test_stop_leaves_no_process(plain_lab: Lab) -> None:
    root = str(plain_lab.root)
    pids = [d.pid for d in plain_lab.daemons()]
    assert lab_processes(root), "the lab should be running before stop()"
    plain_lab.stop()
    plain_lab.stop()  # idempotent
    leftovers = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if root in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
    assert not any(psutil.pid_exists(pid) for pid in pids if pid)
    assert plain_lab.stop_seconds is not None and plain_lab.stop_seconds < 30
