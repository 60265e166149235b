"""CLI latency: ``salt '*-m*' test.ping`` on the top master, bridge vs. direct vs. syndic.

All topologies run at the same time with the same minion ids (2 DCs x N minions) and the
runs are interleaved (one run of each topology in turn), so machine noise hits them alike.
A run counts only if every minion returned; others are counted as failures, not timed away.
The stock syndic returns nothing in this lab: it gets ``--stock-runs`` runs, to record that.

The command is the plain CLI an operator types, output as ``txt`` (one ``minion: True`` line
per return).  Not ``--static``: Salt 3008 runs ``--static`` as a 100 % batch, a discovery
``test.ping`` followed by the command, so it would time two jobs per run.

    python -m bench.cli_latency [--runs 10] [--minions 3] [--topologies direct,bridge,syndic,syndic-w1,syndic-stock]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lab import Lab

from .common import exit_on_sigterm, summary, timed, write_result
from .topologies import TARGET, Labs, describe

DEFAULT = "direct,bridge,syndic,syndic-w1,syndic-stock"


def pinged(stdout: str) -> set[str]:
    """Minions that answered ``True`` in ``salt --out=txt`` output (``<minion>: True`` lines)."""
    out = set()
    for line in stdout.splitlines():
        minion, sep, value = line.partition(": ")
        if sep and value.strip() == "True" and minion and " " not in minion:
            out.add(minion)
    return out


def measure(lab: Lab, runs: int, expected: set[str]) -> tuple[list[float], int, list[int]]:
    """(seconds of the complete runs, failed runs, returns seen per run)."""
    samples: list[float] = []
    failures = 0
    seen: list[int] = []
    for _ in range(runs):
        seconds, result = timed(lambda: lab.salt(TARGET, "test.ping", "--out=txt", timeout=180))
        got = pinged(result.stdout)
        seen.append(len(got & expected))
        if got >= expected:
            samples.append(seconds)
        else:
            failures += 1
    return samples, failures, seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stock-runs", type=int, default=2, help="runs of the stock syndic (each ~20 s, no return)")
    parser.add_argument("--minions", type=int, default=3, help="minions per DC")
    parser.add_argument("--topologies", default=DEFAULT)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    names = args.topologies.split(",")

    results: dict[str, list[float]] = {n: [] for n in names}
    failures = {n: 0 for n in names}
    returns_seen: dict[str, list[int]] = {n: [] for n in names}
    with Labs(names, minions=args.minions) as labs:
        expected = set(next(iter(labs.labs.values())).minion_ids)
        for name, lab in labs.labs.items():  # warm-up: loader caches on every master
            if name != "syndic-stock":
                measure(lab, 2, expected)
        for i in range(args.runs):
            for name, lab in labs.labs.items():
                if name == "syndic-stock" and i >= args.stock_runs:
                    continue
                samples, failed, seen = measure(lab, 1, expected)
                results[name] += samples
                failures[name] += failed
                returns_seen[name] += seen
            print(f"  run {i + 1}: " + ", ".join(f"{n} {results[n][-1]:.2f}s" if results[n] else f"{n} -" for n in names),
                  flush=True)
        topo = {name: describe(name, lab) for name, lab in labs.labs.items()}
    table: dict[str, Any] = {name: summary(samples) if samples else None for name, samples in results.items()}

    def ratio(a: str, b: str) -> float | None:
        if table.get(a) and table.get(b):
            return round(table[a]["median"] / table[b]["median"], 3)
        return None

    ratios = {f"{n}_to_direct": ratio(n, "direct") for n in names if n != "direct"}
    ratios.update({f"bridge_to_{n}": ratio("bridge", n) for n in names if n.startswith("syndic")})
    data = {
        "what": f"salt '{TARGET}' test.ping wall time on the top master",
        "topology": f"2 DCs x {args.minions} minions",
        "topologies": topo,
        "runs": args.runs,
        "results": table,
        "failures": failures,
        "returns_seen_per_run": returns_seen,
        "ratios": ratios,
        "ratio_bridge_to_direct_median": ratios.get("bridge_to_direct"),
        "samples": results,
    }
    path = write_result("cli_latency", data)
    print(f"\n{'topology':<14} {'median':>8} {'min':>8} {'max':>8} {'ok':>4} {'failed':>6}  returns/run")
    for name in names:
        row = table[name]
        cells = (f"{row['median']:>8.3f} {row['min']:>8.3f} {row['max']:>8.3f} {row['n']:>4}" if row
                 else f"{'-':>8} {'-':>8} {'-':>8} {0:>4}")
        print(f"{name:<14} {cells} {failures[name]:>6}  {sorted(set(returns_seen[name]))} of {len(expected)}")
    print(f"ratios: {ratios}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
