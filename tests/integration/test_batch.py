"""Salt's batch mode from the MoM, compared with one master holding every minion.

Salt 3008's batch CLI (``-b N``, ``-b N%``, ``--static``, ``--batch-safe-limit``) publishes every
sub-batch under the same jid with its own minion list.  Each sub-batch must run exactly once
on its own minions (the DC dedupes per sub-job, not per jid), the MoM must accept the returns
of every sub-batch, and the CLI must show the same minions and exit code as on a single
master (``Lab.direct``).  Each command appends a marker unique to the test on the minion, so
"exactly once" is counted on the minions themselves.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator

import msgpack
import pytest

from lab import Lab, parse_json_output, wait_until
from salt_redis_syndic.wire.codec import pack

pytestmark = pytest.mark.integration

DCS = ("east", "west")
PER_DC = 3
ALL = {f"{dc}-m{i}" for dc in DCS for i in range(1, PER_DC + 1)}
STREAM = "redis_syndic:jobs"


@pytest.fixture(scope="module")
def bridged() -> Iterator[Lab]:
    lab = Lab(DCS, PER_DC)
    try:
        lab.start()
        lab.wait_bridge()
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def direct() -> Iterator[Lab]:
    lab = Lab.direct(DCS, PER_DC)
    try:
        yield lab.start()
    finally:
        lab.stop()


def marker_cmd(marker: str, exit_code: int = 0) -> list[str]:
    """cmd.run appending ``marker`` to a file in the minion's root, printing it, exiting ``exit_code``."""
    cmd = f"echo {marker} >> {{{{ opts['root_dir'] }}}}/batch.txt; echo {marker}; exit {exit_code}"
    return ["cmd.run", cmd, "template=jinja", "python_shell=True"]


def runs(lab: Lab, marker: str) -> Counter[str]:
    """How many times each minion ran the command carrying ``marker``."""
    counts: Counter[str] = Counter()
    for minion in ALL:
        path = lab.minion_file(minion, "batch.txt")
        if path.exists():
            counts[minion] = path.read_text().split().count(marker)
    return +counts


def run_batch(lab: Lab, *args: str, exit_code: int = 0, timeout: float = 150) -> tuple[dict, int, Counter[str], str]:
    """``salt <args> '*' cmd.run <marker>`` with JSON output: (returns, exit code, runs per minion, output)."""
    marker = uuid.uuid4().hex
    result = lab.salt(*args, "*", *marker_cmd(marker, exit_code), "--out=json", timeout=timeout)
    text = result.stdout + result.stderr
    return minion_returns(result.stdout), result.returncode, runs(lab, marker), text


def minion_returns(text: str) -> dict[str, object]:
    """The returns a batch CLI printed: one JSON document per minion (with its ``jid``/``retcode``)."""
    decoder, found, index = json.JSONDecoder(), {}, text.find("{")
    while index != -1:
        doc, end = decoder.raw_decode(text, index)
        found.update({k: v for k, v in doc.items() if k not in ("jid", "retcode")})
        index = text.find("{", end)
    return found


@pytest.mark.parametrize("spec", ["2", "50%"])
def test_batch_runs_every_minion_once_like_a_single_master(bridged: Lab, direct: Lab, spec: str) -> None:
    for lab in (bridged, direct):
        returns, rc, ran, text = run_batch(lab, "-b", spec)
        assert rc == 0, (lab, text)
        assert set(returns) == ALL, (lab, text)
        assert len(set(returns.values())) == 1, (lab, text)  # every minion printed the same marker
        assert ran == Counter({m: 1 for m in ALL}), (lab, ran, text)


def test_static_gives_the_single_master_returns(bridged: Lab, direct: Lab) -> None:
    seen = {}
    for lab in (bridged, direct):
        marker = uuid.uuid4().hex
        result = lab.salt("*", *marker_cmd(marker), "--out=json", "--static", timeout=150)
        assert result.returncode == 0, (lab, result.stdout, result.stderr)
        assert parse_json_output(result.stdout, result) == {m: marker for m in ALL}
        assert runs(lab, marker) == Counter({m: 1 for m in ALL})
        seen[lab.is_direct] = result.returncode
    assert seen[True] == seen[False]


