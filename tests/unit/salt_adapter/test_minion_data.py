"""salt_adapter.MinionDataCache against the installed Salt: it reads the bank the running release's
master writes a minion's grains to when the minion fetches its pillar (``AESFuncs._pillar``).

Run on both CI venvs (Salt 3008 in .venv, 3006 in .venv-salt3006); the release-specific store is
chosen by the running release, so each branch runs in one of them.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from salt_redis_syndic.salt_adapter import MinionDataCache
from salt_redis_syndic.salt_adapter.release import grains_bank, running

pytestmark = pytest.mark.unit

GRAINS = {"os": "Debian", "dc_rack": "r7", "ipv4": ["10.0.0.7"]}


def pillar_source() -> str:
    import salt.master

    return re.sub(r"\s+", "", inspect.getsource(salt.master.AESFuncs._pillar))


def master_stores_grains(opts: dict[str, Any], minion: str) -> None:
    """What ``AESFuncs._pillar`` stores with ``minion_data_cache`` on the running release."""
    import salt.cache

    cache = salt.cache.factory(opts)
    if running() >= (3008, 0):
        cache.store("grains", minion, GRAINS)
    else:
        cache.store(f"minions/{minion}", "data", {"grains": GRAINS, "pillar": {"secret": "x"}})


def test_the_bank_is_the_one_the_running_masters_pillar_handler_writes() -> None:
    src = pillar_source()
    if running() >= (3008, 0):
        assert 'self.masterapi.cache.store,"grains",load["id"],load["grains"]' in src
        assert grains_bank(running()) == ("grains", None)
    else:
        assert '"minions/{}".format(load["id"]),"data",{"grains":load["grains"],"pillar":data}' in src
        assert grains_bank(running()) == ("minions/{minion}", "data")


def test_last_seen_and_grains_are_read_where_the_master_wrote_them(tmp_path: Path) -> None:
    import salt.config

    opts = salt.config.apply_master_config({"cachedir": str(tmp_path / "cache"), "sock_dir": str(tmp_path / "sock"),
                                            "extension_modules": str(tmp_path / "extmods")})
    data = MinionDataCache(opts)
    assert data.updated("web1") is None and data.grains("web1", ("os",)) is None
    master_stores_grains(opts, "web1")
    assert isinstance(data.updated("web1"), int)
    assert data.grains("web1", ("os", "dc_rack", "absent")) == {"os": "Debian", "dc_rack": "r7"}
    assert data.grains("db1", ("os",)) is None
