"""Memory and CPU of the bridge's processes over a long run of repeated bursts.

A bridged lab (2 DCs x N minions) takes bursts of ``--jobs`` async jobs back to back for
``--minutes``; every ``--interval`` seconds the RSS and CPU seconds (user + system) of the MoM
engine process, each DC engine process and each DC's EventReturn process (where the returner
runs) are sampled.  Target: RSS after the run <= 1.1 x RSS after the first minute.

    python -m bench.memory [--minutes 10] [--jobs 20] [--minions 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from lab import Lab

from .burst import burst, publisher
from .common import exit_on_sigterm, write_result
from .topologies import make, wait_ready

KINDS = {"Engine": "engine", "EventReturn": "event_return"}


def bridge_processes(lab: Lab) -> dict[str, Any]:
    """{'mom/engine': proc, 'east/engine': proc, 'east/event_return': proc, ...}."""
    import psutil

    out: dict[str, Any] = {}
    for name, master in lab.masters.items():
        if master.pid is None:
            continue
        for child in psutil.Process(master.pid).children(recursive=True):
            try:
                title = " ".join(child.cmdline())
            except psutil.Error:
                continue
            for needle, kind in KINDS.items():
                if needle in title and (kind == "engine" or master.role == "dc"):
                    out.setdefault(f"{name}/{kind}", child)
    return out


def sample(procs: dict[str, Any]) -> dict[str, dict[str, float]]:
    import psutil

    out = {}
    for key, proc in procs.items():
        try:
            with proc.oneshot():
                cpu = proc.cpu_times()
                out[key] = {"rss_mb": round(proc.memory_info().rss / 2**20, 2), "cpu_s": round(cpu.user + cpu.system, 2)}
        except psutil.Error:
            out[key] = {"rss_mb": float("nan"), "cpu_s": float("nan")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--jobs", type=int, default=20, help="jobs per burst")
    parser.add_argument("--minions", type=int, default=3, help="minions per DC (2 DCs)")
    parser.add_argument("--interval", type=float, default=5)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    lab = make("bridge", minions=args.minions)
    samples: list[dict[str, Any]] = []
    bursts: list[dict[str, Any]] = []
    with lab:
        wait_ready("bridge", lab)
        procs = bridge_processes(lab)
        print(f"  watching {sorted(procs)}", flush=True)
        client = publisher(lab)
        stop = threading.Event()

        def sampler() -> None:
            begin = time.monotonic()
            while not stop.is_set():
                samples.append({"t": round(time.monotonic() - begin, 1), **sample(procs)})
                stop.wait(args.interval)

        thread = threading.Thread(target=sampler, daemon=True)
        begin = time.monotonic()
        thread.start()
        while time.monotonic() - begin < args.minutes * 60:
            out = burst(lab, client, args.jobs, deadline=300)
            bursts.append(out)
            print(f"  {time.monotonic() - begin:6.0f}s burst {out['returns']}/{out['expected_returns']} in {out['seconds']}s",
                  flush=True)
        stop.set()
        thread.join()
        samples.append({"t": round(time.monotonic() - begin, 1), **sample(procs)})
    first_minute = next((s for s in samples if s["t"] >= 60), samples[-1])
    last = samples[-1]
    table = {}
    for key in procs:
        rss1, rss_end = first_minute[key]["rss_mb"], last[key]["rss_mb"]
        table[key] = {"rss_mb_after_1min": rss1, "rss_mb_end": rss_end, "rss_ratio": round(rss_end / rss1, 3),
                      "cpu_s": round(last[key]["cpu_s"] - samples[0][key]["cpu_s"], 2)}
    returns = sum(b["returns"] for b in bursts)
    expected = sum(b["expected_returns"] for b in bursts)
    path = write_result("memory", {"what": f"bridge processes over {args.minutes} min of bursts of {args.jobs} jobs",
                                   "minutes": args.minutes, "minions_per_dc": args.minions, "jobs_per_burst": args.jobs,
                                   "bursts": len(bursts), "returns": returns, "expected_returns": expected,
                                   "table": table, "samples": samples})
    print(f"\n{'process':<22} {'RSS@1min MB':>12} {'RSS end MB':>11} {'ratio':>6} {'CPU s':>7}")
    for key, row in sorted(table.items()):
        print(f"{key:<22} {row['rss_mb_after_1min']:>12} {row['rss_mb_end']:>11} {row['rss_ratio']:>6} {row['cpu_s']:>7}")
    print(f"{len(bursts)} bursts, {returns}/{expected} returns\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
