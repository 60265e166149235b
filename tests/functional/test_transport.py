"""Transport against a real, private redis-server: job stream, uplink queue, shipper, dead letters."""

from __future__ import annotations

import os
import queue
import threading
import time

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import TransportError
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.returns.shipper import Shipper
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer, Verifier
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.transport.connection import TRANSIENT, make_client
from salt_redis_syndic.transport.deadletter import DeadLetterList
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.transport.queue import UplinkQueue
from salt_redis_syndic.transport.stream import JobStream, id_millis
from salt_redis_syndic.wire.jobs import decode_job, encode_job, make_job
from salt_redis_syndic.wire.sealed import unseal
from salt_redis_syndic.wire.status import decode_status
from salt_redis_syndic.wire.uplink import decode_batch

from support.fakes import FakeBus, FakeCache

pytestmark = pytest.mark.functional

JID = "20240501123456789012"
PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + "A" * 43 + "=\n-----END PUBLIC KEY-----\n"
KEYS = Keys("t")


@pytest.fixture
def client(redis_server):
    c = redis_server.client(socket_timeout=5, socket_connect_timeout=2)
    yield c
    c.close()


def dc_settings(url, tmp_path, **extra):
    block = {"role": "dc", "dc": "east", "redis_url": url, "trusted_keys": [PEM], "namespace": "t",
             "socket_timeout": 1, "connect_timeout": 1, "state_dir": str(tmp_path / "state"), **extra}
    return load_settings({"id": "dc-east", "redis_syndic": block})


# --------------------------------------------------------------------------------- job stream


def test_stream_append_and_read_from_cursor(client):
    stream = JobStream(client, KEYS.jobs, maxlen=1000)
    assert stream.last_id() == "0-0"
    assert stream.read("0-0", count=10, block_ms=None) == []
    ids = stream.append([{"n": str(i).encode()} for i in range(5)])
    assert len(ids) == 5 and ids == sorted(ids, key=lambda s: tuple(map(int, s.split("-"))))
    assert stream.last_id() == ids[-1]
    everything = stream.read("0-0", count=100, block_ms=None)
    assert [e[0] for e in everything] == ids
    assert [e[1][b"n"] for e in everything] == [b"0", b"1", b"2", b"3", b"4"]
    after = stream.read(ids[1], count=100, block_ms=None)
    assert [e[0] for e in after] == ids[2:]
    assert [e[0] for e in stream.read("0-0", count=2, block_ms=None)] == ids[:2]
    assert stream.read(ids[-1], count=10, block_ms=None) == []


def test_stream_read_blocks_for_block_ms_then_returns_nothing(client):
    stream = JobStream(client, KEYS.jobs, maxlen=1000)
    stream.append([{"n": b"0"}])
    start = time.monotonic()
    assert stream.read(stream.last_id(), count=10, block_ms=300) == []
    assert 0.25 <= time.monotonic() - start < 3


def test_stream_read_wakes_up_for_a_new_entry(redis_server, client):
    stream = JobStream(client, KEYS.jobs, maxlen=1000)
    cursor = stream.append([{"n": b"0"}])[0]
    writer = redis_server.client()

    def later():
        time.sleep(0.2)
        JobStream(writer, KEYS.jobs, 1000).append([{"n": b"1"}])

    t = threading.Thread(target=later)
    t.start()
    start = time.monotonic()
    got = stream.read(cursor, count=10, block_ms=5000)
    t.join()
    writer.close()
    assert [f[b"n"] for _, f in got] == [b"1"]
    assert time.monotonic() - start < 4


def test_stream_maxlen_trims(client):
    stream = JobStream(client, KEYS.jobs, maxlen=100)
    for _ in range(10):
        stream.append([{"n": b"x" * 10}] * 100)
    length = client.xlen(KEYS.jobs)
    # approximate trimming (whole radix nodes of 100 entries): bounded, never below maxlen
    assert 100 <= length <= 200
    newest = stream.read("0-0", count=1000, block_ms=None)
    assert newest[-1][0] == stream.last_id()


def test_signed_job_survives_the_stream(client):
    signer = Signer(Ed25519PrivateKey.generate())
    stream = JobStream(client, KEYS.jobs, maxlen=1000)
    job = make_job({"fun": "test.arg", "arg": ["a", {"k": "v"}], "tgt": "*", "jid": JID}, "mom1", ttl=60)
    stream.append([encode_job(job, signer)])
    ((_, fields),) = stream.read("0-0", count=10, block_ms=None)
    decoded = decode_job(fields, Verifier([signer.public_pem]), 1 << 20, time.time(), 60)
    assert decoded.load == job.load


