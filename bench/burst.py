"""Burst: N ``--async`` test.ping jobs published as fast as possible from the top master.

Measures, per round, the seconds from the first publish until every ``(jid, minion)`` return
is in the top master's job cache, and how many arrived by the deadline.  Topologies run at
the same time and rounds alternate between them (the machine is shared and noisy).

Jobs are published with Salt's ``LocalClient.pub`` in this process (what ``salt --async``
does, without paying a CLI process start per job).

    python -m bench.burst [--jobs 200] [--rounds 3] [--minions 3] [--topologies direct,bridge,syndic-w1,syndic-stock]
    python -m bench.burst --wan [--delay 0.1]      # benchmark 3: bridge and syndic, no delay vs. delay on every DC link
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lab import Lab

from .common import exit_on_sigterm, summary, write_result
from .topologies import TARGET, Labs, describe, link_delay

DEFAULT = "direct,bridge,syndic-w1,syndic-stock"
WAN_DEFAULT = "bridge,syndic-w1"


def publisher(lab: Lab) -> Any:
    import salt.client

    return salt.client.LocalClient(c_path=str(lab.conf_dir(lab.top) / "master"))


def burst(lab: Lab, client: Any, jobs: int, deadline: float, poll: float = 0.25) -> dict[str, Any]:
    """Publish ``jobs`` jobs, wait for every return (or the deadline); what happened."""
    expected = set(lab.minion_ids)
    begin = time.perf_counter()
    jids: list[str] = []
    for _ in range(jobs):
        pub = client.pub(TARGET, "test.ping", [], timeout=60)
        if isinstance(pub, dict) and pub.get("jid"):
            jids.append(str(pub["jid"]))
    published = time.perf_counter() - begin
    pending = {jid: set(expected) for jid in jids}
    got = 0
    end = begin + deadline
    last_seen = begin
    while pending and time.perf_counter() < end:
        for jid in list(pending):
            seen = set(lab.job_returns(lab.top, jid)) & pending[jid]
            if seen:
                got += len(seen)
                pending[jid] -= seen
                last_seen = time.perf_counter()
                if not pending[jid]:
                    del pending[jid]
        if pending:
            time.sleep(poll)
    complete = not pending and len(jids) == jobs
    return {
        "seconds": round((last_seen if complete else time.perf_counter()) - begin, 3),
        "publish_seconds": round(published, 3),
        "jobs_published": len(jids),
        "returns": got,
        "expected_returns": jobs * len(expected),
        "complete": complete,
    }


def run(names: list[str], jobs: int, rounds: int, minions: int, deadline: float,
        delays: list[float], links: bool) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {}
    with Labs(names, minions=minions, links=links) as labs:
        clients = {name: publisher(lab) for name, lab in labs.labs.items()}
        for name, lab in labs.labs.items():  # warm-up: loader caches, first job dirs
            burst(lab, clients[name], min(5, jobs), deadline=60 if labs.ready[name] else 5)
        for r in range(rounds):
            for delay in delays:
                for name, lab in labs.labs.items():
                    if links:
                        link_delay(name, lab, delay)
                    limit = deadline if labs.ready[name] else min(deadline, 60)
                    out = burst(lab, clients[name], jobs, limit)
                    key = f"{name}@{int(delay * 1000)}ms" if links else name
                    rows.setdefault(key, []).append(out)
                    print(f"  round {r + 1} {key:<22} {out['seconds']:>8.2f}s  {out['returns']}/{out['expected_returns']}",
                          flush=True)
        topo = {name: describe(name, lab) for name, lab in labs.labs.items()}
        ready = dict(labs.ready)
    table = {}
    for key, outs in rows.items():
        times = [o["seconds"] for o in outs if o["complete"]]
        table[key] = {
            "complete_rounds": sum(o["complete"] for o in outs),
            "rounds": len(outs),
            "seconds": summary(times) if times else None,
            "returns_per_round": [o["returns"] for o in outs],
            "expected_returns": outs[0]["expected_returns"],
            "returns_per_second": summary([o["returns"] / o["seconds"] for o in outs if o["complete"]]) if times else None,
        }
    return {"rows": rows, "table": table, "topologies": topo, "ready": ready}


def ratio(table: dict[str, Any], a: str, b: str, field: str = "seconds") -> float | None:
    if table.get(a, {}).get(field) and table.get(b, {}).get(field):
        return round(table[a][field]["median"] / table[b][field]["median"], 3)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minions", type=int, default=3, help="minions per DC (2 DCs)")
    parser.add_argument("--deadline", type=float, default=600, help="seconds to wait for one burst's returns")
    parser.add_argument("--topologies", default=None)
    parser.add_argument("--wan", action="store_true", help="benchmark 3: no delay vs. --delay on every DC link")
    parser.add_argument("--delay", type=float, default=0.1, help="one-way delay per DC link for --wan (s)")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    names = (args.topologies or (WAN_DEFAULT if args.wan else DEFAULT)).split(",")
    delays = [0.0, args.delay] if args.wan else [0.0]
    data = run(names, args.jobs, args.rounds, args.minions, args.deadline, delays, links=args.wan)
    table = data["table"]
    if args.wan:
        ratios = {}
        for name in names:
            slow, fast = f"{name}@{int(args.delay * 1000)}ms", f"{name}@0ms"
            r = ratio(table, fast, slow)  # throughput kept = t(no delay) / t(delay)
            ratios[f"{name}_throughput_kept"] = r
        bench_name, what = "wan", f"burst of {args.jobs} jobs, {int(args.delay * 1000)} ms added each way on every DC link"
    else:
        ratios = {f"{n}_to_direct": ratio(table, n, "direct") for n in names if n != "direct"}
        bench_name, what = "burst", f"burst of {args.jobs} async test.ping jobs from the top master"
    payload = {"what": what, "target": TARGET, "jobs": args.jobs, "rounds": args.rounds, "minions_per_dc": args.minions,
               "ratios": ratios, **data}
    path = write_result(bench_name, payload)
    print(f"\n{'topology':<22} {'median s':>9} {'min':>8} {'max':>8} {'ret/s':>8} {'complete':>9} returns/round")
    for key, row in table.items():
        s = row["seconds"]
        rps = row["returns_per_second"]
        print(f"{key:<22} {s['median'] if s else '-':>9} {s['min'] if s else '-':>8} {s['max'] if s else '-':>8} "
              f"{rps['median'] if rps else '-':>8} {row['complete_rounds']:>4}/{row['rounds']:<4} "
              f"{row['returns_per_round']} of {row['expected_returns']}")
    print(f"ratios: {ratios}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
