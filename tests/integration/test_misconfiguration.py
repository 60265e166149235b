"""A wrong redis_syndic block gives one clear error naming the option, not a crash loop.

Salt restarts an engine whose start() raises or returns about every 10 s with a CRITICAL
traceback; the engine must instead log once and idle until the master is restarted.
"""

from __future__ import annotations

import time

import pytest

from lab import Lab

pytestmark = pytest.mark.integration


def test_bad_options_are_named_once_and_the_engines_idle(make_lab) -> None:
    lab: Lab = make_lab(
        dcs=("east",),
        minions_per_dc=1,
        mom_bridge={"redis_ulr": "redis://127.0.0.1:1/0"},  # typo of redis_url
        dc_bridge={"redis_url": None},  # missing
    )
    time.sleep(25)  # more than two of Salt's ~10 s engine restart periods
    mom_log, dc_log = lab.log("mom"), lab.log("east")
    idle = "The redis_syndic engine is idle until this is fixed"
    mom_errors = [line for line in mom_log.splitlines() if "option 'redis_ulr': is not a known" in line]
    assert len(mom_errors) == 1 and idle in mom_errors[0], mom_log[-3000:]
    dc_errors = [line for line in dc_log.splitlines() if "option 'redis_url': is required" in line]
    # one from the engine; the returner (another process) says it once too, rate-limited
    assert sum(idle in line for line in dc_errors) == 1, dc_errors
    assert sum("NOT forwarded" in line for line in dc_errors) <= 1, dc_errors
    for log in (mom_log, dc_log):
        assert "could not be started" not in log  # Salt's message for a crashed engine
        assert "Traceback" not in log
    # the masters themselves keep working
    out = lab.dc_salt_json("east", "east-m1", "test.ping")
    assert out == {"east-m1": True}
