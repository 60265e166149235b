"""The role factories: what each role builds, and that each collaborator is made once and shared.

A fake local master stands in for Salt (no daemon): it records what each loop asked for.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.app import (
    AfterMaster,
    ListenFirst,
    Role,
    build,
    build_mom,
)
from salt_redis_syndic.config import load_settings
from salt_redis_syndic.estate.keymirror import marker
from salt_redis_syndic.errors import ConfigError
from salt_redis_syndic.estate.dc_estate import DcEstate
from salt_redis_syndic.estate.key_orders import KeyOrders
from salt_redis_syndic.estate.mom_estate import MomEstate
from salt_redis_syndic.jobs.consumer import JobConsumer
from salt_redis_syndic.jobs.publisher import JobPublisher
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.returns.shipper import Shipper
from salt_redis_syndic.security.signing import Signer

from support.fakes import FakeBus, FakeCache

pytestmark = pytest.mark.unit


class FakeMaster:
    """Every object a loop asked for, in order (the real one opens Salt objects lazily)."""

    def __init__(self) -> None:
        self.buses: list[FakeBus] = []
        self.caches: list[FakeCache] = []
        self.publishers: list[object] = []
        self.waited: list[float] = []
        self.key_stores: list[FakeKeyStore] = []

    def bus(self, listen: bool) -> FakeBus:
        self.buses.append(FakeBus(listen=listen))
        return self.buses[-1]

    def publish_bus(self) -> FakeBus:
        return self.bus(listen=True)

    def open_bus(self, listen: bool) -> FakeBus:
        return FakeBus(listen=listen)

    def job_cache(self) -> FakeCache:
        self.caches.append(FakeCache(recent=[("20240501123456789012", 5.0, {})]))
        return self.caches[-1]

    def publisher(self) -> object:
        self.publishers.append(object())
        return self.publishers[-1]

    def minion_data(self) -> object:
        return object()

    def key_manager(self) -> object:
        return object()

    def key_store(self, mirrored_dc: Any) -> FakeKeyStore:
        self.key_stores.append(FakeKeyStore(mirrored_dc))
        return self.key_stores[-1]

    def accepted_minion_count(self) -> int:
        return 3

    def wait_for_master(self, timeout: float, stop: threading.Event) -> bool:
        self.waited.append(timeout)
        return True


class FakeKeyStore:
    """The MoM key store as the key mirror and the publisher's find_job answers use it."""

    def __init__(self, mirrored_dc: Any) -> None:
        self.mirrored_dc = mirrored_dc

    def owners(self, minions: list[str]) -> dict[str, str | None]:
        return {m: None for m in minions}


def role_for(tmp_path: Path, **block: Any) -> Role:
    opts = {"id": block.pop("id", "mom1"), "cachedir": str(tmp_path / "cache"), "pki_dir": str(tmp_path / "pki")}
    return Role(load_settings(opts, {"redis_url": "redis://127.0.0.1:1/0", **block}), opts, threading.Event())


def mom_role(tmp_path: Path, **block: Any) -> Role:
    return role_for(tmp_path, role="mom", **block)


def dc_role(tmp_path: Path, **block: Any) -> Role:
    mom_pub = Signer(Ed25519PrivateKey.generate()).public_pem
    return role_for(tmp_path, id="east", role="dc", dc="east", trusted_keys=[mom_pub], **block)


