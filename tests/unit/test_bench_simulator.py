"""The scale benchmark's DC simulator builds what a real DC ships: signed batches the MoM accepts."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.simulate_dcs import build_batches, heartbeat_record, sim_minions
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer, public_pem
from salt_redis_syndic.wire.sealed import unseal
from salt_redis_syndic.wire.status import read_status
from salt_redis_syndic.wire.uplink import Ack, Return, decode_batch

pytestmark = pytest.mark.unit

JID = "20261127120000123456"
MAX = 64 * 1024 * 1024


@pytest.fixture
def signer_and_ring(tmp_path):
    signer = Signer(Ed25519PrivateKey.generate())
    ring = DcKeyring(str(tmp_path / "ring"), {"sim00": public_pem(signer.public_key)})
    return signer, ring


def test_batches_verify_and_carry_the_ack_first_then_every_return(signer_and_ring):
    signer, ring = signer_and_ring
    minions = sim_minions("sim00", 7)
    items = build_batches("sim00", JID, minions, signer, batch_size=3)
    assert len(items) == 3  # 1 ack + 7 returns, 3 per item
    messages = []
    for raw in items:
        body, sig, kid = unseal(raw, MAX)
        assert ring.verify(kid, sig, body) == "sim00"
        batch = decode_batch(body, MAX)
        assert batch.dc == "sim00" and not batch.rejected
        messages += batch.messages
    ack, returns = messages[0], messages[1:]
    assert isinstance(ack, Ack) and ack.status == "published" and ack.minions == minions
    assert all(isinstance(r, Return) and r.jid == JID for r in returns)
    assert [r.minion for r in returns] == minions
    assert all(r.load["return"] is True and r.load["id"] == r.minion for r in returns)


def test_batches_signed_by_another_key_are_refused(signer_and_ring):
    _, ring = signer_and_ring
    stranger = Signer(Ed25519PrivateKey.generate())
    body, sig, kid = unseal(build_batches("sim00", JID, ["sim00-s00000"], stranger, 10)[0], MAX)
    with pytest.raises(Exception, match="not accepted"):
        ring.verify(kid, sig, body)


def test_heartbeat_is_a_status_the_mom_reads(signer_and_ring):
    signer, ring = signer_and_ring
    status = read_status(heartbeat_record("sim00", signer, 1000, 1.7e9), ring, "sim00")
    assert status.dc == "sim00" and status.minion_count == 1000 and status.last_seen == 1.7e9
