"""read_batch: the one way an uplink batch enters the MoM (seal, DC key, decryption, structure, DC)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.security.confidential import generate_key_text, load_payload_key
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.sealed import seal, wrap
from salt_redis_syndic.wire.uplink import Ack, Return, batch_aad, encode_batch, read_batch

pytestmark = pytest.mark.unit

JID = "20261202000000000001"
MAX = 1 << 20


@pytest.fixture
def dcs(tmp_path):
    """An accepted key for east and west, and the MoM's keyring holding them."""
    ring = DcKeyring(str(tmp_path))
    signers = {dc: Signer(Ed25519PrivateKey.generate()) for dc in ("east", "west")}
    for dc, signer in signers.items():
        ring.note_announced(dc, signer.public_pem)
        ring.accept(dc, signer.key_id)
    return ring, signers


def body(dc: str, seq: int | None = 7) -> bytes:
    msgs = [Ack(JID, dc, "published", ["m1"]).to_wire(),
            Return(JID, dc, "m1", {"return": True, "id": "m1", "jid": JID}).to_wire()]
    return encode_batch(dc, msgs, now=1000.0, seq=seq)


def reason(raw: bytes, ring: DcKeyring, keys: dict | None = None) -> str:
    with pytest.raises(RejectedEntry) as err:
        read_batch(raw, ring, keys or {}, MAX)
    return err.value.reason


def test_a_sealed_batch_is_read_whole(dcs):
    ring, signers = dcs
    batch = read_batch(seal(body("east"), signers["east"]), ring, {}, MAX)
    assert (batch.dc, batch.seq, batch.rejected) == ("east", 7, [])
    assert [type(m).__name__ for m in batch.messages] == ["Ack", "Return"]


def test_an_encrypted_batch_is_decrypted_with_the_signing_dcs_key(dcs):
    ring, signers = dcs
    keys = {dc: load_payload_key(generate_key_text(), "x") for dc in ("east", "west")}
    raw = seal(wrap(keys["east"], body("east"), batch_aad("east")), signers["east"])
    assert read_batch(raw, ring, keys, MAX).dc == "east"
    assert reason(raw, ring, {"east": keys["west"]}) == "undecryptable"
    assert reason(raw, ring, {}) == "no_payload_key"  # encrypted, and the MoM has no key for east
    assert reason(seal(body("east"), signers["east"]), ring, keys) == "unencrypted"  # no silent downgrade


def test_a_batch_naming_another_dc_than_its_signer_is_refused(dcs):
    ring, signers = dcs
    assert reason(seal(body("west"), signers["east"]), ring) == "wrong_dc"


def test_nothing_is_parsed_before_the_signature(dcs):
    ring, signers = dcs
    stranger = Signer(Ed25519PrivateKey.generate())
    assert reason(seal(b"\xc1 not msgpack", stranger), ring) == "unknown_key"
    raw = bytearray(seal(body("east"), signers["east"]))
    at = raw.index(b"published")
    raw[at] ^= 0x01  # one byte of the signed body
    assert reason(bytes(raw), ring) == "bad_signature"
    assert reason(body("east"), ring) == "unsigned"  # a batch pushed without its seal
    assert reason(pack({"b": body("east")}), ring) == "unsigned"


def test_size_is_bounded_before_parsing(dcs):
    ring, signers = dcs
    raw = seal(body("east"), signers["east"])
    with pytest.raises(RejectedEntry) as err:
        read_batch(raw, ring, {}, len(raw) - 1)
    assert err.value.reason == "too_large"
