"""An attacker with read/write access to Redis but no key (issue 15, attacker A), against a real redis-server.

Whatever such a writer puts in Redis, the MoM's loops keep working for the genuine DCs: a member
of the DC set that is not a name (not UTF-8, 10 KB long) is skipped and counted, never decoded.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic import runner
from salt_redis_syndic.config import load_settings
from salt_redis_syndic.estate.mom_estate import MomEstate
from salt_redis_syndic.estate.records import EstateHead
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.status import DcStatus

from support.fakes import FakeBus, FakeCache

pytestmark = pytest.mark.functional

KEYS = Keys("redis_syndic")
HOSTILE = (b"\xff\xfe", b"x" * 10_240, b"east\n", b"../etc")


def mom_opts(tmp_path: Path, url: str, signers: dict[str, Signer]) -> dict[str, Any]:
    return {"id": "mom", "cachedir": str(tmp_path / "cache"), "redis_syndic": {
        "role": "mom", "redis_url": url, "state_dir": str(tmp_path / "state"),
        "signing_key": str(tmp_path / "state" / "mom.key"), "dc_timeout": 30,
        "dc_keys": {dc: s.public_pem for dc, s in signers.items()}}}


@pytest.fixture
def genuine(redis_server) -> dict[str, Signer]:
    """Two genuine DCs, east and west, with fresh heartbeats and estate heads, and hostile members beside them."""
    signers = {dc: Signer(Ed25519PrivateKey.generate()) for dc in ("east", "west")}
    client, now = redis_server.client(), time.time()
    for dc, signer in signers.items():
        client.sadd(KEYS.dcs, dc)
        status = DcStatus(dc=dc, last_seen=now, cursor="1-0", stream_last_id="1-0", lag_seconds=0.0, spool_depth=0,
                          minion_count=1, version="0", master_id=dc, counters={})
        client.set(KEYS.status(dc), seal(status.encode(), signer))
        head = EstateHead(dc=dc, at=now, epoch="0123456789abcdef", seq=1, snapshot_seq=1, digest="0" * 32,
                          counts={}, files={})
        client.set(KEYS.estate(dc), seal(head.encode(), signer))
    client.sadd(KEYS.dcs, *HOSTILE)
    return signers


def test_collector_lists_the_genuine_dcs_and_counts_the_rest(tmp_path, redis_server, genuine, caplog):
    settings = load_settings(mom_opts(tmp_path, redis_server.url, genuine))
    counters = Counters()
    ledger = MomLedger(os.path.join(settings.state_dir, "mom.sqlite"))
    collector = Collector(settings, FakeBus(), FakeCache(), ledger, queue.Queue(),
                          DeadLetters(str(tmp_path / "dl"), KEYS.deadletter, 10, None), counters, threading.Event(),
                          keyring=DcKeyring(str(tmp_path / "keys"), {dc: s.public_pem for dc, s in genuine.items()}))
    client = redis_server.client()
    for _ in range(3):
        collector.refresh_live_dcs(client, force=True)
    assert collector.live_dcs == {"east", "west"}
    assert counters.snapshot()["rejected_bad_dc_name"] == 3 * len(HOSTILE)
    warnings = [r.getMessage() for r in caplog.records if "not DC names" in r.getMessage()]
    assert len(warnings) == 1 and "4 member(s)" in warnings[0]  # rate-limited, and never echoes the members
    ledger.close()


def test_estate_reads_the_genuine_heads(tmp_path, redis_server, genuine):
    settings = load_settings(mom_opts(tmp_path, redis_server.url, genuine))
    counters = Counters()
    keyring = DcKeyring(str(tmp_path / "keys"), {dc: s.public_pem for dc, s in genuine.items()})
    estate = MomEstate(settings, {}, keyring, FakeBus(), None, counters, threading.Event())
    estate.tick(redis_server.client(), time.time())
    assert sorted(estate.dcs) == ["east", "west"]
    assert all(state.head is not None for state in estate.dcs.values())
    assert counters.snapshot()["rejected_bad_dc_name"] == len(HOSTILE)


def test_status_runner_shows_only_the_genuine_dcs(tmp_path, redis_server, genuine):
    rows = runner.status(mom_opts(tmp_path, redis_server.url, genuine))
    assert sorted(rows) == ["east", "west"]
    assert rows["east"]["alive"] is True and rows["west"]["alive"] is True
