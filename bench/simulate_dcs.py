"""Scale: simulated DCs against a real MoM running the real MoM engine.

The simulator speaks the DC side of the protocol: it reads the job stream, verifies each job
with the MoM's public key, and for every job and every simulated DC pushes signed uplink
batches (an ack naming N synthetic minions, then N synthetic ``test.ping`` returns) to
``<ns>:up:<mom>`` exactly as ``uplink.Shipper`` does (``encode_batch`` + ``seal`` with the
DC's key, ``LPUSH`` in one pipeline).  It also writes signed heartbeats, so the MoM sees the
simulated DCs as live.  The MoM accepts the DCs' keys through the ``dc_keys`` option.

The MoM is a real salt-master with the engine, from :class:`~lab.Lab` with
one real DC master and no minions (a lab needs at least one DC).

Measured, in one invocation, rounds alternating:

- ``bridge``: publish one job on the MoM -> all ``dcs x minions`` returns stored in the MoM's
  job cache (seconds, returns/s);
- ``store_job``: the same number of returns written straight into the MoM's job cache with
  ``salt.utils.job.store_job`` + event, from one process with a ``MasterMinion`` on the MoM's
  opts (no Redis): the MoM's own limit;
- ``redis_leg``: the Redis leg alone, no Salt: build + sign + ``LPUSH`` the batches, then
  ``BLMOVE``/``LMOVE`` + unseal + verify + decode them (returns/s);
- ``sustained``: ``--sustained-jobs`` jobs published back to back, total returns / total time.

    python -m bench.simulate_dcs [--dcs 10] [--minions 1000] [--rounds 3] [--sustained-jobs 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

from lab import Lab, generate_ed25519_keypair, wait_until
from salt_redis_syndic.security.signing import Signer, Verifier, load_or_create_signer
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.transport.queue import UplinkQueue
from salt_redis_syndic.wire.jobs import decode_job
from salt_redis_syndic.wire.sealed import seal, unseal
from salt_redis_syndic.wire.status import DcStatus
from salt_redis_syndic.wire.uplink import decode_batch, encode_batch

from .common import exit_on_sigterm, summary, write_result

NAMESPACE = "redis_syndic"


def sim_dc_names(count: int) -> list[str]:
    return [f"sim{i:02d}" for i in range(count)]


def sim_minions(dc: str, count: int) -> list[str]:
    return [f"{dc}-s{i:05d}" for i in range(count)]


def synthetic_return(jid: str, minion: str, now: float) -> dict[str, Any]:
    """What a DC's EventReturn spools for a ``test.ping`` return (the event data, ``_stamp`` dropped)."""
    return {"cmd": "_return", "id": minion, "success": True, "return": True, "retcode": 0, "jid": jid,
            "fun": "test.ping", "fun_args": [], "user": "root", "master_id": "mom"}


def build_batches(dc: str, jid: str, minions: list[str], signer: Signer, batch_size: int,
                  now: float | None = None) -> list[bytes]:
    """Sealed uplink items for one job on one DC: the ack first, then every return.

    Each item holds at most ``batch_size`` messages (the DC's ``batch_max_messages``).
    """
    now = time.time() if now is None else now
    msgs: list[dict[str, Any]] = [{"t": "ack", "jid": jid, "dc": dc, "status": "published",
                                   "minions": list(minions), "missing": [], "reason": ""}]
    msgs += [{"t": "ret", "jid": jid, "dc": dc, "id": m, "load": synthetic_return(jid, m, now)} for m in minions]
    return [seal(encode_batch(dc, msgs[i:i + batch_size], now=now), signer) for i in range(0, len(msgs), batch_size)]


def heartbeat_record(dc: str, signer: Signer, minions: int, now: float) -> bytes:
    status = DcStatus(dc=dc, last_seen=now, cursor="0-0", stream_last_id="0-0", lag_seconds=0.0, spool_depth=0,
                      minion_count=minions, version="simulator", master_id=dc)
    return seal(status.encode(), signer)


