"""Ed25519 keys: creation on disk, loading, verification and key rotation."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from salt_redis_syndic.errors import ConfigError, RejectedEntry
from salt_redis_syndic.security.signing import (
    Signer,
    Verifier,
    key_id,
    load_or_create_signer,
    public_pem,
    write_private_key,
)

pytestmark = pytest.mark.unit

BODY = b"\x85\xa1v\x01some signed body"


@pytest.fixture
def key_path(tmp_path):
    return str(tmp_path / "pki" / "redis_syndic.pem")


def test_first_start_creates_private_key_0600_and_pub_beside(key_path):
    signer = load_or_create_signer(key_path)
    assert os.path.isfile(key_path)
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    pub = os.path.splitext(key_path)[0] + ".pub"
    assert os.path.isfile(pub)
    with open(pub, encoding="ascii") as fh:
        assert fh.read() == signer.public_pem
    assert signer.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    # no temporary file left behind
    assert sorted(os.listdir(os.path.dirname(key_path))) == ["redis_syndic.pem", "redis_syndic.pub"]


def test_existing_key_is_loaded_not_replaced(key_path):
    first = load_or_create_signer(key_path)
    with open(key_path, "rb") as fh:
        before = fh.read()
    second = load_or_create_signer(key_path)
    with open(key_path, "rb") as fh:
        assert fh.read() == before
    assert second.key_id == first.key_id
    assert second.public_pem == first.public_pem
    # and the loaded key produces signatures the first one's public key accepts
    Verifier([first.public_pem]).verify(second.key_id, second.sign(BODY), BODY)


def test_load_without_create_fails_with_config_error(key_path):
    with pytest.raises(ConfigError) as info:
        load_or_create_signer(key_path, create=False)
    assert info.value.option == "signing_key"
    assert not os.path.exists(key_path)


def test_unreadable_key_file_is_a_config_error(tmp_path):
    path = tmp_path / "garbage.pem"
    path.write_bytes(b"not a key")
    with pytest.raises(ConfigError) as info:
        load_or_create_signer(str(path))
    assert info.value.option == "signing_key"


def test_non_ed25519_key_is_refused(tmp_path):
    path = tmp_path / "rsa.pem"
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(rsa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with pytest.raises(ConfigError) as info:
        load_or_create_signer(str(path))
    assert info.value.option == "signing_key"


def test_sign_and_verify_ok(key_path):
    signer = load_or_create_signer(key_path)
    verifier = Verifier([signer.public_pem])
    assert verifier.key_ids == (signer.key_id,)
    verifier.verify(signer.key_id, signer.sign(BODY), BODY)  # does not raise


def test_key_id_is_short_stable_and_distinct():
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    assert key_id(a.public_key()) == key_id(a.public_key())
    assert len(key_id(a.public_key())) == 16
    assert key_id(a.public_key()) != key_id(b.public_key())


def test_signature_from_untrusted_key_is_unknown_key():
    trusted, other = Signer(Ed25519PrivateKey.generate()), Signer(Ed25519PrivateKey.generate())
    verifier = Verifier([trusted.public_pem])
    with pytest.raises(RejectedEntry) as info:
        verifier.verify(other.key_id, other.sign(BODY), BODY)
    assert info.value.reason == "unknown_key"


def test_other_key_claiming_a_trusted_key_id_is_bad_signature():
    trusted, other = Signer(Ed25519PrivateKey.generate()), Signer(Ed25519PrivateKey.generate())
    with pytest.raises(RejectedEntry) as info:
        Verifier([trusted.public_pem]).verify(trusted.key_id, other.sign(BODY), BODY)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("tamper", [
    lambda b: b + b"x",
    lambda b: b[:-1],
    lambda b: bytes([b[0] ^ 1]) + b[1:],
    lambda b: b"",
])
def test_tampered_body_is_bad_signature(tamper):
    signer = Signer(Ed25519PrivateKey.generate())
    signature = signer.sign(BODY)
    with pytest.raises(RejectedEntry) as info:
        Verifier([signer.public_pem]).verify(signer.key_id, signature, tamper(BODY))
    assert info.value.reason == "bad_signature"


def test_tampered_or_truncated_signature_is_bad_signature():
    signer = Signer(Ed25519PrivateKey.generate())
    sig = signer.sign(BODY)
    verifier = Verifier([signer.public_pem])
    for bad in (bytes([sig[0] ^ 0x80]) + sig[1:], sig[:-1], b"", b"\0" * 64):
        with pytest.raises(RejectedEntry) as info:
            verifier.verify(signer.key_id, bad, BODY)
        assert info.value.reason == "bad_signature"


def test_verifier_from_pub_file_path(key_path):
    signer = load_or_create_signer(key_path)
    pub = os.path.splitext(key_path)[0] + ".pub"
    verifier = Verifier([pub])
    assert verifier.key_ids == (signer.key_id,)
    verifier.verify(signer.key_id, signer.sign(BODY), BODY)


def test_verifier_from_pem_string():
    signer = Signer(Ed25519PrivateKey.generate())
    verifier = Verifier([public_pem(signer.public_key)])
    verifier.verify(signer.key_id, signer.sign(BODY), BODY)


def test_several_trusted_keys_allow_rotation(tmp_path):
    old = load_or_create_signer(str(tmp_path / "old.pem"))
    new = Signer(Ed25519PrivateKey.generate())
    retired = Signer(Ed25519PrivateKey.generate())
    verifier = Verifier([str(tmp_path / "old.pub"), new.public_pem])
    assert set(verifier.key_ids) == {old.key_id, new.key_id}
    verifier.verify(old.key_id, old.sign(BODY), BODY)
    verifier.verify(new.key_id, new.sign(BODY), BODY)
    # each key only vouches for its own signatures
    with pytest.raises(RejectedEntry) as info:
        verifier.verify(old.key_id, new.sign(BODY), BODY)
    assert info.value.reason == "bad_signature"
    with pytest.raises(RejectedEntry) as info:
        verifier.verify(retired.key_id, retired.sign(BODY), BODY)
    assert info.value.reason == "unknown_key"


def test_same_key_listed_twice_is_one_key():
    signer = Signer(Ed25519PrivateKey.generate())
    assert Verifier([signer.public_pem, signer.public_pem]).key_ids == (signer.key_id,)


def test_empty_verifier_trusts_nothing():
    signer = Signer(Ed25519PrivateKey.generate())
    with pytest.raises(RejectedEntry) as info:
        Verifier([]).verify(signer.key_id, signer.sign(BODY), BODY)
    assert info.value.reason == "unknown_key"


@pytest.mark.parametrize("spec_kind", ["missing_file", "garbage_pem", "rsa_pem", "private_pem"])
def test_bad_trusted_key_is_config_error(tmp_path, spec_kind):
    if spec_kind == "missing_file":
        spec = str(tmp_path / "nope.pub")
    elif spec_kind == "garbage_pem":
        spec = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    elif spec_kind == "rsa_pem":
        rsa = generate_private_key(public_exponent=65537, key_size=2048).public_key()
        spec = rsa.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    else:
        spec = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ConfigError) as info:
        Verifier([spec])
    assert info.value.option == "trusted_keys"


def test_private_key_pasted_as_trusted_key_is_not_echoed():
    # An easy operator mistake: pasting the MoM's *private* key into a DC's trusted_keys.
    # The error must say what is wrong without printing any of the key into the log.
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    body = "".join(pem.splitlines()[1:-1])
    with pytest.raises(ConfigError) as info:
        Verifier([pem])
    text = str(info.value)
    for start in range(0, len(body) - 8):
        assert body[start:start + 8] not in text


def test_signer_repr_has_no_key_material():
    private = Ed25519PrivateKey.generate()
    signer = Signer(private)
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    pem_body = "".join(pem.splitlines()[1:-1])
    for text in (repr(signer), str(signer)):
        assert signer.key_id in text
        assert raw.hex() not in text
        assert base64.b64encode(raw).decode() not in text
        assert pem_body not in text
        assert "PRIVATE" not in text


def test_write_private_key_replaces_atomically_with_0600(tmp_path):
    path = str(tmp_path / "k.pem")
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    write_private_key(path, first)
    write_private_key(path, second)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_signer(path).key_id == key_id(second.public_key())
    assert sorted(os.listdir(tmp_path)) == ["k.pem", "k.pub"]
