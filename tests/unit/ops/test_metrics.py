"""Metrics and operator alarms without daemons: the Prometheus mapping, the new options, spool alarms."""

from __future__ import annotations

import logging
import sys
import threading
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lab import free_tcp_port
from salt_redis_syndic.config import KNOWN_OPTIONS, load_settings
from salt_redis_syndic.errors import ConfigError
from salt_redis_syndic.ops.metrics import COUNTERS, MetricsCollector, serve
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.returns.shipper import Shipper
from salt_redis_syndic.returns.spool_watch import SpoolWatch
from salt_redis_syndic.runtime import Counters, Gauges
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.status import DcStatus, decode_status

from support.fakes import FakeBus

pytestmark = pytest.mark.unit

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + "A" * 43 + "=\n-----END PUBLIC KEY-----\n"


def settings(role="dc", **extra):
    block = {"role": role, "redis_url": "redis://127.0.0.1:1/0", **extra}
    if role == "dc":
        block.update(dc="east", trusted_keys=[PEM])
    return load_settings({"id": "mom" if role == "mom" else "east", "cachedir": "/tmp/unused"}, block)


def scrape(collector: MetricsCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


# ------------------------------------------------------------------------------- options


def test_metrics_and_spool_options_default_off_and_1000():
    s = settings()
    assert (s.metrics_port, s.metrics_address, s.spool_warn_depth) == (None, "127.0.0.1", 1000)
    assert {"metrics_port", "metrics_address", "spool_warn_depth"} <= KNOWN_OPTIONS


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "::1", "10.1.2.3", "localhost", "mom.example.net"])
def test_metrics_options_accept_ports_and_addresses(address):
    s = settings("mom", metrics_port=9108, metrics_address=address, spool_warn_depth=5)
    assert (s.metrics_port, s.metrics_address, s.spool_warn_depth) == (9108, address, 5)


@pytest.mark.parametrize("option,value", [
    ("metrics_port", 0), ("metrics_port", 70000), ("metrics_port", "9108"), ("metrics_port", True),
    ("metrics_port", 91.5), ("metrics_address", ""), ("metrics_address", "bad host!"),
    ("metrics_address", 127), ("spool_warn_depth", 0), ("spool_warn_depth", "many"),
])
def test_bad_metrics_options_name_the_option(option, value):
    with pytest.raises(ConfigError) as info:
        settings("mom", **{option: value})
    assert info.value.option == option


# ------------------------------------------------------------------------------- collector mapping


def test_dc_counters_and_gauges_map_to_prefixed_metrics_with_role_and_dc():
    counters, gauges = Counters(), Gauges()
    counters.inc("jobs_published", 3)
    counters.inc("returns_forwarded", 7)
    counters.inc("jobs_rejected", 2)
    counters.inc("rejected_bad_signature", 2)
    counters.inc("jobs_forwarded", 99)  # a MoM counter: not exported by a DC
    gauges.set("spool_depth", 4)
    gauges.set("stream_lag_seconds", 1.5)
    gauges.set("minion_count", 12)
    got = scrape(MetricsCollector("dc", "east", lambda: (counters.snapshot(), gauges.snapshot()), "1.2.3"))
    own = (("dc", "east"), ("role", "dc"))
    assert got[("redis_syndic_jobs_published_total", own)] == 3
    assert got[("redis_syndic_returns_forwarded_total", own)] == 7
    assert got[("redis_syndic_jobs_rejected_total", own)] == 2
    assert got[("redis_syndic_jobs_expired_total", own)] == 0  # known counters exist from the start
    assert got[("redis_syndic_rejected_total", (("dc", "east"), ("reason", "bad_signature"), ("role", "dc")))] == 2
    assert got[("redis_syndic_spool_depth", own)] == 4
    assert got[("redis_syndic_stream_lag_seconds", own)] == 1.5
    assert got[("redis_syndic_minions", own)] == 12
    assert got[("redis_syndic_info", (("dc", "east"), ("role", "dc"), ("version", "1.2.3")))] == 1
    assert not any(name == "redis_syndic_jobs_forwarded_total" for name, _ in got)
    assert not any(name == "redis_syndic_uplink_backlog" for name, _ in got)


