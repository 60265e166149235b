"""Fan-out with real minions: ``salt '*-m*' test.ping`` from the top master to >= 50 salt-minions.

The minions are split over 2 DCs.  One topology runs at a time (three labs of 50+ minions
at once do not fit a shared 2-core host well), so the ratios are between blocks run one
after the other in the same invocation; each block runs ``--runs`` CLI calls.

    python -m bench.fanout [--minions 25] [--runs 5] [--topologies direct,bridge,syndic-w1]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_latency import measure
from .common import exit_on_sigterm, summary, write_result
from .topologies import TARGET, describe, make, wait_ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minions", type=int, default=25, help="minions per DC (2 DCs)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--topologies", default="direct,bridge,syndic-w1")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    names = args.topologies.split(",")
    rows: dict[str, Any] = {}
    for name in names:
        lab = make(name, minions=args.minions, ready_timeout=900)
        with lab:
            print(f"  {name}: {len(lab.minion_ids)} minions up in {lab.start_seconds or 0:.0f}s", flush=True)
            ready = wait_ready(name, lab, timeout=600)
            expected = set(lab.minion_ids)
            measure(lab, 1, expected)  # warm-up
            samples, failures, seen = measure(lab, args.runs, expected)
            rows[name] = {"ready": ready, "samples": samples, "failures": failures, "returns_per_run": seen,
                          "seconds": summary(samples) if samples else None, "topology": describe(name, lab)}
            print(f"  {name}: {rows[name]['seconds']} failures {failures} returns {seen}", flush=True)

    def ratio(a: str, b: str) -> float | None:
        if rows.get(a, {}).get("seconds") and rows.get(b, {}).get("seconds"):
            return round(rows[a]["seconds"]["median"] / rows[b]["seconds"]["median"], 3)
        return None

    ratios = {f"{n}_to_direct": ratio(n, "direct") for n in names if n != "direct"}
    ratios.update({f"bridge_to_{n}": ratio("bridge", n) for n in names if n.startswith("syndic")})
    path = write_result("fanout", {"what": f"salt '{TARGET}' test.ping, {2 * args.minions} real minions over 2 DCs",
                                   "minions_per_dc": args.minions, "runs": args.runs, "rows": rows, "ratios": ratios})
    print(f"\n{'topology':<12} {'median':>8} {'min':>8} {'max':>8} {'failed':>6}")
    for name, row in rows.items():
        s = row["seconds"]
        print(f"{name:<12} {s['median'] if s else '-':>8} {s['min'] if s else '-':>8} {s['max'] if s else '-':>8} "
              f"{row['failures']:>6}")
    print(f"ratios: {ratios}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
