"""The MoM's estate files (rosters, drift report): readable by their owner only."""

from __future__ import annotations

import os
import stat

import pytest

from salt_redis_syndic.estate.roster import RosterView
from salt_redis_syndic.estate.store import EstateStore

pytestmark = pytest.mark.unit


def test_estate_files_are_created_0600(tmp_path):
    store = EstateStore(str(tmp_path / "estate"))
    old = os.umask(0o022)
    try:
        store.save_roster("east", RosterView(epoch="e", seq=1), 1000.0, 60.0)
        store.save_drift({"east": {}}, 1000.0)
    finally:
        os.umask(old)
    for path in (store.roster_file("east"), str(tmp_path / "estate" / "drift.mp")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