def test_batch_wait(bridged: Lab, direct: Lab) -> None:
    for lab in (bridged, direct):
        returns, rc, ran, text = run_batch(lab, "-b", "2", "--batch-wait", "1")
        assert rc == 0 and set(returns) == ALL, (lab, text)
        assert ran == Counter({m: 1 for m in ALL}), (lab, ran, text)


def test_failhard_stops_later_sub_batches_like_a_single_master(bridged: Lab, direct: Lab) -> None:
    outcome = {}
    for lab in (bridged, direct):
        returns, rc, ran, text = run_batch(lab, "-b", "1", "--failhard", exit_code=3)
        # The first sub-batch (one minion) fails: no later sub-batch is published.
        assert sum(ran.values()) == 1 and set(ran.values()) == {1}, (lab, ran, text)
        assert set(returns) <= set(ran), (lab, text)
        outcome[lab.is_direct] = (rc, len(returns))
    assert outcome[False] == outcome[True], outcome


def test_batch_safe_limit_runs_every_minion_once(bridged: Lab, direct: Lab) -> None:
    outcome = {}
    for lab in (bridged, direct):
        returns, rc, ran, text = run_batch(lab, "--batch-safe-limit", "2", "--batch-safe-size", "2")
        assert set(returns) == ALL, (lab, text)
        assert ran == Counter({m: 1 for m in ALL}), (lab, ran, text)
        outcome[lab.is_direct] = rc
    assert outcome[False] == outcome[True] == 0, outcome


def _entries_of(lab: Lab, fun_marker: str) -> list[tuple[str, dict[bytes, bytes]]]:
    """Job stream entries whose signed body mentions ``fun_marker`` (the loads are in clear in the lab)."""
    return [(eid.decode(), fields) for eid, fields in lab.redis_client().xrange(STREAM)
            if fun_marker.encode() in fields[b"b"]]


def test_replayed_sub_batch_entries_run_once(bridged: Lab) -> None:
    returns, rc, ran, text = run_batch(bridged, "-b", "2")
    assert rc == 0 and ran == Counter({m: 1 for m in ALL}), (ran, text)
    marker = next(iter(returns.values()))
    entries = _entries_of(bridged, marker)
    docs = [msgpack.unpackb(fields[b"b"], raw=False) for _, fields in entries]
    assert len({d["jid"] for d in docs}) == 1 and len(docs) >= 3, docs  # sub-batches under one jid
    assert sorted(m for d in docs for m in d["load"]["tgt"]) == sorted(ALL)
    client = bridged.redis_client()
    first, second = entries[0][1], entries[1][1]
    client.xadd(STREAM, first)  # the same signed entry, twice
    client.xadd(STREAM, first)
    client.xadd(STREAM, second)  # a later sub-batch, replayed
    # A tampered copy of a sub-batch that widens its minion list fails the signature.
    doc = msgpack.unpackb(first[b"b"], raw=False)
    doc["load"]["tgt"] = sorted(ALL)
    tampered_id = client.xadd(STREAM, {**first, b"b": pack(doc)}).decode()
    # A later job passes through both DCs: by then the replays were read and skipped.
    check = uuid.uuid4().hex
    result = bridged.salt("*", *marker_cmd(check), "--out=json", "--static", timeout=150)
    assert parse_json_output(result.stdout, result) == {m: check for m in ALL}
    for dc in DCS:
        wait_until(lambda: f"rejected job stream entry {tampered_id} on DC {dc}: bad_signature" in bridged.log(dc),
                   30, f"{dc} rejecting the tampered sub-batch")
    assert runs(bridged, marker) == Counter({m: 1 for m in ALL})
