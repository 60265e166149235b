"""The replica topology: a DC reads the job stream from a read-only replica next to it and
writes acks, returns and heartbeats to the primary (real daemons, real replication)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from lab import Lab, wait_until

pytestmark = pytest.mark.integration

ALL = {"east-m1", "east-m2", "west-m1", "west-m2"}


def test_dc_reads_jobs_from_its_replica_and_writes_to_the_primary(make_lab, redis_server_factory) -> None:
    primary = redis_server_factory()
    replica = redis_server_factory(extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
    wait_until(lambda: primary.client().info("replication")["connected_slaves"] >= 1, 30, "the replica to attach")

    def dc_bridge(dc: str) -> dict[str, str]:
        urls = {"redis_url": primary.url}
        if dc == "east":
            urls["redis_read_url"] = replica.url
        return urls

    lab: Lab = make_lab(mom_bridge={"redis_url": primary.url}, dc_bridge=dc_bridge)
    lab.wait_bridge(timeout=90)
    markers = [uuid.uuid4().hex for _ in range(5)]
    cmd = "echo {} >> {{{{ opts['root_dir'] }}}}/markers.txt"
    jids = [lab.salt_async("*", "cmd.run", cmd.format(m), "template=jinja") for m in markers]
    wait_until(lambda: all(set(lab.mom_job_returns(jid)) == ALL for jid in jids), 120, "every return on the MoM")
    for minion in sorted(ALL):
        counts = Counter(lab.minion_file(minion, "markers.txt").read_text().split())
        assert {m: counts[m] for m in markers} == {m: 1 for m in markers}, minion
    # east's stream reader is a client of the replica (blocked in XREAD), and the replica
    # holds no writes of its own: everything east wrote went to the primary
    readers = [c for c in replica.client().client_list() if c.get("name") == "redis_syndic"]
    assert any(c.get("cmd") == "xread" for c in readers), readers
    assert primary.client().get("redis_syndic:status:east") is not None
    assert replica.client().info("replication")["role"] == "slave"
