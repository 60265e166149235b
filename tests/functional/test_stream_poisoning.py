"""Stream cursor poisoning: entries with ids the attacker chose (``XADD <key> 18446744073709551615-…``).

The DC's ``jobs`` loop (``JobConsumer.run``, the real one) against a real redis-server, the
MoM's side appending signed jobs with ``XADD *`` as ``JobPublisher`` does. An attacker with
write access but no key adds an entry with the highest id; later genuine jobs still run, and
after the operator deletes the poisoned stream, the MoM's next job runs too.
"""

from __future__ import annotations

import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.jobs.consumer import JobConsumer
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.transport.stream import JobStream
from salt_redis_syndic.wire.jobs import encode_job, make_job

from support.fakes import FakeBus, FakeCache, FakePublisher

pytestmark = pytest.mark.functional

MOM = Signer(Ed25519PrivateKey.generate())
MAX = 18446744073709551615
WAIT = 20.0  # generous bound under load; each wait returns as soon as its condition holds


def job_fields(n: int) -> dict[str, bytes]:
    load = {"fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob", "jid": f"2024050112345678{n:04d}",
            "ret": "", "user": "root"}
    return encode_job(make_job(load, origin="mom1", ttl=900), MOM)


def until(cond, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def dc(redis_server, tmp_path):
    settings = load_settings({"id": "dc-east", "cachedir": str(tmp_path), "redis_syndic": {
        "role": "dc", "dc": "east", "redis_url": redis_server.url, "namespace": "t", "trusted_keys": [MOM.public_pem],
        "block_ms": 50}})
    ledger = DcLedger(str(tmp_path / "dc.sqlite"))
    publisher, bus, counters, stop = FakePublisher(), FakeBus(), Counters(), threading.Event()
    consumer = JobConsumer(settings, publisher, FakeCache(), bus, Spool(settings.spool_dir, fsync=False), ledger,
                           DeadLetters(str(tmp_path / "dl"), Keys("t").deadletter, 100, None), counters, stop,
                           threading.Event())
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    until(lambda: consumer.cursor != "", "the consumer to start at the stream's end")
    yield consumer, publisher, bus, counters, ledger
    stop.set()
    thread.join(10)
    ledger.close()


def test_a_max_id_entry_neither_hides_later_jobs_nor_survives_the_stream_being_recreated(dc, redis_server):
    consumer, publisher, bus, counters, ledger = dc
    client = redis_server.client()
    mom = JobStream(client, Keys("t").jobs, 10_000)
    (first_id,) = mom.append([job_fields(1)])
    until(lambda: len(publisher.calls) == 1, "the first job")
    until(lambda: ledger.cursor() == first_id, "the cursor to follow a verified entry")

    # The attacker: no key, an entry with the highest id but one (so the MoM can still append).
    client.xadd(Keys("t").jobs, {"b": b"forged"}, id=f"{MAX}-0")
    until(lambda: counters.snapshot().get("rejected_id_ahead") == 1, "the forged entry to be rejected")
    assert "redis_syndic/rejected/id_ahead" in bus.tags()

    (second_id,) = mom.append([job_fields(2)])  # XADD *: Redis gives it an id after the forged one
    assert second_id == f"{MAX}-1"
    until(lambda: len(publisher.calls) == 2, "a genuine job after the forged entry")
    assert ledger.cursor() == first_id  # the durable cursor never follows ids ahead of the clock

    # The operator deletes the poisoned stream; the MoM's next job opens a new one at the clock's time.
    client.delete(Keys("t").jobs)
    until(lambda: counters.snapshot().get("stream_resets") == 1, "the reset to be seen")
    (third_id,) = mom.append([job_fields(3)])
    until(lambda: len(publisher.calls) == 3, "the first job of the recreated stream")
    assert publisher.jids() == [f"2024050112345678{n:04d}" for n in (1, 2, 3)]  # each run once
    until(lambda: ledger.cursor() == third_id, "the cursor to follow the new stream")
    assert f"redis_syndic/stream/east/reset" in bus.tags()


def test_an_exhausted_stream_recreated_with_older_ids_is_read_from_its_start(dc, redis_server):
    consumer, publisher, bus, counters, ledger = dc
    client = redis_server.client()
    key = Keys("t").jobs
    client.xadd(key, {"b": b"forged"}, id=f"{MAX}-{MAX}")  # no id is left for XADD *
    until(lambda: counters.snapshot().get("rejected_id_ahead") == 1, "the forged entry to be rejected")
    client.delete(key)
    # Recreated with an id below the DC's cursor (a Redis clock set back, or a replica promoted).
    client.xadd(key, job_fields(4), id="1-1")
    until(lambda: len(publisher.calls) == 1, "the job of the recreated stream")
    assert publisher.jids() == ["20240501123456780004"]
