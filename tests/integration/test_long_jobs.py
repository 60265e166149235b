"""Long jobs on the MoM behave as on a single master (mirrored minion keys, issue 13).

Two labs side by side with the same minion ids and grains: the bridge (MoM, DCs east and
west, 2 minions each) and a single master holding all four minions.  Default timeouts
(``timeout: 5``, ``gather_job_timeout: 10``).

* the MoM's key store lists the DC minions as markers that cannot authenticate (so Salt's CLI
  sends ``saltutil.find_job`` to them after ``timeout``, and the bridge carries it);
* a minion killed mid-job is reported "did not return" on both, with the same exit code and
  after the same number of ``find_job`` rounds (the delay, in Salt's own units);
* the minions of a stopped DC are reported like offline minions of a single master;
* a job addressed to one DC still lists that DC's minions only.

Long jobs that end normally (``test.sleep`` 8, 20 and 60 s, a 25 s ``state.apply``), the
targets, ``--subset`` and ``manage.status`` are cases of the conformance suite
(``bench/conformance.py``, run by ``test_conformance.py``), measured there once.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from salt_redis_syndic.estate.keymirror import mirrored_dc
from lab import Lab, find_script, parse_json_documents, wait_until

pytestmark = pytest.mark.integration

DCS = ("east", "west")
ALL = {"east-m1", "east-m2", "west-m1", "west-m2"}
NO_RETURN = "Minion did not return"


@pytest.fixture(scope="module")
def bridged() -> Iterator[Lab]:
    lab = Lab(DCS, 2, mom_bridge={"estate_interval": 1}, dc_bridge={"estate_interval": 1})
    try:
        lab.start()
        lab.wait_bridge(timeout=90)
        wait_until(lambda: accepted(lab) == ALL, 60, "the DC minions mirrored into the MoM key store")
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def single() -> Iterator[Lab]:
    lab = Lab.direct(DCS, 2)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


def salt_key(lab: Lab, master: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([find_script("salt-key"), "-c", str(lab.conf_dir(master)), *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def accepted(lab: Lab) -> set[str]:
    result = salt_key(lab, lab.top, "-L", "--out=json")
    return set(json.loads(result.stdout or "{}").get("minions", [])) if result.returncode == 0 else set()


def run(lab: Lab, *args: str, timeout: float = 240) -> tuple[dict[str, Any], int, float]:
    """``salt <args> --out=json`` on the top master: (per-minion output, exit code, seconds)."""
    begin = time.monotonic()
    result = lab.salt(*args, "--out=json", timeout=timeout)
    return parse_json_documents(result.stdout), result.returncode, time.monotonic() - begin


def outcome(out: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(minions that returned, minions reported as not returned)."""
    missing = {m for m, v in out.items() if isinstance(v, str) and v.startswith(NO_RETURN)}
    return set(out) - missing, missing



# ----------------------------------------------------------------------------- the key store


def test_dc_minions_are_mirrored_as_markers_not_keys(bridged: Lab, single: Lab) -> None:
    assert accepted(bridged) == accepted(single) == ALL
    for minion in ALL:
        text = (bridged.master("mom").pki_dir / "minions" / minion).read_text()
        assert mirrored_dc(text) == minion.split("-")[0]
        real = (bridged.master(minion.split("-")[0]).pki_dir / "minions" / minion).read_text()
        assert "BEGIN PUBLIC KEY" in real and "PUBLIC KEY" not in text
    # on the DCs nothing changed: their keys are real and no mirror was written there
    for dc in DCS:
        assert accepted_on(bridged, dc) == {m for m in ALL if m.startswith(dc)}


def accepted_on(lab: Lab, master: str) -> set[str]:
    result = salt_key(lab, master, "-L", "--out=json")
    return set(json.loads(result.stdout).get("minions", []))


# ----------------------------------------------------------------------------- a job for one DC

def test_job_for_one_dc_lists_only_that_dcs_minions(bridged: Lab) -> None:
    meta = json.dumps({"redis_syndic": {"dcs": ["east"]}})
    begin = time.monotonic()
    result = bridged.salt("--metadata", meta, "*", "test.ping", "--out=json", timeout=120)
    out, code = parse_json_documents(result.stdout), result.returncode
    # west's minions match '*' in the MoM key store: the CLI asks them find_job after `timeout`,
    # and the MoM engine answers for them (retcode 1), which Salt's CLI logs as an error line
    errors = [line for line in result.stderr.splitlines() if "saltutil returning errors" in line]
    print(f"\njob for DC east on '*': {time.monotonic() - begin:.1f}s, stderr: {errors}")
    assert out == {"east-m1": True, "east-m2": True} and code == 0, (out, code, result.stderr)


# ----------------------------------------------------------------------------- a minion dies mid-job

VICTIM = "east-m2"
KILLED_JOB_SECONDS = 30  # the others return between two find_job rounds (at 25 s and 35 s)


