"""The fault-injection proxy against a real redis-server.

The bridge's tests trust this proxy to tell a cut link (errors at once) from a dead one
(silence until a timeout), so those behaviours are pinned here with redis-py, the client
the bridge uses.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lab import RedisServer
from lab.netproxy import Proxy

pytestmark = pytest.mark.functional


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[Proxy]:
    p = Proxy("127.0.0.1", redis_server.port).start()
    try:
        yield p
    finally:
        p.stop()
        assert p.threads() == []


def client(proxy: Proxy, timeout: float = 1.0) -> redis.Redis:
    """A client without redis-py's automatic retries, so each fault shows on the first call."""
    return redis.Redis(
        host="127.0.0.1",
        port=proxy.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def test_ping_goes_through(proxy: Proxy) -> None:
    r = client(proxy)
    assert r.ping() is True
    r.set("k", b"v" * 200_000)  # larger than one chunk: reassembled in order
    assert r.get("k") == b"v" * 200_000
    assert proxy.connections == 1
    r.close()


def test_cut_gives_connection_error_and_heal_restores(proxy: Proxy) -> None:
    r = client(proxy)
    assert r.ping()
    proxy.cut()
    began = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        r.ping()  # the open connection was reset
    with pytest.raises(redis.ConnectionError):
        r.ping()  # and new ones are refused
    assert time.monotonic() - began < 1.0, "a cut link must fail fast, not time out"
    proxy.heal()
    assert r.ping()


def test_blackhole_times_out_then_heal_restores(proxy: Proxy) -> None:
    r = client(proxy)
    assert r.ping()
    proxy.blackhole()
    began = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        r.ping()
    assert time.monotonic() - began >= 0.9, "a dead link must hang until the timeout"
    proxy.heal()
    r2 = client(proxy)  # the first connection's stream holds a stale PONG: use a fresh one
    assert r2.ping()


def test_blackhole_holds_writes_and_delivers_them_on_heal(
    proxy: Proxy, redis_server: RedisServer
) -> None:
    """Like TCP retransmission after an outage: what was sent during it arrives afterwards."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    proxy.blackhole()
    sock.sendall(b"SET held yes\r\n")
    time.sleep(0.3)
    assert redis_server.client().get("held") is None
    proxy.heal()
    assert sock.recv(64) == b"+OK\r\n"
    assert redis_server.client().get("held") == b"yes"
    sock.close()


def test_delay_adds_latency_each_way(proxy: Proxy) -> None:
    r = client(proxy, timeout=5)
    assert r.ping()
    proxy.delay(0.2)
    began = time.monotonic()
    assert r.ping()
    elapsed = time.monotonic() - began
    assert elapsed >= 0.4, elapsed
    assert elapsed < 2.0, elapsed
    proxy.heal()
    began = time.monotonic()
    assert r.ping()
    assert time.monotonic() - began < 0.2


def test_delay_preserves_order_under_pipelining(proxy: Proxy) -> None:
    r = client(proxy, timeout=5)
    proxy.delay(0.05)
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.rpush("order", i)
    pipe.execute()
    assert [int(x) for x in r.lrange("order", 0, -1)] == list(range(500))


def test_many_connections_and_clean_stop(redis_server: RedisServer) -> None:
    before = {t.ident for t in threading.enumerate()}
    p = Proxy("127.0.0.1", redis_server.port).start()
    clients = [client(p) for _ in range(10)]
    for c in clients:
        assert c.ping()
    assert p.connections == 10
    p.blackhole()  # stop must not hang on connections that are stuck
    p.stop()
    p.stop()  # idempotent
    assert p.threads() == []
    new = [t for t in threading.enumerate() if t.ident not in before]
    leaked = [t for t in new if t.name.startswith("netproxy")]
    assert leaked == []
    for c in clients:
        c.close()


def test_upstream_down_resets_client(redis_server: RedisServer) -> None:
    p = Proxy("127.0.0.1", redis_server.port).start()
    try:
        redis_server.kill()
        with pytest.raises(redis.ConnectionError):
            client(p).ping()
        redis_server.start()
        assert client(p).ping()
    finally:
        p.stop()