class Simulator:
    """The DC side for many simulated DCs, in one process: job stream in, signed batches out."""

    def __init__(self, redis_url: str, mom: str, keys_dir: Path, dcs: list[str], minions: int,
                 mom_public_key: Path, batch_size: int = 500) -> None:
        self.redis_url = redis_url
        self.mom = mom
        self.dcs = dcs
        self.minions = {dc: sim_minions(dc, minions) for dc in dcs}
        self.signers = {dc: load_or_create_signer(str(keys_dir / f"{dc}.pem"), create=False) for dc in dcs}
        self.verifier = Verifier([str(mom_public_key)])
        self.batch_size = batch_size
        self.keys = Keys(NAMESPACE)

    def heartbeat(self, client: Any) -> None:
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for dc in self.dcs:
            pipe.set(self.keys.status(dc), heartbeat_record(dc, self.signers[dc], len(self.minions[dc]), now))
            pipe.sadd(self.keys.dcs, dc)
        pipe.execute()

    def answer(self, client: Any, jid: str) -> int:
        """Push every DC's ack and returns for ``jid``; one pipeline per DC."""
        sent = 0
        for dc in self.dcs:
            items = build_batches(dc, jid, self.minions[dc], self.signers[dc], self.batch_size)
            pipe = client.pipeline(transaction=False)
            for item in items:
                pipe.lpush(self.keys.uplink(self.mom), item)
            pipe.execute()
            sent += len(self.minions[dc])
        return sent

    def run(self, stop: Any, paused: Any, skipped: Any, cursor: str = "$") -> None:
        """Answer every job on the stream until ``stop``; jobs read while ``paused`` get no answer
        and are counted in ``skipped`` (the ``store_job`` baseline publishes a job only to have a
        real jid and load on the MoM).
        """
        import redis

        client = redis.Redis.from_url(self.redis_url)
        next_beat = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_beat:
                self.heartbeat(client)
                next_beat = time.monotonic() + 1.0
            reply = client.xread({self.keys.jobs: cursor}, count=100, block=200)
            for _key, entries in reply or []:
                for entry_id, fields in entries:
                    cursor = entry_id
                    job = decode_job(fields, self.verifier, 64 * 1024 * 1024, time.time(), 60.0)
                    if paused.is_set():
                        with skipped.get_lock():
                            skipped.value += 1
                    else:
                        self.answer(client, job.jid)


def _simulator_process(args: tuple[Any, ...], stop: Any, paused: Any, skipped: Any) -> None:
    Simulator(*args).run(stop, paused, skipped)


# ------------------------------------------------------------------------------ measurements


def count_stored(lab: Lab, jid: str) -> int:
    """Minion dirs under the jid in the MoM's local job cache (one per stored return)."""
    import hashlib

    master = lab.master(lab.top)
    digest = hashlib.new(master.config.get("hash_type", "sha256"), jid.encode()).hexdigest()
    try:
        return sum(1 for e in os.scandir(master.cachedir / "jobs" / digest[:2] / digest[2:]) if e.is_dir())
    except FileNotFoundError:
        return 0


def publish(client: Any, tries: int = 10) -> str:
    """Publish ``test.ping`` on the MoM.

    A timed-out publish may still have gone out: retrying it would start a second job whose
    returns queue ahead of the measured one.  So a timeout is final; only a reply without a
    jid (master not ready) is retried.
    """
    for _ in range(tries):
        pub = client.pub("*", "test.ping", [], timeout=120)
        if isinstance(pub, dict) and pub.get("jid"):
            return str(pub["jid"])
        time.sleep(1)
    raise RuntimeError("the MoM did not accept a publish")


def bridge_round(lab: Lab, client: Any, jobs: int, expected_each: int, deadline: float) -> dict[str, Any]:
    begin = time.perf_counter()
    jids = [publish(client) for _ in range(jobs)]
    total = jobs * expected_each
    stored = 0

    def done() -> bool:
        nonlocal stored
        stored = sum(count_stored(lab, jid) for jid in jids)
        return stored >= total

    try:
        wait_until(done, deadline, "all returns stored", interval=0.1)
    except Exception:  # noqa: BLE001 - a timeout is a result here
        pass
    seconds = time.perf_counter() - begin
    return {"seconds": round(seconds, 3), "stored": stored, "expected": total,
            "returns_per_second": round(stored / seconds, 1), "complete": stored >= total}


