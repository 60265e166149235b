"""Operating the bridge against real daemons: the runner, operator events, the metrics endpoints.

One lab for the module (MoM + DCs east/west, one minion each, each DC's Redis link through a
fault proxy) with a Prometheus endpoint in every engine, a short ``dc_timeout`` so a stopped
DC shows as down within seconds, and ``spool_warn_depth: 1`` on east so one spooled return
raises the spool alarm.  Tests leave the lab as they found it (what they stop or cut, they
start or heal again).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab import Lab, free_tcp_port
from lab import wait_until as wait_for

pytestmark = pytest.mark.integration

DCS = ("east", "west")
DC_TIMEOUT = 3


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {name: free_tcp_port() for name in ("mom", *DCS)}


@pytest.fixture(scope="module")
def ops_lab(ports: dict[str, int]) -> Iterator[Lab]:
    lab = Lab(dcs=DCS, minions_per_dc=1,
              mom_bridge={"metrics_port": ports["mom"], "dc_timeout": DC_TIMEOUT},
              dc_bridge=lambda dc: {"metrics_port": ports[dc], "heartbeat_interval": 1,
                                    "spool_warn_depth": 1 if dc == "east" else 1000},
              dc_links=True)
    try:
        lab.start()
        lab.wait_bridge(timeout=90)
        yield lab
    finally:
        lab.stop()



def status(lab: Lab) -> dict[str, Any]:
    return lab.salt_run_json("redis_syndic.status")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one engine's endpoint by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def labels(role: str, dc: str = "") -> tuple[tuple[str, str], ...]:
    return (("dc", dc), ("role", role))


def test_status_lists_every_dc_alive_with_its_figures(ops_lab: Lab) -> None:
    rows = wait_for(lambda: (lambda s: s if all(s.get(dc, {}).get("alive") for dc in DCS) else None)(status(ops_lab)),
                    30, "both DCs alive in redis_syndic.status")
    assert set(rows) == set(DCS)
    for row in rows.values():
        assert row["minion_count"] == 1
        assert row["last_seen_seconds_ago"] <= DC_TIMEOUT
        assert row["spool_growing"] is False and row["jobs_rejected"] == 0
        for field in ("stream_lag_seconds", "uplink_backlog", "spool_depth", "jobs_published", "jobs_expired",
                      "returns_forwarded", "version"):
            assert field in row, (field, row)


def test_job_report_names_targeted_returned_and_missing_per_dc(ops_lab: Lab) -> None:
    jid = ops_lab.salt_async("*", "test.ping")

    def report() -> dict[str, Any] | None:
        rep = ops_lab.salt_run_json("redis_syndic.job", jid)
        return rep if all(rep.get(dc, {}).get("returned") for dc in DCS) else None

    rep = wait_for(report, 30, f"every DC's return of {jid} in redis_syndic.job")
    for dc in DCS:
        estate = {k: rep[dc].pop(k) for k in ("known_minions", "not_targeted", "down") if k in rep[dc]}
        assert rep[dc] == {"acknowledged": True, "status": "published", "targeted": [f"{dc}-m1"],
                           "returned": [f"{dc}-m1"], "missing": []}
        assert estate.get("down", []) == []  # the roster's view (test_estate.py) names nobody down here
    rows = status(ops_lab)
    assert all(rows[dc]["jobs_published"] >= 1 and rows[dc]["returns_forwarded"] >= 1 for dc in DCS)


def test_metrics_endpoints_count_a_job(ops_lab: Lab, ports: dict[str, int]) -> None:
    forwarded = ("redis_syndic_jobs_forwarded_total", labels("mom"))
    stored = ("redis_syndic_returns_stored_total", labels("mom"))
    published = ("redis_syndic_jobs_published_total", labels("dc", "east"))
    mom0, east0 = scrape(ports["mom"]), scrape(ports["east"])
    assert mom0[("redis_syndic_live_dcs", labels("mom"))] == 2
    assert mom0[("redis_syndic_dc_alive", labels("mom", "west"))] == 1
    assert ("redis_syndic_uplink_backlog", labels("mom")) in mom0
    assert east0[("redis_syndic_minions", labels("dc", "east"))] == 1
    assert ("redis_syndic_spool_depth", labels("dc", "east")) in east0
    assert ("redis_syndic_stream_lag_seconds", labels("dc", "east")) in east0

    ops_lab.salt_async("*", "test.ping")  # exactly one job (a waiting CLI may add saltutil.find_job jobs)
    mom1 = wait_for(lambda: (lambda m: m if m[stored] >= mom0[stored] + 2 else None)(scrape(ports["mom"])),
                    15, "the MoM's returns_stored counter to count both returns")
    assert mom1[forwarded] == mom0[forwarded] + 1
    east1 = scrape(ports["east"])
    assert east1[published] == east0[published] + 1
    west = scrape(ports["west"])
    assert west[("redis_syndic_jobs_published_total", labels("dc", "west"))] >= 1
    assert west[("redis_syndic_returns_forwarded_total", labels("dc", "west"))] >= 1


def test_stopped_dc_shows_down_with_growing_age_then_up_again(ops_lab: Lab) -> None:
    mom_log = ops_lab.master("mom").log_file
    ops_lab.stop_master("west")
    try:
        first = wait_for(lambda: (lambda s: s if s["west"]["alive"] is False else None)(status(ops_lab)),
                         DC_TIMEOUT + 10, "west shown as not alive")
        assert first["east"]["alive"] is True
        time.sleep(1.0)
        second = status(ops_lab)
        assert second["west"]["alive"] is False
        assert second["west"]["last_seen_seconds_ago"] > first["west"]["last_seen_seconds_ago"] > DC_TIMEOUT
        wait_for(lambda: "DC west stopped sending heartbeats" in mom_log.read_text(errors="replace"),
                 10, "the MoM's DC-down line (redis_syndic/dc/west/down)")
    finally:
        ops_lab.start_master("west")
    wait_for(lambda: status(ops_lab)["west"]["alive"], 30, "west alive again after its restart")
    wait_for(lambda: "DC west is up" in mom_log.read_text(errors="replace").split("DC west stopped sending heartbeats")[-1],
             10, "the MoM's DC-up line after the restart")


def test_spool_growing_while_a_dc_is_cut_from_redis_then_drained(ops_lab: Lab, ports: dict[str, int]) -> None:
    east_log = ops_lab.master("east").log_file
    growing = ("redis_syndic_spool_growing", labels("dc", "east"))
    jid = ops_lab.salt_async("-L", "east-m1", "test.sleep", "15")
    wait_for(lambda: ops_lab.salt_run_json("redis_syndic.job", jid).get("east", {}).get("acknowledged"),
             15, "east's acknowledgement")
    # The job outlives the ack check even on a loaded host (a 3 s job had sometimes returned before
    # the cut), so its return, due in 15 s, can only go to the spool.
    ops_lab.link("east").cut()
    try:
        wait_for(lambda: scrape(ports["east"]).get(growing) == 1, 45, "east's spool_growing gauge at 1")
        assert "redis_syndic: DC east spool holds 1 file(s) (spool_warn_depth 1)" in east_log.read_text(errors="replace")
    finally:
        ops_lab.link("east").heal()
    wait_for(lambda: scrape(ports["east"]).get(growing) == 0, 20, "east's spool drained")
    assert "redis_syndic: DC east spool drained" in east_log.read_text(errors="replace")
    rep = wait_for(lambda: (lambda r: r if r["east"]["returned"] else None)(ops_lab.salt_run_json("redis_syndic.job", jid)),
                   30, "the spooled return stored on the MoM")
    assert rep["east"]["missing"] == []
    wait_for(lambda: status(ops_lab)["east"]["alive"], 15, "east alive again")
