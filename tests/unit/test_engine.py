"""engine.start: a configuration error is logged once and the engine idles; otherwise the loops run.

Salt restarts an engine whose start() returns or raises, every ~10 s with a traceback: so a
bad option must neither return nor raise before the master stops.  The loops come from a
factory passed in (fakes here, no Salt daemon).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from salt_redis_syndic import engine
from salt_redis_syndic.app import Role
from salt_redis_syndic.errors import ConfigError

pytestmark = pytest.mark.unit

OPTS = {"id": "mom1", "cachedir": "/nonexistent/cache", "pki_dir": "/nonexistent/pki"}
GOOD = {"role": "mom", "redis_url": "redis://127.0.0.1:1/0"}


class CountingStop(threading.Event):
    """A stop flag that records each wait and is set by the first one (the master stopping)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.set()
        return True


def refuse(role: Role) -> dict[str, Any]:
    raise AssertionError("no loop may be built from a bad configuration")


def test_a_bad_option_is_logged_once_and_the_engine_idles_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    stop = CountingStop()
    with caplog.at_level(logging.ERROR, logger="salt_redis_syndic"):
        engine.start({**OPTS, "redis_syndic": {**GOOD, "job_ttl": "soon"}}, None, stop, factory=refuse)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'job_ttl'" in errors[0] and "idle until this is fixed" in errors[0]
    assert stop.waits == [3600]  # it waited for the master to stop, it did not return at once


def test_a_key_the_factory_cannot_use_is_a_config_error_too(caplog: pytest.LogCaptureFixture) -> None:
    def unreadable_key(role: Role) -> dict[str, Any]:
        raise ConfigError("trusted_keys", "cannot read /missing.pub")

    stop = CountingStop()
    with caplog.at_level(logging.ERROR, logger="salt_redis_syndic"):
        engine.start(OPTS, GOOD, stop, factory=unreadable_key)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'trusted_keys'" in errors[0]
    assert stop.waits == [3600]


def test_the_loops_the_factory_built_run_until_stopped() -> None:
    stop = threading.Event()
    built: list[Role] = []
    ran: list[str] = []
    both = threading.Barrier(2)

    class Loop:
        def __init__(self, name: str) -> None:
            self.name = name

        def run(self) -> None:
            both.wait()  # each loop in a thread of its own
            ran.append(self.name)
            stop.set()

    def factory(role: Role) -> dict[str, Any]:
        built.append(role)
        return {"publish": Loop("publish"), "collect": Loop("collect")}

    engine.start(OPTS, GOOD, stop, factory=factory)
    assert sorted(ran) == ["collect", "publish"]
    (role,) = built
    assert role.settings.role == "mom" and role.settings.master_id == "mom1" and role.stop is stop


def test_a_salt_older_than_3006_is_refused_in_one_line_naming_the_supported_releases(
        caplog: pytest.LogCaptureFixture) -> None:
    stop = CountingStop()
    with caplog.at_level(logging.WARNING, logger="salt_redis_syndic"):
        engine.start(OPTS, GOOD, stop, factory=refuse, salt_release=lambda: (3005, 5))
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Salt 3005.5 is not supported" in line and "3006 LTS, 3007 and 3008 LTS" in line
    assert "idle until this is fixed" in line
    assert stop.waits == [3600]


@pytest.mark.parametrize("release", [(3006, 0), (3007, 1), (3008, 4)])
def test_a_supported_salt_runs_the_loops_without_a_word(release: tuple[int, int],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    built: list[Role] = []
    with caplog.at_level(logging.WARNING, logger="salt_redis_syndic"):
        engine.start(OPTS, GOOD, CountingStop(), factory=lambda role: built.append(role) or {},
                     salt_release=lambda: release)
    assert len(built) == 1 and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_salt_newer_than_tested_runs_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    built: list[Role] = []
    with caplog.at_level(logging.WARNING, logger="salt_redis_syndic"):
        engine.start(OPTS, GOOD, CountingStop(), factory=lambda role: built.append(role) or {},
                     salt_release=lambda: (3009, 0))
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(built) == 1 and "Salt 3009.0 is newer than" in line


def test_the_running_salt_is_read_from_salt_itself() -> None:
    import salt.version

    from salt_redis_syndic.salt_adapter.release import running

    info = salt.version.__saltstack_version__
    assert running() == (info.major, info.minor) and running()[0] >= 3006
