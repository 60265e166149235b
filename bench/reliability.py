"""Reliability: issue 3's fault scenarios against the bridge and against Salt's real syndic.

Each scenario publishes a few jobs from the top master to both DCs while it injects one
fault on DC ``east`` (its link to Redis for the bridge, its syndic's link to the MoM for the
syndic), then waits up to ``--settle`` seconds for every return.  Every job appends its own
marker to a file on each minion, so the minions' files say which jobs ran and how often.

Counted per scenario and topology: job runs delivered (job x minion pairs that ran at
least once), duplicate runs (a pair that ran more than once), returns delivered to the top
master's job cache.  Scenarios that need Redis run for the bridge only ("n/a" for syndic).

    python -m bench.reliability [--topologies bridge,syndic-w1] [--jobs 3] [--settle 90] [--scenarios cut_published,...]

The syndic is the thread-patched one (the stock 3008.4 syndic returns nothing at all here,
see bench/syndic_launcher.py); a killed salt-syndic is restarted after 5 s, as systemd's
``Restart=always`` with ``RestartSec=5`` would.  The bridge's engines are restarted by Salt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

from lab import Lab

from .common import write_result
from .syndic_lab import SyndicLab
from .topologies import TARGET, Labs, describe

FAULTY = "east"
DEFAULT = "bridge,syndic-w1"


@dataclass
class Run:
    """The jobs one scenario published: (jid, marker) pairs."""

    lab: Lab
    jobs: list[tuple[str, str]] = field(default_factory=list)

    def publish(self, n: int, sleep: int = 0) -> None:
        for _ in range(n):
            marker = uuid.uuid4().hex
            cmd = f"echo {marker} >> {{{{ opts['root_dir'] }}}}/markers.txt"
            if sleep:
                cmd = f"sleep {sleep}; {cmd}"
            jid = self.lab.salt_async(TARGET, "cmd.run", cmd, "template=jinja", "python_shell=True")
            self.jobs.append((jid, marker))


# ----------------------------------------------------------------------------- fault helpers


def is_syndic(lab: Lab) -> bool:
    return isinstance(lab, SyndicLab)


def link(lab: Lab, dc: str) -> Any:
    return lab.syndic_link(dc) if is_syndic(lab) else lab.link(dc)


def engine_pids(lab: Lab, master: str) -> list[int]:
    conf = str(lab.master(master).conf_dir)
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if conf in " ".join(p.info["cmdline"] or []) and "Engine" in " ".join(p.info["cmdline"] or [])]


def kill_dc_relay(lab: Lab, dc: str) -> None:
    """SIGKILL what relays DC ``dc`` upward: the bridge's DC engine, or the salt-syndic."""
    if is_syndic(lab):
        spec = lab.syndics[dc]
        spec.signal(signal.SIGKILL)
        time.sleep(5)  # what systemd's RestartSec=5 would wait
        lab.start_syndic(dc)
        return
    for pid in engine_pids(lab, dc):
        os.kill(pid, signal.SIGKILL)  # Salt's process manager restarts it within 10 s


# -------------------------------------------------------------------------------- scenarios


def cut_running(run: Run, jobs: int) -> None:
    """Link cut for 10 s while the jobs run."""
    run.publish(jobs, sleep=5)
    time.sleep(1)
    link(run.lab, FAULTY).cut()
    time.sleep(10)
    link(run.lab, FAULTY).heal()


def cut_published(run: Run, jobs: int) -> None:
    """Link cut for 10 s while the jobs are published."""
    link(run.lab, FAULTY).cut()
    run.publish(jobs)
    time.sleep(10)
    link(run.lab, FAULTY).heal()


def blackhole(run: Run, jobs: int) -> None:
    """Link blackholed for 30 s (no RST) while the jobs are published."""
    link(run.lab, FAULTY).blackhole()
    run.publish(jobs)
    time.sleep(30)
    link(run.lab, FAULTY).heal()


def relay_killed(run: Run, jobs: int) -> None:
    """The DC's relay (bridge DC engine / salt-syndic) killed with -9 mid-burst."""
    run.publish(jobs)
    kill_dc_relay(run.lab, FAULTY)
    run.publish(jobs)


def dc_master_restarted(run: Run, jobs: int) -> None:
    """The DC master restarted while its link is cut and its jobs' returns are waiting."""
    run.publish(jobs, sleep=5)
    time.sleep(1)
    link(run.lab, FAULTY).cut()
    time.sleep(6)
    run.lab.stop_master(FAULTY)
    run.lab.start_master(FAULTY)
    link(run.lab, FAULTY).heal()


