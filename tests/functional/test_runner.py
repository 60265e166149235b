"""The ``redis_syndic`` runner's library side against a real redis-server: status, job, keys.

What an operator sees with ``salt-run redis_syndic.*`` comes from Redis records signed by each
DC and from the MoM's ledger; nothing unsigned or signed by the wrong key is shown as alive.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic import runner
from salt_redis_syndic.errors import ConfigError
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.ledger import ledger_file
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.status import DcStatus

pytestmark = pytest.mark.functional

JID = "20240501123456789012"


def mom_opts(tmp_path: Path, url: str, **block: Any) -> dict[str, Any]:
    return {"id": "mom", "cachedir": str(tmp_path / "cache"), "redis_syndic": {
        "role": "mom", "redis_url": url, "state_dir": str(tmp_path / "state"),
        "signing_key": str(tmp_path / "state" / "mom.key"), **block}}


def status_of(dc: str, last_seen: float, **counters: int) -> DcStatus:
    return DcStatus(dc=dc, last_seen=last_seen, cursor="1-0", stream_last_id="2-0", lag_seconds=0.5, spool_depth=3,
                    minion_count=2, version="0.1.0", master_id=f"{dc}-master", counters=dict(counters))


@pytest.fixture
def signers() -> dict[str, Signer]:
    return {dc: Signer(Ed25519PrivateKey.generate()) for dc in ("east", "west")}


def test_status_shows_alive_stale_and_badly_signed_dcs(tmp_path, redis_server, signers):
    opts = mom_opts(tmp_path, redis_server.url, dc_timeout=30,
                    dc_keys={dc: s.public_pem for dc, s in signers.items()})
    client, keys, now = redis_server.client(), Keys("redis_syndic"), time.time()
    client.sadd(keys.dcs, "east", "west", "north")
    client.set(keys.status("east"), seal(status_of("east", now, jobs_published=7, rejected_bad_signature=2).encode(),
                                         signers["east"]))
    client.set(keys.status("west"), seal(status_of("west", now - 300).encode(), signers["east"]))  # east's key

    rows = runner.status(opts)

    assert rows["east"]["alive"] is True and rows["east"]["jobs_published"] == 7
    assert rows["east"]["rejected_by_reason"] == {"bad_signature": 2}
    assert rows["east"]["spool_depth"] == 3 and rows["east"]["minion_count"] == 2
    assert rows["west"]["alive"] is False and "error" in rows["west"]  # signed by another DC's key
    assert rows["north"] == {"alive": False, "last_seen": None}  # known, never heard from


def test_job_report_names_targeted_returned_and_missing(tmp_path, redis_server, signers):
    opts = mom_opts(tmp_path, redis_server.url, dc_keys={dc: s.public_pem for dc, s in signers.items()})
    ledger = MomLedger(ledger_file(opts["redis_syndic"]["state_dir"], "mom"))
    ledger.record_ack(JID, "east", "published", ["e1", "e2"])
    ledger.mark_stored(JID, "e1", "east")
    ledger.close()

    report = runner.job(opts, JID)

    assert report["east"]["acknowledged"] is True
    assert (report["east"]["targeted"], report["east"]["returned"], report["east"]["missing"]) == (
        ["e1", "e2"], ["e1"], ["e2"])


def test_dc_keys_pending_accept_reject(tmp_path, redis_server, signers):
    opts = mom_opts(tmp_path, redis_server.url)
    assert runner.keys(opts) == {}
    with pytest.raises(ConfigError):
        runner.accept(opts, "east", "0123456789abcdef")  # nothing announced: nothing to accept
    pem = runner.pubkey(opts)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and runner.pubkey(opts) == pem  # created once, then kept


def test_the_runner_refuses_to_run_on_a_dc(tmp_path, redis_server, signers):
    opts = mom_opts(tmp_path, redis_server.url, role="dc", dc="east", trusted_keys=[signers["west"].public_pem])
    with pytest.raises(ConfigError) as err:
        runner.status(opts)
    assert "role" in str(err.value)
