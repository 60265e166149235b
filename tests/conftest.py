"""Fixtures shared by every test tier.

``redis_server`` gives a test its own redis-server (a fresh port and dir, never the
machine's shared Redis on 6379), so tests may stop, kill or pause it. A missing
``redis-server`` binary is an error, not a skip: a suite that silently skips its Redis
tests proves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from salt_redis_syndic.lab import RedisServer

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

    Each call returns a started :class:`~salt_redis_syndic.lab.RedisServer` (``.port``,
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
