"""Fixtures shared by every test tier.

``redis_server`` gives a test its own redis-server (a fresh port and dir, never the
machine's shared Redis on 6379), so tests may stop, kill or pause it. A missing
``redis-server`` binary is an error, not a skip: a suite that silently skips its Redis
tests proves nothing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from lab import RedisServer, find_script, free_tcp_port

MARKERS = {
    "unit": "fast tests without external processes",
    "functional": "tests that use real Salt/Redis pieces in-process or build the package",
    "integration": "tests that start a lab of salt-masters, minions and Redis",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


RedisFactory = Callable[..., RedisServer]


@pytest.fixture
def redis_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisFactory]:
    """Start private redis-servers: ``make(appendonly=False, extra_args=(), port=None)``.

    Each call returns a started :class:`~lab.RedisServer` (``.port``,
    ``.url``, ``.client()``, ``.stop()``, ``.start()``, ``.kill()``, ``.pause()``,
    ``.resume()``); all of them are killed at the end of the test.
    """
    servers: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        directory: Path = tmp_path_factory.mktemp("redis")
        server = RedisServer(directory, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.kill()


@pytest.fixture
def redis_server(redis_server_factory: RedisFactory) -> RedisServer:
    """One private, started redis-server (``--save '' --appendonly no``)."""
    return redis_server_factory()


@pytest.fixture
def sentinel_password() -> str | None:
    return None


@pytest.fixture
def sentinel_setup(redis_server_factory: RedisFactory, tmp_path: Path, sentinel_password: str | None) -> Iterator[tuple[RedisServer, RedisServer, int]]:
    """A primary, a replica of it and one Sentinel (service ``lab``, quorum 1, 1 s down-after).

    Yields ``(primary, replica, sentinel_port)`` once the Sentinel knows the replica.
    """
    primary = redis_server_factory()
    replica = redis_server_factory(extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
    port = free_tcp_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor lab 127.0.0.1 {primary.port} 1\n"
        "sentinel down-after-milliseconds lab 1000\n"
        "sentinel failover-timeout lab 5000\n"
        + (f"requirepass {sentinel_password}\n" if sentinel_password else "")
    )
    proc = subprocess.Popen([find_script("redis-server"), str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        sentinel = redis.Redis(port=port, socket_timeout=1, password=sentinel_password)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                info = sentinel.execute_command("SENTINEL", "REPLICAS", "lab")
                if info and primary.client().info("replication")["connected_slaves"] >= 1:
                    break
            except redis.RedisError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("sentinel never saw the replica")
        yield primary, replica, port
    finally:
        proc.kill()
        proc.wait(timeout=10)


# Modules that take minutes (labs of real daemons, long jobs), longest first. With two xdist
# workers and ``--dist loadfile`` a module is handed to the next free worker in collection
# order: starting the long ones first keeps one worker from finishing alone with the longest.
LONG_MODULES = (
    "tests/integration/test_conformance.py",
    "tests/integration/test_reconciliation.py",
    "tests/integration/test_long_jobs.py",
    "tests/integration/test_faults.py",
    "tests/integration/test_redis_restart.py",
    "tests/integration/test_batch.py",
    "tests/integration/test_bridge.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONG_MODULES)}
    root = Path(str(config.rootpath))

    def key(item: pytest.Item) -> int:
        rel = Path(str(item.path)).relative_to(root).as_posix() if str(item.path).startswith(str(root)) else ""
        return rank.get(rel, len(LONG_MODULES))

    items.sort(key=key)  # stable: the order inside a module and among the others is kept
