"""Reconciliation with real daemons: Redis loses everything, the MoM engine is killed.

* redis-server restarted **without persistence** mid-burst while the MoM engine is frozen
  (so DC acks and returns sit unread in Redis) and one DC is cut off (so job entries sit
  unread in the stream): everything Redis held is gone, and delivery is restored by the
  MoM's outbox and the DCs' unconfirmed batches.
* the **MoM engine killed (-9)** mid-burst, with jobs published while it is down: Salt
  restarts it and it sends them from the job cache.

Every (jid, minion) return must be on the MoM exactly once, and every minion must have run
every job exactly once (each job appends its own marker to a file on the minion).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from datetime import datetime

import psutil
import pytest

from lab import Lab, wait_until

pytestmark = pytest.mark.integration

ALL = {"east-m1", "east-m2", "west-m1", "west-m2"}
FAST = {"reconcile_interval": 3}


def publish(lab: Lab, marker: str, sleep: int = 0) -> str:
    cmd = f"sleep {sleep}; echo {marker} >> {{{{ opts['root_dir'] }}}}/markers.txt"
    return lab.salt_async("*", "cmd.run", cmd, "template=jinja", "python_shell=True")


def engine_processes(lab: Lab, master: str) -> list[psutil.Process]:
    """The master's engine processes (the lab configures only ours).  A process Salt restarts
    is titled plain ``Engine``, without the module name the first one carries."""
    conf = str(lab.master(master).conf_dir)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if conf in line and "Engine" in line:
            found.append(proc)
    return found


def acked_by_all(lab: Lab, jid: str, dcs: tuple[str, ...]) -> bool:
    from lab import parse_json_output

    report = parse_json_output(lab.salt_run("redis_syndic.job", jid, "--out=json").stdout)
    return all(report.get(dc, {}).get("acknowledged") for dc in dcs)


def assert_exactly_once(lab: Lab, jids: list[str], markers: list[str], timeout: float) -> None:
    wait_until(lambda: all(set(lab.mom_job_returns(jid)) == ALL for jid in jids), timeout,
               "every (jid, minion) return on the MoM", interval=2)
    for minion in sorted(ALL):
        counts = Counter(lab.minion_file(minion, "markers.txt").read_text().split())
        assert {m: counts[m] for m in markers} == {m: 1 for m in markers}, minion


def test_redis_restarted_without_persistence_loses_nothing(make_lab) -> None:
    lab: Lab = make_lab(dc_links=True, mom_bridge=FAST, dc_bridge=FAST)
    lab.wait_bridge(timeout=90)
    markers = [uuid.uuid4().hex for _ in range(12)]
    # jobs that are still running when Redis loses everything (a DC handles entries in order:
    # the last one acknowledged means all were)
    jids = [publish(lab, m, sleep=40) for m in markers[:6]]
    wait_until(lambda: acked_by_all(lab, jids[-1], ("east", "west")), 60, "acks of the slow jobs")
    lab.link("east").cut()  # east will not read the next entries before they are lost
    jids += [publish(lab, m) for m in markers[6:]]
    wait_until(lambda: acked_by_all(lab, jids[-1], ("west",)), 60, "west's acks of the fast jobs")
    engines = engine_processes(lab, "mom")
    assert engines, "no MoM engine process found"
    for proc in engines:  # frozen: what the DCs push now stays unread in Redis
        proc.send_signal(signal.SIGSTOP)
    client = lab.redis_client()
    client.set("lab:canary", "1")
    try:
        wait_until(lambda: client.llen("redis_syndic:up:mom") > 0, 60, "west's returns waiting in Redis")
        lab.kill_redis()  # no persistence: the stream, the uplink lists, every status record are gone
        lab.start_redis()
        assert client.get("lab:canary") is None and client.xlen("redis_syndic:jobs") == 0  # all gone
    finally:
        for proc in engines:
            proc.send_signal(signal.SIGCONT)
    lab.link("east").heal()
    assert_exactly_once(lab, jids, markers, timeout=180)


def jid_epoch(jid: str) -> float:
    """When the master made ``jid`` (Salt's jids are local time with microseconds)."""
    return datetime.strptime(jid[:20], "%Y%m%d%H%M%S%f").timestamp()


def test_mom_engine_killed_mid_burst_loses_nothing(make_lab) -> None:
    lab: Lab = make_lab(mom_bridge=FAST, dc_bridge=FAST)
    lab.wait_bridge(timeout=90)
    markers = [uuid.uuid4().hex for _ in range(10)]
    jids = [publish(lab, m) for m in markers[:3]]
    engines = engine_processes(lab, "mom")
    assert engines, "no MoM engine process found"
    for proc in engines:
        os.kill(proc.pid, signal.SIGKILL)
    killed = {p.pid for p in engines}
    # Salt notices a dead engine within 10 s: until then, jobs are published with no engine
    # (sometimes Salt restarts it before the next CLI call has published anything).
    while_down: list[str] = []
    restarted: list[psutil.Process] = []
    deadline = time.monotonic() + 90
    while len(while_down) < 2 or not restarted:
        assert time.monotonic() < deadline, "Salt did not restart the MoM engine within 90 s"
        if while_down:
            time.sleep(1)
        markers.append(uuid.uuid4().hex)
        while_down.append(publish(lab, markers[-1]))
        restarted = [p for p in engine_processes(lab, "mom") if p.pid not in killed]
    jids += while_down
    started = min(p.create_time() for p in restarted)
    published_while_down = [j for j in while_down if jid_epoch(j) < started]
    jids += [publish(lab, m) for m in markers[3:10]]
    assert_exactly_once(lab, jids, markers, timeout=180)
    log = lab.master("mom").log_file.read_text(errors="replace")
    for jid in published_while_down:
        assert f"job {jid} (cmd.run) was published while the engine was down" in log


def test_sentinel_failover_mid_burst_loses_nothing(make_lab, sentinel_setup) -> None:
    primary, replica, sentinel_port = sentinel_setup
    via_sentinel = {**FAST, "redis_url": f"redis+sentinel://127.0.0.1:{sentinel_port}/lab/0",
                    "socket_timeout": 2, "connect_timeout": 2}
    lab: Lab = make_lab(mom_bridge=via_sentinel, dc_bridge=via_sentinel)
    lab.wait_bridge(timeout=90)
    markers = [uuid.uuid4().hex for _ in range(12)]
    jids = [publish(lab, m) for m in markers[:6]]
    primary.kill()  # what was not replicated yet is gone; Sentinel promotes the replica
    jids += [publish(lab, m) for m in markers[6:]]
    assert_exactly_once(lab, jids, markers, timeout=240)
    assert replica.client().info("replication")["role"] == "master"
