"""Estate records are read only when the DC's accepted key signed them and they name that DC."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.estate.records import (
    EstateHead,
    FileSet,
    RosterSnapshot,
    decode_delta,
    decode_fileset,
    decode_head,
    decode_snapshot,
    encode_delta,
    read_record,
)
from salt_redis_syndic.estate.roster import Delta, Entry
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.sealed import seal

pytestmark = pytest.mark.unit
EPOCH = "0123456789abcdef"


@pytest.fixture
def signers() -> dict[str, Signer]:
    return {dc: Signer(Ed25519PrivateKey.generate()) for dc in ("east", "west")}


@pytest.fixture
def keyring(tmp_path: Path, signers: dict[str, Signer]) -> DcKeyring:
    return DcKeyring(str(tmp_path / "dckeys"), {dc: s.public_pem for dc, s in signers.items()})


def head(dc: str = "east") -> EstateHead:
    return EstateHead(dc=dc, at=1.0, epoch=EPOCH, seq=3, snapshot_seq=1, digest="a" * 32,
                      counts={"accepted": 2}, files={"file_roots": {"base": "b" * 32}}, seen_resolution=60.0)


def test_each_record_round_trips(keyring: DcKeyring, signers: dict[str, Signer]) -> None:
    east = signers["east"]
    assert read_record(seal(head().encode(), east), keyring, "east", decode_head, 1 << 20) == head()
    snap = RosterSnapshot("east", EPOCH, 2, {"m1": Entry("accepted", 5, {"os": "Debian"})})
    assert read_record(seal(snap.encode(), east), keyring, "east", decode_snapshot, 1 << 20) == snap
    delta = Delta(EPOCH, 4, {"m2": Entry("pending")}, ["m1"])
    assert read_record(seal(encode_delta("east", delta), east), keyring, "east", decode_delta, 1 << 20).delta == delta
    files = FileSet("east", 2.0, {"pillar_roots": {"base": {"top.sls": "c" * 64}}})
    assert read_record(seal(files.encode(), east), keyring, "east", decode_fileset, 1 << 20) == files


def test_a_dc_cannot_speak_for_another(keyring: DcKeyring, signers: dict[str, Signer]) -> None:
    with pytest.raises(RejectedEntry) as err:
        read_record(seal(head("west").encode(), signers["east"]), keyring, "west", decode_head, 1 << 20)
    assert err.value.reason == "wrong_dc"
    with pytest.raises(RejectedEntry) as err:
        read_record(seal(head("east").encode(), signers["east"]), keyring, "west", decode_head, 1 << 20)
    assert err.value.reason == "wrong_dc"


def test_unknown_key_tamper_and_junk_are_rejected(keyring: DcKeyring, signers: dict[str, Signer]) -> None:
    stranger = Signer(Ed25519PrivateKey.generate())
    with pytest.raises(RejectedEntry) as err:
        read_record(seal(head().encode(), stranger), keyring, "east", decode_head, 1 << 20)
    assert err.value.reason == "unknown_key"
    sealed = seal(head().encode(), signers["east"])
    with pytest.raises(RejectedEntry) as err:
        read_record(sealed.replace(b"east", b"easT"), keyring, "east", decode_head, 1 << 20)
    assert err.value.reason in ("bad_signature", "malformed")
    with pytest.raises(RejectedEntry) as err:
        read_record(sealed, keyring, "east", decode_head, 16)
    assert err.value.reason == "too_large"


@pytest.mark.parametrize("doc", [
    {"v": 1, "kind": "roster", "dc": "east", "epoch": EPOCH, "seq": 1, "minions": {"m/../x": ["a", None, None]}},
    {"v": 1, "kind": "roster", "dc": "east", "epoch": EPOCH, "seq": 1, "minions": {"m": ["zz", None, None]}},
    {"v": 1, "kind": "roster", "dc": "east", "epoch": "not-hex", "seq": 1, "minions": {}},
    {"v": 1, "kind": "roster", "dc": "east", "epoch": EPOCH, "seq": -1, "minions": {}},
    {"v": 2, "kind": "roster", "dc": "east", "epoch": EPOCH, "seq": 1, "minions": {}},
    {"v": 1, "kind": "estate", "dc": "east", "epoch": EPOCH, "seq": 1, "minions": {}},
])
def test_malformed_snapshots_are_rejected(doc, keyring: DcKeyring, signers: dict[str, Signer]) -> None:
    with pytest.raises(RejectedEntry):
        read_record(seal(pack(doc), signers["east"]), keyring, "east", decode_snapshot, 1 << 20)


def test_malformed_listing_is_rejected(keyring: DcKeyring, signers: dict[str, Signer]) -> None:
    bad = {"v": 1, "kind": "files", "dc": "east", "at": 1.0, "listing": {"file_roots": {"base": {"a.sls": "nothex"}}}}
    with pytest.raises(RejectedEntry):
        read_record(seal(pack(bad), signers["east"]), keyring, "east", decode_fileset, 1 << 20)