def store_job_round(lab: Lab, client: Any, dcs: list[str], minions: int, paused: Any, skipped: Any) -> dict[str, Any]:
    """The MoM's own limit: the same returns through Salt's store_job + event, no Redis, one process.

    The job is published (so the MoM holds its load, as for a real job) with the simulator
    paused: otherwise the bridge would store the same returns concurrently (an earlier version
    of this benchmark did, and the baseline lost half its speed to that contention).

    Exactly what ``_syndic_return`` does per return on a MoM: ``salt.utils.job.store_job`` with
    a ``MasterMinion`` and the master event, on the MoM's opts (loaded once).
    """
    import salt.config
    import salt.minion
    import salt.utils.event
    import salt.utils.job

    opts = dict(salt.config.master_config(str(lab.conf_dir(lab.top) / "master")))
    mminion = salt.minion.MasterMinion(opts, states=False, rend=False, matcher=False)
    event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False)
    paused.set()
    try:
        before = skipped.value
        jid = publish(client)
        wait_until(lambda: skipped.value > before, 60, "the simulator skipping the baseline's job")
    finally:
        paused.clear()
    loads = [synthetic_return(jid, m, time.time()) for dc in dcs for m in sim_minions(dc, minions)]
    begin = time.perf_counter()
    # What a MoM does per DC for a syndic's job (AESFuncs._handle_minion_event on the syndic's
    # ``.../new`` event) and the bridge does on each ack: the DC's minion list, which
    # local_cache.get_load then reads for every stored return.
    for dc in dcs:
        salt.utils.job.store_minions(opts, jid, sim_minions(dc, minions), mminion=mminion, syndic_id=dc)
    for load in loads:
        salt.utils.job.store_job(opts, dict(load), event=event, mminion=mminion)
    seconds = time.perf_counter() - begin
    event.destroy()
    stored = count_stored(lab, jid)
    return {"seconds": round(seconds, 3), "stored": stored, "expected": len(loads),
            "returns_per_second": round(len(loads) / seconds, 1), "complete": stored >= len(loads)}


def redis_leg_round(redis_url: str, keys_dir: Path, dcs: list[str], minions: int, batch_size: int) -> dict[str, Any]:
    """Build + sign + LPUSH, then BLMOVE/LMOVE + unseal + verify + decode, on a private key pair."""
    import redis

    from salt_redis_syndic.security.dckeys import DcKeyring

    client = redis.Redis.from_url(redis_url)
    ring = DcKeyring(str(keys_dir / "ring"), {dc: str(keys_dir / f"{dc}.pub") for dc in dcs})
    signers = {dc: load_or_create_signer(str(keys_dir / f"{dc}.pem"), create=False) for dc in dcs}
    queue = UplinkQueue(client, "bench:redis_leg", "bench:redis_leg:inflight")
    jid = time.strftime("%Y%m%d%H%M%S000000")
    begin = time.perf_counter()
    for dc in dcs:
        items = build_batches(dc, jid, sim_minions(dc, minions), signers[dc], batch_size)
        pipe = client.pipeline(transaction=False)
        for item in items:
            pipe.lpush(queue.key, item)
        pipe.execute()
    pushed = time.perf_counter() - begin
    got = 0
    while True:
        items = queue.take(max_items=50, block_seconds=0.1)
        if not items:
            break
        for raw in items:
            body, sig, kid = unseal(raw, 64 * 1024 * 1024)
            ring.verify(kid, sig, body)
            got += sum(1 for m in decode_batch(body, 64 * 1024 * 1024).messages if m.__class__.__name__ == "Return")
        queue.done(items)
    seconds = time.perf_counter() - begin - 0.1  # the last, empty BLMOVE waited 0.1 s
    return {"seconds": round(seconds, 3), "push_seconds": round(pushed, 3), "returns": got,
            "returns_per_second": round(got / seconds, 1), "push_returns_per_second": round(got / pushed, 1)}


def engine_pid(lab: Lab) -> int | None:
    """Pid of the MoM's engine process (a child of salt-master titled ...EngineProcess...)."""
    import psutil

    pid = lab.master(lab.top).pid
    if pid is None:
        return None
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "Engine" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


