"""Redis traffic of the estate with a 10,000-minion roster: initial sync, steady state, one change.

One simulated DC (a fake ``pki_dir`` with N accepted key files and a small ``file_roots``
tree) and the MoM run their real ``estate`` loops (threads, default intervals unless told)
against a private redis-server.  Traffic is read from redis-server itself (``INFO stats`` /
``INFO commandstats`` after ``CONFIG RESETSTAT``), so it counts both sides and every byte.

    python -m bench.roster_traffic [--minions 10000] [--seconds 60] [--interval 10]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab import RedisServer
from salt_redis_syndic.config import load_settings
from salt_redis_syndic.estate.dc_estate import DcEstate
from salt_redis_syndic.estate.mom_estate import MomEstate
from salt_redis_syndic.estate.roster import scan_pki
from salt_redis_syndic.ops.estate_report import load_rosters
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer

from .common import write_result

MOM_PUB = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
PUB = "-----BEGIN PUBLIC KEY-----\n" + "A" * 392 + "\n-----END PUBLIC KEY-----\n"  # the size of an RSA-2048 key


class NullBus:
    def fire(self, data: Any, tag: str) -> bool:
        return True


def traffic(client: Any) -> dict[str, Any]:
    stats = client.info("stats")
    commands = {name.split("_", 1)[1]: int(v["calls"]) for name, v in client.info("commandstats").items()}
    for noise in ("info", "config|resetstat", "config"):
        commands.pop(noise, None)
    return {"in_bytes": int(stats["total_net_input_bytes"]), "out_bytes": int(stats["total_net_output_bytes"]),
            "commands": sum(commands.values()), "by_command": commands}


def reset(client: Any) -> None:
    client.config_resetstat()


def wait_for(predicate: Any, timeout: float) -> float:
    begin = time.monotonic()
    while not predicate():
        if time.monotonic() - begin > timeout:
            raise SystemExit(f"timed out after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - begin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minions", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the steady-state window")
    parser.add_argument("--interval", type=float, default=10.0, help="estate_interval (the default is 10 s)")
    parser.add_argument("--files", type=int, default=200, help="files in the simulated file_roots")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="roster-bench-"))
    pki = root / "pki"
    (pki / "minions").mkdir(parents=True)
    for i in range(args.minions):
        (pki / "minions" / f"dc1-m{i:05d}").write_text(PUB)
    tree = root / "srv" / "salt"
    for i in range(args.files):
        (tree / f"dir{i % 20}").mkdir(parents=True, exist_ok=True)
        (tree / f"dir{i % 20}" / f"state{i}.sls").write_text(f"state{i}:\n  test.nop: []\n")

    with RedisServer(root / "redis") as server:
        admin = server.client()
        signer = Signer(Ed25519PrivateKey.generate())
        common = {"redis_url": server.url, "estate_interval": args.interval, "drift_interval": 60.0}
        dc = load_settings({"id": "dc1", "cachedir": str(root / "dc"), "pki_dir": str(pki)},
                           {"role": "dc", "dc": "dc1", "trusted_keys": [MOM_PUB], **common})
        mom = load_settings({"id": "mom", "cachedir": str(root / "mom")},
                            {"role": "mom", "dc_keys": {"dc1": signer.public_pem}, **common})
        opts = {"pki_dir": str(pki), "file_roots": {"base": [str(tree)]}, "pillar_roots": {}}
        stop = threading.Event()
        counters = Counters()
        dc_loop = DcEstate(dc, opts, signer, stop)
        mom_loop = MomEstate(mom, opts, DcKeyring(str(root / "dckeys"), dict(mom.dc_keys)), NullBus(), None, counters, stop)

        begin = time.perf_counter()
        scanned = len(scan_pki(str(pki)))
        scan_seconds = time.perf_counter() - begin
        probe = DcEstate(dc, opts, signer, stop)  # a throwaway instance: the loops start fresh
        begin = time.perf_counter()
        probe.source.step(probe.current())
        roster_seconds = time.perf_counter() - begin
        begin = time.perf_counter()
        probe.current()
        quick_seconds = time.perf_counter() - begin

        def mom_count() -> int:
            rosters = load_rosters(mom)
            return len(rosters.get("dc1", {}).get("minions", {}))

        reset(admin)
        threads = [threading.Thread(target=loop.run, daemon=True) for loop in (dc_loop, mom_loop)]
        for thread in threads:
            thread.start()
        sync_seconds = wait_for(lambda: mom_count() == args.minions, 120)
        initial = traffic(admin)

        time.sleep(args.interval)  # let the first drift listing and both loops settle
        reset(admin)
        time.sleep(args.seconds)
        steady = traffic(admin)

        reset(admin)
        (pki / "minions_pre").mkdir()
        for i in range(10):
            (pki / "minions_pre" / f"dc1-new{i}").write_text(PUB)
        change_seconds = wait_for(lambda: mom_count() == args.minions + 10, 120)
        time.sleep(args.interval)
        change = traffic(admin)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    per_minute = 60.0 / args.seconds
    steady_min = {"commands": round(steady["commands"] * per_minute, 1),
                  "in_bytes": round(steady["in_bytes"] * per_minute), "out_bytes": round(steady["out_bytes"] * per_minute),
                  "by_command": {k: round(v * per_minute, 1) for k, v in steady["by_command"].items()}}
    rows = [
        ("initial sync", initial["commands"], initial["in_bytes"], initial["out_bytes"], f"{sync_seconds:.1f} s to the MoM"),
        ("steady state, per minute", steady_min["commands"], steady_min["in_bytes"], steady_min["out_bytes"],
         f"measured over {args.seconds:.0f} s"),
        ("10 new pending keys", change["commands"], change["in_bytes"], change["out_bytes"],
         f"{change_seconds:.1f} s to the MoM (+1 interval)"),
    ]
    print(f"\nroster of {args.minions} minions, estate_interval {args.interval:g} s, {args.files} files in file_roots")
    print(f"DC: scan of pki_dir {scan_seconds * 1000:.0f} ms ({scanned} keys), full roster build {roster_seconds * 1000:.0f} ms, "
          f"tick with unchanged key directories {quick_seconds * 1000:.2f} ms\n")
    print(f"{'phase':<28}{'commands':>10}{'bytes in':>14}{'bytes out':>14}  note")
    for name, cmds, bin_, bout, note in rows:
        print(f"{name:<28}{cmds:>10}{bin_:>14}{bout:>14}  {note}")
    print(f"\nsteady-state commands per minute: {steady_min['by_command']}")
    path = write_result("roster_traffic", {
        "minions": args.minions, "interval": args.interval, "files": args.files, "steady_seconds": args.seconds,
        "scan_ms": round(scan_seconds * 1000, 1), "roster_build_ms": round(roster_seconds * 1000, 1),
        "unchanged_tick_ms": round(quick_seconds * 1000, 3),
        "initial_sync": {**initial, "seconds": round(sync_seconds, 2)},
        "steady_per_minute": steady_min,
        "ten_new_keys": {**change, "seconds": round(change_seconds, 2)},
        "mom_reloads": counters.snapshot().get("roster_reloads", 0),
    })
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