def cached_jobs(lab: Lab, fun: str, args: list[str]) -> list[str]:
    """Jids of ``fun(*args)`` in the top master's job cache, oldest first.

    Read from the ``local_cache`` files, not with ``salt-run``: the kill below must follow the
    first find_job answer within a second or two, even on a loaded host.
    """
    import salt.payload

    out = []
    for load_file in (lab.master(lab.top).cachedir / "jobs").glob("*/*/.load.p"):
        try:
            with open(load_file, "rb") as fh:
                load = salt.payload.load(fh)
        except Exception:  # being written right now: seen on the next poll  # noqa: BLE001, S112
            continue
        if isinstance(load, dict) and load.get("fun") == fun and [str(a) for a in load.get("arg") or []] == args:
            out.append(str(load["jid"]))
    return sorted(out)


def _killed_run(lab: Lab, report: dict[str, Any]) -> None:
    """Run a long job, kill the victim once it answered the first find_job, record the outcome."""
    proc = subprocess.Popen([find_script("salt"), "-c", str(lab.conf_dir(lab.top)), "*", "test.sleep",
                             str(KILLED_JOB_SECONDS), "--out=json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    try:
        jid = wait_until(lambda: cached_jobs(lab, "test.sleep", [str(KILLED_JOB_SECONDS)]), 30, "the job")[-1]

        def victim_answered() -> bool:
            finds = cached_jobs(lab, "saltutil.find_job", [jid])
            return bool(finds) and bool(lab.job_returns(lab.top, finds[0]).get(VICTIM))

        wait_until(victim_answered, 40, f"{VICTIM}'s answer to the first find_job")
        assert proc.poll() is None, "the CLI ended before the kill"
        lab.kill_minion(VICTIM)
        killed_at = time.monotonic()
        stdout, stderr = proc.communicate(timeout=240)
        report.update(out=parse_json_documents(stdout), code=proc.returncode, after_kill=time.monotonic() - killed_at,
                      rounds=len(cached_jobs(lab, "saltutil.find_job", [jid])), stderr=stderr)
    except Exception as err:  # noqa: BLE001 - reported by the test thread's caller
        report["error"] = repr(err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_minion_killed_mid_job_is_reported_like_on_a_single_master(bridged: Lab, single: Lab) -> None:
    reports: dict[str, dict[str, Any]] = {"bridged": {}, "single": {}}
    threads = [threading.Thread(target=_killed_run, args=(lab, reports[name]))
               for name, lab in (("bridged", bridged), ("single", single))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        b, s = reports["bridged"], reports["single"]
        assert "out" in b and "out" in s, reports
        print(f"\nkilled {VICTIM}: MoM ended {b['after_kill']:.1f}s after the kill ({b['rounds']} find_job rounds), "
              f"single master {s['after_kill']:.1f}s ({s['rounds']} rounds)")
        assert outcome(b["out"]) == outcome(s["out"]) == (ALL - {VICTIM}, {VICTIM}), reports
        assert b["code"] == s["code"] != 0
        assert b["rounds"] == s["rounds"], reports
    finally:
        for lab in (bridged, single):
            if not lab.minions[VICTIM].running():
                lab.start_minion(VICTIM)


def test_minions_of_a_stopped_dc_are_reported_like_offline_minions_of_a_single_master(bridged: Lab,
                                                                                         single: Lab) -> None:
    west = sorted(m for m in ALL if m.startswith("west"))
    side_by_side(lambda: bridged.stop_master("west"), lambda: [single.stop_minion(m) for m in west])
    try:
        (b_out, b_code, b_s), (s_out, s_code, s_s) = side_by_side(
            lambda: run(bridged, "*", "test.ping", timeout=120), lambda: run(single, "*", "test.ping", timeout=120))
        print(f"\nwest down: MoM {outcome(b_out)} rc {b_code} {b_s:.1f}s / single {outcome(s_out)} rc {s_code} {s_s:.1f}s")
        assert (outcome(b_out), b_code) == (outcome(s_out), s_code) == ((ALL - set(west), set(west)), 1)
    finally:
        side_by_side(lambda: bridged.start_master("west"), lambda: [single.start_minion(m) for m in west])
    bridged.wait_bridge(timeout=90)


def side_by_side(on_bridged: Callable[[], Any], on_single: Callable[[], Any]) -> tuple[Any, Any]:
    """Both calls at the same time (the labs share nothing but the host); the first error is raised."""
    results: list[Any] = [None, None]

    def go(index: int, call: Callable[[], Any]) -> None:
        try:
            results[index] = call()
        except BaseException as err:  # noqa: BLE001 - raised below, in the test's thread
            results[index] = err

    threads = [threading.Thread(target=go, args=pair) for pair in enumerate((on_bridged, on_single))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]