def test_mom_builds_publish_collect_and_estate(tmp_path: Path) -> None:
    role, master = mom_role(tmp_path), FakeMaster()
    loops = build_mom(role, master)
    assert set(loops) == {"publish", "collect", "estate"}
    publish, collector, estate = loops["publish"], loops["collect"], loops["estate"]
    assert isinstance(publish, ListenFirst) and isinstance(publish.loop, JobPublisher)
    assert isinstance(collector, Collector) and isinstance(estate, MomEstate)
    # the publisher listens on the bus; the others only fire
    assert publish.bus is publish.loop.bus and publish.loop.bus.listen
    assert not collector.bus.listen and not estate.bus.listen
    # what the publisher puts on its queue is what the collector waits for
    assert publish.loop.published is collector.published
    assert collector.cache in master.caches
    assert publish.loop.recent_loads(5.0) == [("20240501123456789012", 5.0, {})]
    assert [5.0] in [cache.asked_since for cache in master.caches]  # the publisher's own cache was asked
    assert collector.deadletters is estate.deadletters
    # one counters and gauges for the whole role: the status record and metrics read them
    assert publish.loop.counters is collector.counters is estate.counters is role.counters
    assert collector.gauges is role.gauges
    assert (tmp_path / "pki" / "redis_syndic.pem").exists()  # the MoM's signing key, created once
    # DC minions mirrored into the MoM key store (long jobs), and find_job answered from it
    assert estate.mirror is not None and estate.mirror.keys in master.key_stores
    assert publish.loop.owners is not None and publish.loop.owners.__self__ in master.key_stores
    assert master.key_stores[0].mirrored_dc(marker("east")) == "east"


def test_mom_without_key_mirroring(tmp_path: Path) -> None:
    loops = build_mom(mom_role(tmp_path, mirror_minion_keys=False), FakeMaster())
    assert loops["publish"].loop.owners is None
    assert loops["estate"].mirror is not None and loops["estate"].mirror.enabled is False  # removes its markers


def test_mom_without_estate(tmp_path: Path) -> None:
    assert set(build(mom_role(tmp_path, estate=False), FakeMaster())) == {"publish", "collect"}


def test_dc_builds_jobs_uplink_and_estate(tmp_path: Path) -> None:
    role, master = dc_role(tmp_path), FakeMaster()
    loops = build(role, master)
    assert set(loops) == {"jobs", "uplink", "estate"}
    jobs, shipper, estate = loops["jobs"], loops["uplink"], loops["estate"]
    assert isinstance(jobs, AfterMaster) and isinstance(jobs.loop, JobConsumer)
    assert isinstance(shipper, Shipper) and isinstance(estate, DcEstate)
    consumer = jobs.loop
    assert consumer.publisher is master.publishers[0]
    # the consumer spools acks that the shipper sends, and wakes it
    assert consumer.spool is shipper.spool and consumer.wake_uplink is shipper.wake
    assert consumer.deadletters is shipper.deadletters
    consumer.cursor = "1700000000000-0"
    assert shipper.cursor() == "1700000000000-0"  # the status record shows the consumer's position
    assert shipper.minion_count() == 3
    assert estate.orders is None  # key management is off by default
    assert estate.signer.key_id == shipper.signer.key_id  # one uplink key signs batches and estate records


def test_dc_with_key_management_carries_out_orders_in_the_estate_loop(tmp_path: Path) -> None:
    loops = build(dc_role(tmp_path, key_management=True), FakeMaster())
    estate = loops["estate"]
    assert isinstance(estate, DcEstate) and isinstance(estate.orders, KeyOrders)
    assert estate.orders.deadletters is loops["uplink"].deadletters


def test_dc_with_an_unreadable_trusted_key_is_a_config_error(tmp_path: Path) -> None:
    role = role_for(tmp_path, id="east", role="dc", dc="east", trusted_keys=[str(tmp_path / "missing.pub")])
    with pytest.raises(ConfigError) as info:
        build(role, FakeMaster())
    assert info.value.option == "trusted_keys"


def test_after_master_waits_for_the_master_and_its_minions_then_runs(tmp_path: Path) -> None:
    role, master = dc_role(tmp_path, startup_grace=7), FakeMaster()
    order: list[str] = []

    class Loop:
        def run(self) -> None:
            order.append("run")

    def subscribers(port: int, address: str, expected: Any, grace: float, stop: threading.Event) -> bool:
        order.append(f"subscribers {port} {expected()} {grace}")
        return True

    AfterMaster(Loop(), master, role.settings, {"publish_port": 4606}, role.stop, subscribers).run()
    assert master.waited == [120] and order == ["subscribers 4606 3 7.0", "run"]


def test_listen_first_subscribes_before_the_loop_runs() -> None:
    bus = FakeBus(listen=True)
    seen: list[int] = []

    class Loop:
        def run(self) -> None:
            seen.append(bus.opened)

    ListenFirst(Loop(), bus).run()
    assert seen == [1]
