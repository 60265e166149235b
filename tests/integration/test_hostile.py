"""Hostile entries written straight into Redis never run, and each is dead-lettered with its reason.

Real daemons (MoM + DCs east/west, 2 minions each) and a real redis-server.  The attacker
here is any client that can write Redis: it has the stream's wire format but not the MoM's
private key.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgpack
import pytest
import salt.utils.jid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab import Lab, parse_json_output
from lab import wait_until as wait_for
from salt_redis_syndic.security.signing import Signer, load_or_create_signer
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.jobs import encode_job, make_job
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.uplink import encode_batch

pytestmark = pytest.mark.integration

ALL = {"east-m1", "east-m2", "west-m1", "west-m2"}
STREAM = "redis_syndic:jobs"


@pytest.fixture(scope="module")
def bridged(lab: Lab) -> Lab:
    lab.wait_bridge(timeout=90)
    return lab



def a_load(fun: str = "test.echo", arg: list[Any] | None = None) -> dict[str, Any]:
    jid = salt.utils.jid.gen_jid({})
    return {"fun": fun, "arg": arg or [uuid.uuid4().hex], "tgt": "*", "tgt_type": "glob", "jid": jid, "ret": "", "user": "root"}


def dead_letters(lab: Lab) -> list[dict[str, Any]]:
    return [msgpack.unpackb(raw, raw=False) for raw in lab.redis_client().lrange("redis_syndic:deadletter", 0, -1)]


def ran_anywhere(lab: Lab, jid: str) -> bool:
    """A DC that published a jid has its load in its job cache; a minion that ran it returned."""
    return any(lab.job_returns(dc, jid) for dc in ("east", "west")) or bool(lab.mom_job_returns(jid))


def test_unsigned_wrong_key_and_tampered_jobs_never_run(bridged: Lab) -> None:
    mom_key = load_or_create_signer(str(bridged.mom_private_key), create=False)
    stranger = Signer(Ed25519PrivateKey.generate())
    client = bridged.redis_client()

    unsigned = a_load()
    body = pack({"v": 1, "kind": "job", "jid": unsigned["jid"], "load": unsigned, "origin": "mom",
                 "issued_at": time.time(), "expires_at": time.time() + 600, "kid": mom_key.key_id})
    unsigned_id = client.xadd(STREAM, {"b": body}).decode()

    wrong = a_load()
    wrong_id = client.xadd(STREAM, encode_job(make_job(wrong, "mom", 600), stranger)).decode()

    # A stranger's key can also claim the MoM's key id: the signature still fails.
    impostor = a_load()
    fields = encode_job(make_job(impostor, "mom", 600), stranger)
    fields["k"] = mom_key.key_id.encode()
    impostor_id = client.xadd(STREAM, fields).decode()

    tampered = a_load("test.echo", ["harmless"])
    fields = encode_job(make_job(tampered, "mom", 600), mom_key)
    doc = msgpack.unpackb(fields["b"], raw=False)
    doc["load"]["fun"], doc["load"]["arg"] = "cmd.run", ["touch /tmp/pwned-by-redis"]
    fields["b"] = pack(doc)
    tampered_id = client.xadd(STREAM, fields).decode()

    garbage_id = client.xadd(STREAM, {"b": b"\xc1\xc1 not msgpack", "s": b"x" * 64, "k": mom_key.key_id.encode()}).decode()

    expected = {unsigned_id: "unsigned", wrong_id: "unknown_key", impostor_id: "bad_signature",
                tampered_id: "bad_signature", garbage_id: "bad_signature"}

    def all_dead_lettered() -> dict[tuple[str, str], str] | None:
        found = {(d["source"], d["entry_id"]): d["reason"] for d in dead_letters(bridged)}
        wanted = {(f"dc:{dc}", entry): reason for entry, reason in expected.items() for dc in ("east", "west")}
        return found if wanted.items() <= found.items() else None

    wait_for(all_dead_lettered, 30, "every hostile entry dead-lettered by both DCs with its reason")
    for load in (unsigned, wrong, impostor, tampered):
        assert not ran_anywhere(bridged, load["jid"]), load
    for dc in ("east", "west"):
        log = bridged.log(dc)
        for entry_id, reason in expected.items():
            assert f"rejected job stream entry {entry_id} on DC {dc}: {reason}" in log
        local = list((bridged.master(dc).cachedir / "redis_syndic" / "deadletter").glob("*.mp"))
        assert len(local) >= len(expected)
    # ... and the bridge still works afterwards
    result = bridged.salt("*", "test.ping", "--out=json", "--static", timeout=90)
    assert parse_json_output(result.stdout, result) == {m: True for m in ALL}


def test_replayed_job_runs_once(bridged: Lab) -> None:
    out = bridged.salt("*", "state.apply", "lab.jid", "--async", timeout=60).stdout
    jid = out.strip().split()[-1]
    wait_for(lambda: set(bridged.mom_job_returns(jid)) == ALL, 120, "every minion ran lab.jid")
    for minion in ALL:
        assert bridged.minion_jids(minion).count(jid) == 1
    client = bridged.redis_client()
    (entry,) = [fields for _, fields in client.xrange(STREAM) if jid.encode() in fields[b"b"]]
    client.xadd(STREAM, entry)  # the genuine, validly signed entry, once more
    client.xadd(STREAM, entry)
    # A later job passes through both DCs: by then the replays were read and skipped.
    result = bridged.salt("*", "test.ping", "--out=json", "--static", timeout=90)
    assert parse_json_output(result.stdout, result) == {m: True for m in ALL}
    for dc in ("east", "west"):
        wait_for(lambda: f"job {jid} already handled on DC {dc}" in bridged.log(dc), 30, f"{dc} skipping the replay")
    for minion in ALL:
        assert bridged.minion_jids(minion).count(jid) == 1, (minion, bridged.minion_jids(minion))


def test_forged_return_for_an_untargeted_minion_is_not_stored(bridged: Lab) -> None:
    out = bridged.salt("-L", "east-m1", "test.echo", "real", "--out=json", "--static", timeout=90)
    assert parse_json_output(out.stdout, out) == {"east-m1": "real"}
    jid = wait_for(lambda: _last_jid(bridged, "test.echo"), 10, "the jid")
    forged = {"t": "ret", "jid": jid, "dc": "east", "id": "east-m2",
              "load": {"return": "forged", "retcode": 0, "success": True, "id": "east-m2", "jid": jid}}
    client = bridged.redis_client()
    # Without east's uplink key: refused before it is even parsed.
    unsigned = encode_batch("east", [forged])
    client.lpush("redis_syndic:up:mom", unsigned)
    # With east's key (a compromised DC): still only minions east said it targeted.
    east_key = load_or_create_signer(str(bridged.dc_private_key("east")), create=False)
    client.lpush("redis_syndic:up:mom", seal(encode_batch("east", [forged]), east_key))
    wait_for(lambda: any(d["reason"] == "untargeted_minion" and d["raw"].get("id") == "east-m2" and d["raw"].get("jid") == jid
                         for d in dead_letters(bridged)), 30, "the forged return dead-lettered")
    assert any(d["reason"] == "unsigned" and d["raw"] == {"raw": unsigned} for d in dead_letters(bridged))
    assert bridged.mom_job_returns(jid) == {"east-m1": "real"}


def _last_jid(lab: Lab, fun: str) -> str | None:
    jobs = lab.salt_run_json("jobs.list_jobs", f"search_function={fun}")
    return max(jobs) if jobs else None