def test_id_millis():
    assert id_millis("1700000000123-4") == 1700000000123
    assert id_millis("0-0") == 0
    assert id_millis("junk") == 0


# --------------------------------------------------------------------------------- uplink queue


def test_queue_push_take_oldest_first(client):
    q = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    assert q.push([]) == 0
    assert q.push([b"a", b"b", b"c"]) == 3
    assert q.push([b"d"]) == 4
    assert q.length() == 4
    assert q.take(max_items=2, block_seconds=0.1) == [b"a", b"b"]
    assert q.take(max_items=10, block_seconds=0.1) == [b"c", b"d"]
    assert q.length() == 0
    assert q.inflight() == [b"a", b"b", b"c", b"d"]


def test_queue_take_many_items_in_order(client):
    q = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    items = [f"batch-{i:05d}".encode() for i in range(1000)]
    for i in range(0, 1000, 100):
        q.push(items[i:i + 100])
    got = []
    while True:
        taken = q.take(max_items=37, block_seconds=0.1)
        if not taken:
            break
        assert len(taken) <= 37
        got.extend(taken)
        q.done(taken)
    assert got == items
    assert q.inflight() == []


def test_queue_take_on_empty_waits_then_returns_nothing(client):
    q = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    start = time.monotonic()
    assert q.take(max_items=5, block_seconds=0.3) == []
    assert 0.25 <= time.monotonic() - start < 3


def test_queue_done_removes_only_the_given_items(client):
    q = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    q.push([b"a", b"b", b"c"])
    taken = q.take(max_items=3, block_seconds=0.1)
    q.done([taken[1]])
    assert q.inflight() == [b"a", b"c"]
    q.done([])
    q.done([b"a", b"c"])
    assert q.inflight() == []
    assert client.exists(KEYS.inflight("mom1")) == 0