def test_mom_metrics_read_the_live_snapshot_at_each_scrape():
    counters, gauges = Counters(), Gauges()
    collector = MetricsCollector("mom", None, lambda: (counters.snapshot(), gauges.snapshot()), "1")
    own = (("dc", ""), ("role", "mom"))
    assert scrape(collector)[("redis_syndic_jobs_forwarded_total", own)] == 0
    counters.inc("jobs_forwarded", 2)
    counters.inc("returns_stored", 5)
    gauges.set("live_dcs", 2)
    gauges.set("uplink_backlog", 3)
    gauges.set("dc_alive", 1, dc="east")
    gauges.set("dc_alive", 0, dc="west")
    gauges.set("dc_last_seen_seconds", 12.5, dc="west")
    got = scrape(collector)
    assert got[("redis_syndic_jobs_forwarded_total", own)] == 2
    assert got[("redis_syndic_returns_stored_total", own)] == 5
    assert got[("redis_syndic_live_dcs", own)] == 2
    assert got[("redis_syndic_uplink_backlog", own)] == 3
    assert got[("redis_syndic_dc_alive", (("dc", "east"), ("role", "mom")))] == 1
    assert got[("redis_syndic_dc_alive", (("dc", "west"), ("role", "mom")))] == 0
    assert got[("redis_syndic_dc_last_seen_seconds", (("dc", "west"), ("role", "mom")))] == 12.5
    assert not any(name == "redis_syndic_jobs_published_total" for name, _ in got)


def test_every_counter_the_code_increments_is_exported():
    exported = {m.key for m in COUNTERS}
    assert {"jobs_forwarded", "jobs_published", "jobs_rejected", "jobs_expired", "jobs_duplicate",
            "returns_forwarded", "returns_stored", "returns_duplicate", "returns_store_failed", "reconnects",
            "uplink_messages"} <= exported


def test_serve_exposes_the_endpoint_over_http():
    port = free_tcp_port()
    counters = Counters()
    counters.inc("jobs_published")
    server = serve(settings(metrics_port=port), lambda: (counters.snapshot(), {}), "1")
    assert server is not None
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.close()
    assert 'redis_syndic_jobs_published_total{dc="east",role="dc"} 1.0' in body


def test_serve_is_off_without_port_and_logs_one_error_without_the_package(monkeypatch, caplog):
    assert serve(settings(), lambda: ({}, {}), "1") is None
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if not installed
    with caplog.at_level(logging.ERROR):
        assert serve(settings(metrics_port=free_tcp_port()), lambda: ({}, {}), "1") is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "metrics_port" in errors[0] and "prometheus-client" in errors[0]


def test_serve_on_a_busy_port_logs_and_returns_none(caplog):
    port = free_tcp_port()
    first = serve(settings(metrics_port=port), lambda: ({}, {}), "1")
    try:
        with caplog.at_level(logging.ERROR):
            assert serve(settings(metrics_port=port), lambda: ({}, {}), "1") is None
        assert any("metrics_port" in r.getMessage() for r in caplog.records)
    finally:
        assert first is not None
        first.close()


# ------------------------------------------------------------------------------- spool alarms


def test_spool_watch_fires_growing_once_then_drained_at_zero():
    watch = SpoolWatch(threshold=3, interval=60)
    # 'growing' needs two samples in a row at or above the threshold (3 then 5)
    assert [watch.observe(d, t) for t, d in enumerate([0, 2, 3, 5, 2, 4, 1])] == [None, None, None, "growing", None, None, None]
    assert watch.observe(0, 10) == "drained"
    assert watch.observe(3, 20) is None and watch.observe(4, 21) is None  # rate-limited: within the interval
    assert watch.observe(3, 70) == "growing"
    assert SpoolWatch(threshold=1).observe(1, 0) is None  # one file between write and shipment: no alarm