def redis_restart_aof(run: Run, jobs: int) -> None:
    """redis-server restarted (AOF, appendfsync everysec) mid-burst."""
    run.publish(jobs)
    run.lab.stop_redis()
    run.lab.start_redis()
    run.publish(jobs)


def redis_data_lost(run: Run, jobs: int) -> None:
    """redis-server killed mid-burst and restarted with nothing on disk: every key is gone."""
    run.publish(jobs, sleep=5)
    link(run.lab, FAULTY).cut()
    run.publish(jobs)
    assert run.lab.redis is not None
    run.lab.kill_redis()
    shutil.rmtree(run.lab.redis.root / "appendonlydir", ignore_errors=True)
    run.lab.start_redis()
    link(run.lab, FAULTY).heal()


SCENARIOS: dict[str, tuple[Callable[[Run, int], None], bool]] = {  # name: (scenario, needs Redis)
    "cut_running": (cut_running, False),
    "cut_published": (cut_published, False),
    "blackhole_30s": (blackhole, False),
    "relay_killed": (relay_killed, False),
    "dc_master_restarted": (dc_master_restarted, False),
    "redis_restart_aof": (redis_restart_aof, True),
    "redis_data_lost": (redis_data_lost, True),
}


# ------------------------------------------------------------------------------- counting


def count(run: Run, settle: float) -> dict[str, Any]:
    lab = run.lab
    minions = list(lab.minion_ids)
    expected = len(run.jobs) * len(minions)

    def returned() -> int:
        return sum(len(set(lab.job_returns(lab.top, jid)) & set(minions)) for jid, _ in run.jobs)

    deadline = time.monotonic() + settle
    got = returned()
    while got < expected and time.monotonic() < deadline:
        time.sleep(2)
        got = returned()
    runs: Counter[tuple[str, str]] = Counter()
    for minion in minions:
        path = lab.minion_file(minion, "markers.txt")
        text = path.read_text() if path.exists() else ""
        counts = Counter(text.split())
        for _, marker in run.jobs:
            runs[(marker, minion)] = counts[marker]
    return {
        "jobs": len(run.jobs),
        "expected": expected,
        "runs_delivered": sum(1 for n in runs.values() if n >= 1),
        "duplicate_runs": sum(n - 1 for n in runs.values() if n > 1),
        "returns_delivered": got,
    }


def run_all(names: list[str], scenarios: list[str], jobs: int, settle: float, minions: int) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    with Labs(names, minions=minions, links=True, redis_appendonly=True) as labs:
        for scenario in scenarios:
            fn, needs_redis = SCENARIOS[scenario]
            for name, lab in labs.labs.items():
                if needs_redis and is_syndic(lab):
                    results.setdefault(scenario, {})[name] = None
                    continue
                if not labs.ready[name]:
                    results.setdefault(scenario, {})[name] = {"error": "topology never answered test.ping"}
                    continue
                run = Run(lab)
                began = time.monotonic()
                fn(run, jobs)
                out = count(run, settle)
                out["seconds"] = round(time.monotonic() - began, 1)
                results.setdefault(scenario, {})[name] = out
                print(f"  {scenario:<20} {name:<12} runs {out['runs_delivered']}/{out['expected']}  "
                      f"returns {out['returns_delivered']}/{out['expected']}  dup {out['duplicate_runs']}", flush=True)
                time.sleep(5)  # let restarted relays settle before the next scenario
        topo = {name: describe(name, lab) for name, lab in labs.labs.items()}
    return {"results": results, "topologies": topo}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topologies", default=DEFAULT)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--jobs", type=int, default=3, help="jobs per publish step of a scenario")
    parser.add_argument("--minions", type=int, default=2, help="minions per DC (2 DCs)")
    parser.add_argument("--settle", type=float, default=90, help="seconds to wait for returns after a scenario")
    args = parser.parse_args(argv)
    names, scenarios = args.topologies.split(","), args.scenarios.split(",")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    data = run_all(names, scenarios, args.jobs, args.settle, args.minions)
    path = write_result("reliability", {"what": "issue 3 fault scenarios, DC 'east' faulted", "jobs": args.jobs,
                                        "minions_per_dc": args.minions, "settle": args.settle, **data})
    print(f"\n{'scenario':<20} " + " ".join(f"{n + ' runs/ret/dup':>28}" for n in names))
    for scenario, row in data["results"].items():
        cells = []
        for name in names:
            out = row.get(name)
            if out is None:
                cells.append(f"{'n/a':>28}")
            elif "error" in out:
                cells.append(f"{'not ready':>28}")
            else:
                cells.append(f"{out['runs_delivered']}/{out['expected']} {out['returns_delivered']}/{out['expected']} "
                             f"{out['duplicate_runs']}".rjust(28))
        print(f"{scenario:<20} " + " ".join(cells))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