def start_profiler(pid: int, out: Path) -> Any:
    """py-spy (an optional dev tool: pip install py-spy) sampling ``pid`` into collapsed stacks."""
    import shutil
    import subprocess

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([exe, "record", "-p", str(pid), "-o", str(out), "--format", "raw", "-r", "50", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dcs", type=int, default=10)
    parser.add_argument("--minions", type=int, default=1000, help="synthetic minions per simulated DC")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sustained-jobs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500, help="messages per uplink item (batch_max_messages)")
    parser.add_argument("--deadline", type=float, default=600)
    parser.add_argument("--log-level", default="warning",
                        help="the MoM's log_level_logfile (Salt's default is warning; the test labs use debug, "
                             "which costs the engine several log records per stored return)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write py-spy collapsed stacks of the MoM engine during the bridge rounds here")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    dcs = sim_dc_names(args.dcs)
    total = args.dcs * args.minions
    lab = Lab(("east",), 0, mom_bridge={"dc_keys": {}},  # dc_keys filled in below, before start
              log_level_logfile=args.log_level)
    keys_dir = lab.root / "simkeys"
    for dc in dcs:
        generate_ed25519_keypair(keys_dir / f"{dc}.pem", keys_dir / f"{dc}.pub")
    lab.mom_bridge = {"dc_keys": {dc: str(keys_dir / f"{dc}.pub") for dc in dcs}}
    rows: dict[str, list[dict[str, Any]]] = {"bridge": [], "store_job": [], "redis_leg": []}
    with lab:
        import salt.client

        client = salt.client.LocalClient(c_path=str(lab.conf_dir(lab.top) / "master"))
        stop, paused, skipped = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Value("i", 0)
        sim = multiprocessing.Process(target=_simulator_process, daemon=True, args=(
            (lab.redis_url, lab.top, keys_dir, dcs, args.minions, lab.mom_public_key, args.batch), stop, paused, skipped))
        sim.start()
        try:
            time.sleep(3)  # heartbeats seen, engine up
            warm = bridge_round(lab, client, 1, total, args.deadline)
            print(f"  warm-up bridge: {warm}", flush=True)
            profiler = None
            if args.profile is not None:
                pid = engine_pid(lab)
                profiler = start_profiler(pid, args.profile) if pid else None
                print(f"  profiling MoM engine pid {pid} into {args.profile}", flush=True)
            for r in range(args.rounds):
                for name in ("bridge", "store_job", "redis_leg"):
                    if name == "bridge":
                        out = bridge_round(lab, client, 1, total, args.deadline)
                    elif name == "store_job":
                        out = store_job_round(lab, client, dcs, args.minions, paused, skipped)
                    else:
                        out = redis_leg_round(lab.redis_url, keys_dir, dcs, args.minions, args.batch)
                    rows[name].append(out)
                    print(f"  round {r + 1} {name:<10} {out}", flush=True)
            sustained = bridge_round(lab, client, args.sustained_jobs, total, args.deadline * 2)
            print(f"  sustained: {sustained}", flush=True)
            if profiler is not None:
                import signal

                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
        finally:
            stop.set()
            sim.join(10)
            if sim.is_alive():
                sim.kill()
    table = {name: {"seconds": summary([o["seconds"] for o in outs]),
                    "returns_per_second": summary([o["returns_per_second"] for o in outs]),
                    "complete": all(o.get("complete", True) for o in outs)} for name, outs in rows.items() if outs}
    def rps(name: str) -> float:
        return table[name]["returns_per_second"]["median"]
    ratios = {"bridge_ingest_to_store_job": round(rps("bridge") / rps("store_job"), 3),
              "sustained_to_store_job": round(sustained["returns_per_second"] / rps("store_job"), 3)}
    payload = {"what": f"one job answered by {args.dcs} simulated DCs x {args.minions} minions: publish -> all "
                       f"{total} returns stored on a real MoM (engine); vs. store_job straight into the MoM",
               "dcs": args.dcs, "minions_per_dc": args.minions, "batch": args.batch, "rounds": args.rounds,
               "mom_log_level_logfile": args.log_level,
               "table": table, "rows": rows, "sustained": {"jobs": args.sustained_jobs, **sustained}, "ratios": ratios}
    path = write_result("scale", payload)
    print(f"\n{'what':<12} {'median s':>9} {'min':>8} {'max':>8} {'returns/s':>10} (min..max)")
    for name, row in table.items():
        s, r = row["seconds"], row["returns_per_second"]
        print(f"{name:<12} {s['median']:>9} {s['min']:>8} {s['max']:>8} {r['median']:>10} ({r['min']}..{r['max']})")
    print(f"sustained {args.sustained_jobs} jobs: {sustained['returns_per_second']} returns/s "
          f"({sustained['stored']}/{sustained['expected']} in {sustained['seconds']}s)")
    print(f"ratios: {ratios}\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