def test_shipper_fires_spool_events_on_its_bus_and_reports_them(tmp_path):
    s = settings(spool_warn_depth=2, heartbeat_interval=0.1)
    spool = Spool(str(tmp_path / "spool"))
    bus, gauges = FakeBus(), Gauges()
    shipper = Shipper(s, spool, cache=None, counters=Counters(), stop=threading.Event(), wake=threading.Event(),
                      cursor=lambda: "0-0", minion_count=lambda: 1, version="1", gauges=gauges, bus=bus,
                      signer=Signer(Ed25519PrivateKey.generate()), ledger=DcLedger(str(tmp_path / "dc.sqlite")))
    spool.append([{"t": "ret"}])
    assert shipper.watch_spool(force=True) == 1 and bus.events == []
    spool.append([{"t": "ret"}])
    shipper.watch_spool(force=True)
    assert bus.events == []  # at the threshold once: not yet an outage
    shipper.watch_spool(force=True)
    assert bus.events == [("redis_syndic/spool/east/growing", {"dc": "east", "spool_depth": 2, "spool_warn_depth": 2})]
    assert gauges.get("spool_growing") == 1 and gauges.get("spool_depth") == 2
    spool.remove(spool.pending())
    shipper.watch_spool(force=True)
    assert bus.events[-1][0] == "redis_syndic/spool/east/drained"
    assert gauges.get("spool_growing") == 0


def test_status_record_carries_the_spool_alarm_and_old_records_still_decode():
    st = DcStatus(dc="east", last_seen=1.0, cursor="0-0", stream_last_id="0-0", lag_seconds=0.0, spool_depth=5,
                  minion_count=1, version="1", master_id="east", spool_warn_depth=3, spool_growing=True)
    back = decode_status(st.encode())
    assert (back.spool_warn_depth, back.spool_growing) == (3, True)
    old = {k: v for k, v in st.__dict__.items() if k not in ("spool_warn_depth", "spool_growing")}
    back = decode_status(pack({"v": 1, "kind": "status", **old}))
    assert (back.spool_warn_depth, back.spool_growing) == (0, False)


EAST_KEY = Signer(Ed25519PrivateKey.generate())


class FakeRedis:
    def __init__(self, statuses):
        self.statuses = statuses

    def smembers(self, key):
        return {name.encode() for name in self.statuses}

    def mget(self, keys):
        # status records are sealed with the DC's uplink key, as the DC engine writes them
        return [seal(self.statuses[k.rsplit(":", 1)[1]].encode(), EAST_KEY) for k in keys]

    def llen(self, key):
        return 4


def test_mom_fires_spool_growing_once_per_episode_and_sets_gauges(tmp_path):
    import time

    s = load_settings({"id": "mom", "cachedir": str(tmp_path)}, {"role": "mom", "redis_url": "redis://127.0.0.1:1/0"})
    bus, gauges = FakeBus(), Gauges()
    collector = Collector(s, bus, cache=None, ledger=MomLedger(str(tmp_path / "mom.sqlite")), published=None, deadletters=None, counters=Counters(),
                          stop=threading.Event(), gauges=gauges,
                          keyring=DcKeyring(str(tmp_path / "keys"), {"east": EAST_KEY.public_pem}))

    def status(depth, growing=False, age=0.0):
        return DcStatus(dc="east", last_seen=time.time() - age, cursor="0-0", stream_last_id="0-0", lag_seconds=0.0,
                        spool_depth=depth, minion_count=1, version="1", master_id="east", spool_warn_depth=10,
                        spool_growing=growing)

    def refresh(st):
        collector.refresh_live_dcs(FakeRedis({"east": st}), force=True)
        return [tag for tag, _ in bus.events]

    assert refresh(status(3)) == ["redis_syndic/dc/east/up"]
    assert refresh(status(10)) == ["redis_syndic/dc/east/up", "redis_syndic/dc/east/spool_growing"]
    assert refresh(status(50, growing=True))[-1] == "redis_syndic/dc/east/spool_growing" and len(bus.events) == 2
    assert refresh(status(0))[-1] == "redis_syndic/dc/east/spool_drained"
    assert gauges.get("uplink_backlog") == 4 and gauges.get("live_dcs") == 1
    assert gauges.get("dc_alive", dc="east") == 1
    assert refresh(status(0, age=60))[-1] == "redis_syndic/dc/east/down"
    assert gauges.get("dc_alive", dc="east") == 0 and gauges.get("dc_last_seen_seconds", dc="east") >= 60
