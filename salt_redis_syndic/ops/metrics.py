"""Optional Prometheus endpoint of an engine (``metrics_port``), off by default.

One source of truth: the engine's :class:`~salt_redis_syndic.runtime.Counters` (the same
figures the DC status record carries) and :class:`~salt_redis_syndic.runtime.Gauges` (set
by the loops that know them).  :class:`MetricsCollector` reads a snapshot of both at each
scrape and maps it to ``redis_syndic_*`` metrics labelled ``role`` and ``dc``.

``prometheus_client`` is imported lazily: the engine runs without it, and only a configured
``metrics_port`` without the package is an error (one log line naming the option).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..config import Settings
from ..runtime import GaugeKey

log = logging.getLogger(__name__)

PREFIX = "redis_syndic_"
Snapshot = Callable[[], "tuple[dict[str, int], dict[GaugeKey, float]]"]


@dataclass(frozen=True)
class Metric:
    key: str  # name in Counters / Gauges
    metric: str  # exported name without prefix (counters get ``_total`` on exposition)
    help: str
    roles: tuple[str, ...] = ("mom", "dc")


COUNTERS: tuple[Metric, ...] = (
    Metric("jobs_forwarded", "jobs_forwarded", "Jobs the MoM signed and appended to the job stream.", ("mom",)),
    Metric("jobs_published", "jobs_published", "Jobs this DC published to its minions.", ("dc",)),
    Metric("jobs_rejected", "jobs_rejected", "Job stream entries this DC rejected (bad signature, malformed...): never run.", ("dc",)),
    Metric("jobs_expired", "jobs_expired", "Jobs that reached a DC after their expiry: reported, never run.", ("mom", "dc")),
    Metric("jobs_duplicate", "jobs_duplicate", "Job stream entries for a jid this DC had already handled.", ("dc",)),
    Metric("jobs_failed", "jobs_failed", "Jobs a DC master refused to publish.", ("mom", "dc")),
    Metric("jobs_refused", "jobs_refused", "Jobs a DC's policy (allow/deny functions and targets) refused: reported, never run.", ("mom", "dc")),
    Metric("returns_forwarded", "returns_forwarded", "Minion returns this DC pushed to Redis.", ("dc",)),
    Metric("returns_stored", "returns_stored", "Minion returns the MoM stored in its job cache.", ("mom",)),
    Metric("returns_duplicate", "returns_duplicate", "Returns the MoM had already stored (normal after a network fault).", ("mom",)),
    Metric("returns_store_failed", "returns_store_failed", "Stores the MoM's job cache did not keep (tried again, not confirmed meanwhile).", ("mom",)),
    Metric("acks_duplicate", "acks_duplicate", "Job acknowledgements the MoM had already recorded.", ("mom",)),
    Metric("uplink_messages", "uplink_messages", "Messages (acks and returns) this DC pushed to Redis.", ("dc",)),
    Metric("reconnects", "reconnects", "Failed Redis operations that were retried after a backoff.", ("mom", "dc")),
    Metric("jobs_skipped", "jobs_skipped", "Re-sent jobs issued before this DC joined: not run.", ("mom", "dc")),
    Metric("jobs_resent", "jobs_resent", "Jobs the MoM appended again because a DC lacked them or their ack (reconciliation).", ("mom",)),
    Metric("jobs_recovered", "jobs_recovered", "Jobs published while the MoM engine was down, sent from the job cache at its start.", ("mom",)),
    Metric("jobs_unrecoverable", "jobs_unrecoverable", "Jobs published while the MoM engine was down that could not be replayed safely.", ("mom",)),
    Metric("jobs_no_auth_list", "jobs_no_auth_list", "Jobs not sent because Salt (3006) did not record their user's authorization list.", ("mom",)),
    Metric("stream_gaps", "stream_gaps", "Times the job stream started after this DC's cursor (entries trimmed or lost unread).", ("dc",)),
    Metric("stream_resets", "stream_resets", "Times a stream's newest id was before this DC's read position (deleted, recreated, or poisoned): read again from the cursor.", ("dc",)),
    Metric("stream_ids_ahead", "stream_ids_ahead", "Verified job stream entries whose id is ahead of this DC's clock: handled, the cursor not moved.", ("dc",)),
    Metric("batches_resent", "batches_resent", "Uplink batches this DC pushed again because Redis lost them (reconciliation).", ("dc",)),
    Metric("batches_unconfirmed_dropped", "batches_unconfirmed_dropped", "Unconfirmed uplink batch copies dropped after resend_window.", ("dc",)),
)

GAUGES: tuple[Metric, ...] = (
    Metric("stream_lag_seconds", "stream_lag_seconds", "How far this DC's cursor is behind the job stream's last entry.", ("dc",)),
    Metric("spool_depth", "spool_depth", "Files in this DC's uplink spool waiting for Redis.", ("dc",)),
    Metric("spool_growing", "spool_growing", "1 while this DC's spool is above spool_warn_depth (until it drains to 0).", ("dc",)),
    Metric("minion_count", "minions", "Accepted minion keys on this DC master.", ("dc",)),
    Metric("uplink_backlog", "uplink_backlog", "Batches waiting in the MoM's uplink list (all DCs).", ("mom",)),
    Metric("live_dcs", "live_dcs", "DCs whose heartbeat is younger than dc_timeout.", ("mom",)),
    Metric("held_returns", "held_returns", "Returns the MoM holds until their DC's acknowledgement is out.", ("mom",)),
    Metric("store_retries", "store_retries", "Returns waiting to be stored again after the job cache did not keep them.", ("mom",)),
    Metric("dc_alive", "dc_alive", "1 if the DC (label dc) sends heartbeats, 0 if it stopped.", ("mom",)),
    Metric("dc_last_seen_seconds", "dc_last_seen_seconds", "Age of the DC's (label dc) last heartbeat.", ("mom",)),
)

REJECTED_PREFIX = "rejected_"


class MetricsCollector:
    """A prometheus_client custom collector over an engine's counters and gauges."""

    def __init__(self, role: str, dc: str | None, snapshot: Snapshot, version: str) -> None:
        self.role = role
        self.dc = dc or ""
        self.snapshot = snapshot
        self.version = version

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters, gauges = self.snapshot()
        labels = ["role", "dc"]
        own = [self.role, self.dc]
        for m in COUNTERS:
            if self.role in m.roles:
                fam = CounterMetricFamily(PREFIX + m.metric, m.help, labels=labels)
                fam.add_metric(own, float(counters.get(m.key, 0)))
                yield fam
        rejected = CounterMetricFamily(PREFIX + "rejected", "Entries rejected and dead-lettered, by reason.",
                                       labels=[*labels, "reason"])
        for name, value in sorted(counters.items()):
            if name.startswith(REJECTED_PREFIX):
                rejected.add_metric([*own, name[len(REJECTED_PREFIX):]], float(value))
        yield rejected
        by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
        for (name, extra), value in gauges.items():
            by_name.setdefault(name, []).append((dict(extra), value))
        for m in GAUGES:
            if self.role not in m.roles or m.key not in by_name:
                continue
            fam = GaugeMetricFamily(PREFIX + m.metric, m.help, labels=labels)
            for extra, value in sorted(by_name[m.key], key=lambda item: sorted(item[0].items())):
                fam.add_metric([self.role, extra.get("dc", self.dc)], value)
            yield fam
        info = GaugeMetricFamily(PREFIX + "info", "Always 1; the engine's version.", labels=[*labels, "version"])
        info.add_metric([*own, self.version], 1.0)
        yield info


class MetricsServer:
    """The running HTTP endpoint (a daemon thread of the engine process)."""

    def __init__(self, httpd: Any, url: str) -> None:
        self.httpd = httpd
        self.url = url

    def close(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def serve(settings: Settings, snapshot: Snapshot, version: str) -> MetricsServer | None:
    """Start the endpoint if ``metrics_port`` is set; never raises (metrics are optional)."""
    if settings.metrics_port is None:
        return None
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        log.error("redis_syndic: metrics_port is set but prometheus-client is not installed in salt-master's Python "
                  "(pip install 'salt-redis-syndic[metrics]'), or unset metrics_port; running without metrics")
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(settings.role, settings.dc, snapshot, version))
    host = settings.metrics_address
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.metrics_port}/metrics"
    try:
        started = start_http_server(settings.metrics_port, host, registry=registry)
    except OSError as err:
        log.error("redis_syndic: cannot serve metrics on %s (%s); check metrics_address and metrics_port. "
                  "Running without metrics", url, err)
        return None
    log.info("redis_syndic: Prometheus metrics at %s", url)
    httpd = started[0] if isinstance(started, tuple) else None  # prometheus-client < 0.17 returned None
    return MetricsServer(httpd, url)