def test_inflight_survives_a_crash(redis_server, client):
    q = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    q.push([b"first", b"second", b"third"])
    assert q.take(max_items=2, block_seconds=0.1) == [b"first", b"second"]
    client.close()  # the MoM dies without calling done()
    fresh = redis_server.client()
    again = UplinkQueue(fresh, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    assert again.inflight() == [b"first", b"second"]
    assert again.take(max_items=5, block_seconds=0.1) == [b"third"]
    fresh.close()


def test_queues_of_two_moms_are_separate(client):
    a = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    b = UplinkQueue(client, KEYS.uplink("mom2"), KEYS.inflight("mom2"))
    a.push([b"for-1"])
    b.push([b"for-2"])
    assert a.take(5, 0.1) == [b"for-1"]
    assert b.take(5, 0.1) == [b"for-2"]


# -------------------------------------------------------------------------------------- shipper


EAST_KEY = Signer(Ed25519PrivateKey.generate())  # the DC's uplink key


def make_shipper(settings, spool, cache=None, counters=None):
    return Shipper(settings, spool, cache or FakeCache(), counters or Counters(), threading.Event(),
                   threading.Event(), cursor=lambda: "0-0", minion_count=lambda: 3, version="9.9", signer=EAST_KEY,
                   ledger=DcLedger(os.path.join(settings.state_dir, "dc.sqlite")))


def opened(raw: bytes) -> bytes:
    """The body of a sealed uplink record, after checking the DC key signed it."""
    body, sig, kid = unseal(raw, 1 << 24)
    assert kid == EAST_KEY.key_id
    EAST_KEY.public_key.verify(sig, body)
    return body


def ret_msg(minion, mom="mom1", jid=JID, **extra):
    return {"t": "ret", "jid": jid, "dc": "east", "id": minion, "mom": mom, "spooled_at": time.time(),
            "load": {"return": True, "id": minion, "jid": jid, "master_id": mom}, **extra}


def ack_msg(mom="mom1", jid=JID, minions=("m1",)):
    return {"t": "ack", "jid": jid, "dc": "east", "status": "published", "minions": list(minions), "missing": [],
            "reason": "", "mom": mom}


def uplink_items(client, mom):
    return [decode_batch(opened(raw), 1 << 24) for raw in reversed(client.lrange(KEYS.uplink(mom), 0, -1))]


def test_ship_once_pushes_to_each_mom_and_deletes_files(redis_server, client, tmp_path):
    settings = dc_settings(redis_server.url, tmp_path)
    spool = Spool(settings.spool_dir, fsync=False)
    spool.append([ack_msg("mom1", minions=("m1", "m2"))])
    spool.append([ret_msg("m1", "mom1"), ret_msg("x1", "mom2", jid="20240501123456789099")])
    spool.append([ret_msg("m2", "mom1")])
    counters = Counters()
    shipper = make_shipper(settings, spool, counters=counters)
    rc = make_client(settings.redis)
    assert shipper.ship_once(rc) == 4
    assert spool.pending() == []
    (b1,) = uplink_items(client, "mom1")
    assert b1.dc == "east"
    assert [(type(m).__name__, getattr(m, "minion", None)) for m in b1.messages] == \
        [("Ack", None), ("Return", "m1"), ("Return", "m2")]
    (b2,) = uplink_items(client, "mom2")
    assert [m.minion for m in b2.messages] == ["x1"]
    raw = msgpack.unpackb(opened(client.lrange(KEYS.uplink("mom1"), 0, 0)[0]), raw=False)
    assert all("mom" not in m and "spooled_at" not in m for m in raw["msgs"])
    assert counters.snapshot()["uplink_messages"] == 4
    assert counters.snapshot()["returns_forwarded"] == 3
    assert shipper.ship_once(rc) == 0
    rc.close()


def test_ship_once_respects_batch_max_messages(redis_server, client, tmp_path):
    settings = dc_settings(redis_server.url, tmp_path, batch_max_messages=3)
    spool = Spool(settings.spool_dir, fsync=False)
    for i in range(7):
        spool.append([ret_msg(f"m{i}")])
    shipper = make_shipper(settings, spool)
    rc = make_client(settings.redis)
    counts = []
    while True:
        n = shipper.ship_once(rc)
        if not n:
            break
        counts.append(n)
    assert counts == [3, 3, 1]
    minions = [m.minion for b in uplink_items(client, "mom1") for m in b.messages]
    assert minions == [f"m{i}" for i in range(7)]  # order preserved across batches
    rc.close()


def test_redis_down_keeps_every_file_then_ships_them(redis_server, client, tmp_path):
    settings = dc_settings(redis_server.url, tmp_path)
    spool = Spool(settings.spool_dir, fsync=False)
    shipper = make_shipper(settings, spool)
    rc = make_client(settings.redis)
    spool.append([ret_msg("m0")])
    assert shipper.ship_once(rc) == 1

    client.close()
    redis_server.stop()
    for i in range(1, 4):
        spool.append([ret_msg(f"m{i}")])
    with pytest.raises(TRANSIENT):
        shipper.ship_once(rc)
    with pytest.raises(TRANSIENT):
        shipper.ship_once(rc)
    assert len(spool.pending()) == 3  # nothing lost, nothing half-removed

    redis_server.start()  # same port, empty data (no persistence): m0 is gone with it
    assert shipper.ship_once(rc) == 3
    assert spool.pending() == []
    fresh = redis_server.client()
    items = [decode_batch(opened(raw), 1 << 24) for raw in reversed(fresh.lrange(KEYS.uplink("mom1"), 0, -1))]
    assert [m.minion for b in items for m in b.messages] == ["m1", "m2", "m3"]
    fresh.close()
    rc.close()


def test_trimmed_return_waits_for_the_job_cache_then_ships_whole(redis_server, client, tmp_path):
    settings = dc_settings(redis_server.url, tmp_path)
    spool = Spool(settings.spool_dir, fsync=False)
    cache = FakeCache()
    shipper = make_shipper(settings, spool, cache=cache)
    rc = make_client(settings.redis)
    big = ret_msg("m1", trimmed=True)
    big["load"]["return"] = "VALUE_TRIMMED"
    spool.append([big])
    spool.append([ret_msg("m2")])
    assert shipper.ship_once(rc) == 0  # order kept: m2 waits behind m1
    assert len(spool.pending()) == 2
    cache.returns[(JID, "m1")] = {"return": {"huge": "y" * 2_000_000}, "retcode": 0}
    assert shipper.ship_once(rc) == 2
    (b,) = uplink_items(client, "mom1")
    assert [m.minion for m in b.messages] == ["m1", "m2"]
    assert b.messages[0].load["return"] == {"huge": "y" * 2_000_000}
    rc.close()


def test_heartbeat_writes_a_status_record(redis_server, client, tmp_path):
    settings = dc_settings(redis_server.url, tmp_path)
    spool = Spool(settings.spool_dir, fsync=False)
    spool.append([ret_msg("m1")])
    shipper = make_shipper(settings, spool)
    rc = make_client(settings.redis)
    JobStream(client, KEYS.jobs, 1000).append([{"n": b"0"}])
    before = time.time()
    shipper.heartbeat(rc)
    status = decode_status(opened(client.get(KEYS.status("east"))))
    assert client.get(KEYS.dckey("east")).decode() == EAST_KEY.public_pem
    assert status.dc == "east" and status.master_id == "dc-east" and status.version == "9.9"
    assert status.spool_depth == 1 and status.minion_count == 3
    assert status.cursor == "0-0" and status.stream_last_id != "0-0"
    assert before <= status.last_seen <= time.time()
    assert client.smembers(KEYS.dcs) == {b"east"}
    rc.close()


# ------------------------------------------------------------------- shipper -> collector, end to end


def test_collector_clears_inflight_after_storing(redis_server, client, tmp_path):
    settings = dc_settings(redis_server.url, tmp_path)
    spool = Spool(settings.spool_dir, fsync=False)
    spool.append([ret_msg("m1")])  # the return races ahead of its ack
    spool.append([ack_msg(minions=("m1",))])
    rc = make_client(settings.redis)
    shipper = make_shipper(settings, spool)
    shipper.ship_once(rc)

    mom = load_settings({"id": "mom1", "redis_syndic": {"role": "mom", "redis_url": redis_server.url,
                                                        "namespace": "t", "state_dir": str(tmp_path / "mom")}})
    cache, bus = FakeCache(), FakeBus()
    ledger = MomLedger(os.path.join(mom.state_dir, "mom.sqlite"))
    uplink = UplinkQueue(client, KEYS.uplink("mom1"), KEYS.inflight("mom1"))
    collector = Collector(mom, bus, cache, ledger, queue.Queue(),
                          DeadLetters(str(tmp_path / "dl"), KEYS.deadletter, 10, None), Counters(), threading.Event(),
                          keyring=DcKeyring(str(tmp_path / "keys"), {"east": EAST_KEY.public_pem}), uplink=uplink)
    for raw in uplink.take(max_items=50, block_seconds=0.1):
        collector.process(raw)
    assert cache.stored == [(JID, "m1")]
    assert uplink.inflight() == []
    assert uplink.length() == 0
    ledger.close()
    rc.close()


# -------------------------------------------------------------------------------- dead letters


def test_deadletters_capped_in_redis_and_kept_on_disk(redis_server, client, tmp_path):
    directory = tmp_path / "dl"
    letters = DeadLetters(str(directory), KEYS.deadletter, max_entries=5, client=lambda: client)
    for i in range(12):
        letters.add(source="dc:east", entry_id=f"{i}-0", reason="bad_signature", detail="d", raw={b"b": b"x" * 10})
    assert client.llen(KEYS.deadletter) == 5
    newest = [msgpack.unpackb(r, raw=False)["entry_id"] for r in client.lrange(KEYS.deadletter, 0, -1)]
    assert newest == ["11-0", "10-0", "9-0", "8-0", "7-0"]
    assert 5 <= len(os.listdir(directory)) <= 6  # the local directory is bounded too (newest kept)


def test_deadletters_with_redis_down_still_write_the_file(redis_server, tmp_path):
    settings = dc_settings(redis_server.url, tmp_path)
    rc = make_client(settings.redis)
    redis_server.stop()
    letters = DeadLetters(str(tmp_path / "dl"), KEYS.deadletter, max_entries=5, client=lambda: rc)
    letters.add(source="dc:east", entry_id="1-0", reason="malformed", detail="", raw=b"junk")  # must not raise
    (name,) = os.listdir(tmp_path / "dl")
    with open(tmp_path / "dl" / name, "rb") as fh:
        record = msgpack.unpackb(fh.read(), raw=False)
    assert record["reason"] == "malformed" and record["raw"] == b"junk"
    rc.close()


def test_deadletter_list_keeps_the_newest_and_raises_only_transport_errors(redis_server, client, tmp_path):
    letters = DeadLetterList(client, KEYS.deadletter, max_entries=3)
    for i in range(5):
        letters.push(f"r{i}".encode())
    assert client.lrange(KEYS.deadletter, 0, -1) == [b"r4", b"r3", b"r2"]
    client.set("t:not-a-list", b"x")  # WRONGTYPE: a server error, not a broken link
    with pytest.raises(TransportError, match="ResponseError"):
        DeadLetterList(client, "t:not-a-list", 3).push(b"r")
    rc = make_client(dc_settings(redis_server.url, tmp_path).redis)
    redis_server.stop()
    with pytest.raises(TransportError):
        DeadLetterList(rc, KEYS.deadletter, 3).push(b"r")
    rc.close()
