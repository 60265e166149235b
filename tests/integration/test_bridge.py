"""Bridge core against real daemons: MoM + DCs east/west (2 minions each) + redis-server.

Every test asserts the exact set of minions and their results as the MoM sees them (CLI
output and/or the MoM job cache).  Tests share one module-scoped lab and leave it as they
found it (what they stop, they start again).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from lab import Lab, parse_json_output
from lab import wait_until as wait_for
from salt_redis_syndic.security.signing import load_or_create_signer
from salt_redis_syndic.wire.jobs import encode_job, make_job

pytestmark = pytest.mark.integration

ALL = {"east-m1", "east-m2", "west-m1", "west-m2"}


@pytest.fixture(scope="module")
def bridged(lab: Lab) -> Lab:
    lab.wait_bridge(timeout=90)
    return lab


def cli(lab: Lab, *args: str, timeout: float = 90) -> dict[str, Any]:
    """Run ``salt`` on the MoM with JSON output; every minion's result by id."""
    result = lab.salt(*args, "--out=json", "--static", timeout=timeout)
    return parse_json_output(result.stdout, result)



def all_returns(lab: Lab, jid: str):
    """The MoM's stored returns of ``jid`` once every minion is there, else None."""
    stored = lab.mom_job_returns(jid)
    return stored if set(stored) == ALL else None


def async_jid(lab: Lab, *args: str) -> str:
    out = lab.salt(*args, "--async", timeout=60).stdout
    jid = out.strip().split()[-1]
    assert jid.isdigit() and len(jid) >= 20, out
    return jid


def test_ping_every_minion_of_every_dc(bridged: Lab) -> None:
    assert cli(bridged, "*", "test.ping") == {m: True for m in ALL}


def test_arg_with_args_and_kwargs(bridged: Lab) -> None:
    out = cli(bridged, "*", "test.arg", "1", "two", "k=v", "n=3")
    assert set(out) == ALL
    for ret in out.values():
        assert ret["args"] == [1, "two"]
        assert ret["kwargs"]["k"] == "v" and ret["kwargs"]["n"] == 3
        assert ret["kwargs"]["__pub_master_id"] == "mom"  # loop guard carried to the minions


def test_list_target(bridged: Lab) -> None:
    assert cli(bridged, "-L", "east-m2,west-m1", "test.ping") == {"east-m2": True, "west-m1": True}


def test_compound_target(bridged: Lab) -> None:
    out = cli(bridged, "-C", "G@role:web or east-m2", "test.ping")
    assert out == {"east-m1": True, "east-m2": True, "west-m1": True}


def test_grain_target(bridged: Lab) -> None:
    assert cli(bridged, "-G", "dc:west", "grains.get", "dc") == {"west-m1": "west", "west-m2": "west"}


def test_pillar_target(bridged: Lab) -> None:
    # Pillar is compiled on each DC master: the DC's own pillar decides the match.
    assert cli(bridged, "-I", "lab:dc:east", "grains.get", "dc") == {"east-m1": "east", "east-m2": "east"}


def test_state_apply_with_pillar_kwarg(bridged: Lab) -> None:
    marker = uuid.uuid4().hex
    out = cli(bridged, "*", "state.apply", "lab", f'pillar={{"lab_marker": "{marker}"}}', timeout=180)
    assert set(out) == ALL
    for minion, states in out.items():
        assert isinstance(states, dict) and states, (minion, states)
        assert all(s["result"] is True for s in states.values()), (minion, states)
        content = bridged.minion_file(minion, "lab_state.txt").read_text()
        assert minion in content and marker in content, content


def test_return_larger_than_one_mib_arrives_whole(bridged: Lab) -> None:
    size = 1_500_000
    jid = async_jid(bridged, "*", "cmd.run", f'python3 -c "print(\'x\' * {size})"')
    stored = wait_for(lambda: all_returns(bridged, jid), 60, "all big returns in the MoM job cache")
    assert {m: len(v) for m, v in stored.items()} == {m: size for m in ALL}


def test_async_then_lookup_jid_and_list_job(bridged: Lab) -> None:
    jid = async_jid(bridged, "*", "test.echo", "hello")
    wait_for(lambda: set(bridged.mom_job_returns(jid)) == ALL, 60, "returns in the MoM cache")
    looked_up = parse_json_output(bridged.salt_run("jobs.lookup_jid", jid, "--out=json").stdout)
    assert looked_up == {m: "hello" for m in ALL}
    listed = parse_json_output(bridged.salt_run("jobs.list_job", jid, "--out=json").stdout)
    assert set(listed["Minions"]) == ALL
    assert set(listed["Result"]) == ALL
    assert listed["Metadata"]["redis_syndic_dcs"] == {"east": ["east-m1", "east-m2"], "west": ["west-m1", "west-m2"]}
    report = parse_json_output(bridged.salt_run("redis_syndic.job", jid, "--out=json").stdout)
    assert report["east"]["returned"] == ["east-m1", "east-m2"] and report["west"]["missing"] == []


