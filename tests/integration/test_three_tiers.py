"""Three tiers with real daemons: top MoM -> middle master ``mid`` -> bottom DCs b1 and b2.

``mid`` runs two engine instances: a DC of the top (the ``redis_syndic`` block, ``relay``)
and a MoM of b1/b2 (``engine_module: redis_syndic``, namespace ``redis_syndic.mid``).
Each master has one minion.  A job from the top reaches the minions two levels down, the
top CLI lists all of them (the middle's ack is extended with the bottom minions), and jobs
never travel back up or around: each stream holds each jid once, and a job of the middle's
own CLI never reaches the top.
"""

from __future__ import annotations

import re
from typing import Iterator

import msgpack
import pytest

from lab import Lab, parse_json_documents, wait_until

pytestmark = pytest.mark.integration

ALL = {"mid-m1", "b1-m1", "b2-m1"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    the_lab = Lab(dcs=("mid",), minions_per_dc=1, sub_dcs={"mid": ("b1", "b2")})
    try:
        the_lab.start()
        the_lab.wait_bridge(timeout=120)  # test.ping from the top answered by all three minions
        yield the_lab
    finally:
        the_lab.stop()


def stream_jids(lab: Lab, key: str) -> list[str]:
    """The jid of every entry of a job stream (bodies are msgpack; no need to verify here)."""
    client = lab.redis_client()
    return [msgpack.unpackb(fields[b"b"], raw=False)["jid"] for _, fields in client.xrange(key)]


def test_job_from_the_top_runs_two_levels_down_and_the_top_cli_lists_every_minion(lab: Lab) -> None:
    result = lab.salt("*", "state.apply", "lab.jid", "--show-jid", "--out=json", timeout=120)
    match = re.search(r"^jid: (\d{20})", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    jid = match.group(1)
    assert set(parse_json_documents(result.stdout[match.end():])) == ALL, result.stdout + result.stderr
    for minion in ALL:
        assert lab.minion_jids(minion).count(jid) == 1
    assert set(lab.mom_job_returns(jid)) == ALL
    report = lab.salt_run_json("redis_syndic.job", jid)
    assert report["mid"]["status"] == "published"
    assert set(report["mid"]["targeted"]) == ALL and set(report["mid"]["returned"]) == ALL
    # no loop: the job is once in the top stream and once in the middle's
    assert stream_jids(lab, "redis_syndic:jobs").count(jid) == 1
    assert stream_jids(lab, "redis_syndic.mid:jobs").count(jid) == 1
    assert "untargeted_minion" not in lab.log("mom")


def test_job_from_the_middle_reaches_the_bottom_and_never_goes_up(lab: Lab) -> None:
    result = lab._master_salt("mid", "*", "test.ping", "--show-jid", "--out=json", timeout=90)
    match = re.search(r"^jid: (\d{20})", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    jid = match.group(1)
    assert parse_json_documents(result.stdout[match.end():]) == {m: True for m in ALL}
    wait_until(lambda: set(lab.job_returns("mid", jid)) >= ALL, 30, "returns on mid")
    assert jid in stream_jids(lab, "redis_syndic.mid:jobs")
    assert jid not in stream_jids(lab, "redis_syndic:jobs")
    assert lab.mom_job_returns(jid) == {}
    assert f"job {jid}" not in lab.log("mom")
