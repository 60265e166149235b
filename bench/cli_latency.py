"""CLI latency: ``salt '*' test.ping`` on the top master, bridge vs. a single master.

Both labs run at the same time with the same minion ids (2 DCs x N minions) and the runs
are interleaved, so machine noise hits both alike.  Every run must return every minion
(a run with a missing minion counts as a failure and is reported, not timed away).

    python -m bench.cli_latency [--runs 10] [--minions 2]
"""

from __future__ import annotations

import argparse
import json
import sys

from salt_redis_syndic.lab import Lab, parse_json_output

from .common import summary, timed, write_result


def measure(lab: Lab, runs: int, expected: set[str]) -> tuple[list[float], int]:
    samples: list[float] = []
    failures = 0
    for _ in range(runs):
        seconds, result = timed(lambda: lab.salt("*", "test.ping", "--out=json", "--static", timeout=120))
        try:
            ok = {m for m, r in parse_json_output(result.stdout, result).items() if r is True} == expected
        except Exception:
            ok = False
        if ok:
            samples.append(seconds)
        else:
            failures += 1
    return samples, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--minions", type=int, default=2, help="minions per DC")
    args = parser.parse_args(argv)

    bridged = Lab(minions_per_dc=args.minions)
    direct = Lab.direct(minions_per_dc=args.minions)
    with bridged, direct:
        bridged.wait_bridge(timeout=120)
        direct.wait_bridge(timeout=120)
        expected = set(bridged.minion_ids)
        # warm-up: first runs pay for loader caches on every master
        measure(bridged, 2, expected)
        measure(direct, 2, expected)
        results: dict[str, list[float]] = {"bridge": [], "direct": []}
        failures = {"bridge": 0, "direct": 0}
        for _ in range(args.runs):
            for name, lab in (("bridge", bridged), ("direct", direct)):
                samples, failed = measure(lab, 1, expected)
                results[name] += samples
                failures[name] += failed
    table = {name: summary(samples) if samples else None for name, samples in results.items()}
    ratio = (table["bridge"]["median"] / table["direct"]["median"]) if table["bridge"] and table["direct"] else None
    data = {
        "what": "salt '*' test.ping wall time on the top master",
        "topology": f"2 DCs x {args.minions} minions; bridge: MoM + 2 DC masters + redis, syndic_wait 0; "
                    f"direct: one master with all minions",
        "runs": args.runs,
        "results": table,
        "failures": failures,
        "ratio_bridge_to_direct_median": round(ratio, 3) if ratio else None,
        "samples": results,
    }
    path = write_result("cli_latency", data)
    print(f"{'config':<8} {'median':>8} {'min':>8} {'max':>8} {'ok':>4} {'failed':>6}")
    for name in ("direct", "bridge"):
        row = table[name]
        if row:
            print(f"{name:<8} {row['median']:>8.3f} {row['min']:>8.3f} {row['max']:>8.3f} {row['n']:>4} {failures[name]:>6}")
        else:
            print(f"{name:<8} {'-':>8} {'-':>8} {'-':>8} {0:>4} {failures[name]:>6}")
    print(f"bridge/direct median ratio: {data['ratio_bridge_to_direct_median']}")
    print(f"written: {path}")
    json.dumps(data)
    return 0 if all(v == 0 for v in failures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