def test_minion_that_does_not_return_is_reported(bridged: Lab) -> None:
    bridged.stop_minion("west-m2")
    try:
        result = bridged.salt("*", "test.ping", timeout=120)
        assert "Minion did not return" in result.stdout
        for minion in ALL - {"west-m2"}:
            assert f"{minion}:\n    True" in result.stdout
        jid = result.stdout.split("salt-run jobs.lookup_jid ")[-1].split()[0]
        report = parse_json_output(bridged.salt_run("redis_syndic.job", jid, "--out=json").stdout)
        assert report["west"]["missing"] == ["west-m2"]
        assert report["west"]["targeted"] == ["west-m1", "west-m2"]
    finally:
        bridged.start_minion("west-m2")
    bridged.wait_bridge(timeout=90)


def test_orchestrate_on_the_mom_reaches_dc_minions(bridged: Lab) -> None:
    orch = bridged.master("mom").root / "srv" / "salt" / "orch_ping.sls"
    orch.write_text("ping_all:\n  salt.function:\n    - name: test.ping\n    - tgt: '*'\n")
    out = parse_json_output(bridged.salt_run("state.orchestrate", "orch_ping", "--out=json", timeout=180).stdout)
    data = out["data"] if "data" in out else out
    states = next(iter(data.values()))
    (state,) = states.values()
    assert state["result"] is True, state
    assert set(state["changes"]["ret"]) == ALL


def test_expired_job_is_not_run_and_is_reported(bridged: Lab) -> None:
    """A correctly signed job that reaches the DCs after its expiry is reported, never run."""
    import salt.utils.jid

    jid = salt.utils.jid.gen_jid({})
    marker = uuid.uuid4().hex
    load = {"fun": "cmd.run", "arg": [f"echo {marker}"], "tgt": "*", "tgt_type": "glob", "jid": jid,
            "ret": "", "user": "root"}
    job = make_job(load, origin="mom", ttl=10, now=time.time() - 3600)
    signer = load_or_create_signer(str(bridged.mom_private_key), create=False)
    bridged.redis_client().xadd("redis_syndic:jobs", encode_job(job, signer))

    def reported() -> Any:
        report = parse_json_output(bridged.salt_run("redis_syndic.job", jid, "--out=json").stdout)
        return report if all(report.get(dc, {}).get("status") == "expired" for dc in ("east", "west")) else None

    wait_for(reported, 60, "both DCs to report the job expired", interval=1)
    for dc in ("east", "west"):
        assert bridged.job_returns(dc, jid) == {}
    assert bridged.mom_job_returns(jid) == {}
    assert "expired" in bridged.log("east") and jid in bridged.log("east")


def test_job_published_while_a_dc_is_down_runs_once_after_it_returns(bridged: Lab) -> None:
    bridged.stop_master("west")
    try:
        jid = async_jid(bridged, "*", "state.apply", "lab.jid")
        # east runs it now; west's engine is down with its master
        wait_for(lambda: {"east-m1", "east-m2"} <= set(bridged.mom_job_returns(jid)), 60, "east returns")
        assert not {"west-m1", "west-m2"} & set(bridged.mom_job_returns(jid))
    finally:
        bridged.start_master("west")
    wait_for(lambda: set(bridged.mom_job_returns(jid)) == ALL, 120, "west returns after its master is back")
    for minion in ALL:
        assert bridged.minion_jids(minion).count(jid) == 1, (minion, bridged.minion_jids(minion))
    # a second engine restart must not run it again
    bridged.stop_master("west")
    bridged.start_master("west")
    bridged.wait_bridge(timeout=90)
    for minion in ("west-m1", "west-m2"):
        assert bridged.minion_jids(minion).count(jid) == 1


def test_returns_made_while_redis_is_down_are_spooled_and_arrive(bridged: Lab) -> None:
    # long enough that the returns are made after Redis is gone, even when the acks below are
    # slow to confirm on a loaded host (a 4 s job had already returned there: nothing to spool)
    jid = async_jid(bridged, "*", "cmd.run", "sleep 20; echo done")
    # wait until both DCs took the job (acks stored on the MoM), then take Redis away
    wait_for(lambda: set(parse_json_output(bridged.salt_run("redis_syndic.job", jid, "--out=json").stdout)
                         .get("east", {}).get("targeted", [])) == {"east-m1", "east-m2"}, 30, "east ack")
    wait_for(lambda: set(parse_json_output(bridged.salt_run("redis_syndic.job", jid, "--out=json").stdout)
                         .get("west", {}).get("targeted", [])) == {"west-m1", "west-m2"}, 30, "west ack")
    bridged.stop_redis()
    try:
        spools = [bridged.master(dc).cachedir / "redis_syndic" / "spool" for dc in ("east", "west")]

        def spooled() -> bool:
            return all(len(list(p.glob("*.mp"))) >= 1 for p in spools)

        wait_for(spooled, 60, "returns spooled on both DCs while Redis is down")
        assert bridged.mom_job_returns(jid) == {}
    finally:
        bridged.start_redis()
    stored = wait_for(lambda: all_returns(bridged, jid), 60, "spooled returns on the MoM after Redis is back")
    assert all(v == "done" for v in stored.values())
    wait_for(lambda: all(not list(p.glob("*.mp")) for p in spools), 30, "spools drained")
    bridged.wait_bridge(timeout=90)
