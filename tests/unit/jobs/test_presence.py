"""Counting subscribers of the local publisher from /proc/net/tcp (real sockets, no Salt)."""

from __future__ import annotations

import socket
import threading

import pytest

from salt_redis_syndic.jobs.presence import publish_connections, wait_for_subscribers

pytestmark = pytest.mark.unit


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield srv
    srv.close()


def test_counts_established_connections_to_that_address_and_port(listener):
    port = listener.getsockname()[1]
    assert publish_connections(port, "127.0.0.1") == 0
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [listener.accept()[0] for _ in clients]
    try:
        assert publish_connections(port, "127.0.0.1") == 3
        assert publish_connections(port, "0.0.0.0") == 3  # wildcard: any local address
        assert publish_connections(port, "127.0.0.2") == 0  # another master's address
    finally:
        for s in clients + accepted:
            s.close()


def test_wait_returns_once_enough_subscribers_or_after_grace(listener):
    port = listener.getsockname()[1]
    stop = threading.Event()
    assert wait_for_subscribers(port, "127.0.0.1", lambda: 0, 5, stop) is True
    assert wait_for_subscribers(port, "127.0.0.1", lambda: 1, 0.3, stop) is False  # nobody came
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    try:
        assert wait_for_subscribers(port, "127.0.0.1", lambda: 1, 5, stop) is True
    finally:
        client.close()
        conn.close()


def test_no_proc_means_no_wait(tmp_path):
    assert publish_connections(4505, None, tables=(str(tmp_path / "missing"),)) is None
