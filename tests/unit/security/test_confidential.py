"""Payload encryption: jobs and uplink batches readable only with the DC's shared key."""

from __future__ import annotations

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import ConfigError, RejectedEntry
from salt_redis_syndic.security.confidential import generate_key_text, load_payload_key
from salt_redis_syndic.security.signing import Signer, Verifier
from salt_redis_syndic.wire.jobs import decode_job, encode_job, make_job
from salt_redis_syndic.wire.sealed import is_wrapped, unwrap, wrap
from salt_redis_syndic.wire.uplink import batch_aad

pytestmark = pytest.mark.unit

JID = "20261127000000000042"
SECRET = "hunter2-in-a-pillar"


@pytest.fixture
def keys():
    return {dc: load_payload_key(generate_key_text(), "x") for dc in ("east", "west")}


@pytest.fixture
def mom():
    return Signer(Ed25519PrivateKey.generate())


def job_fields(mom, payload_keys):
    load = {"fun": "test.arg", "arg": [{"__kwarg__": True, "pillar": {"pw": SECRET}}], "tgt": "*",
            "tgt_type": "glob", "jid": JID, "ret": "", "user": "root"}
    return encode_job(make_job(load, "mom", 600, now=1000.0), mom, payload_keys)


def decode(fields, mom, dc, key):
    return decode_job(fields, Verifier([mom.public_pem]), 1 << 20, 1000.0, 60, dc=dc, payload_key=key)


def test_encrypted_job_is_readable_by_each_dc_and_nowhere_in_clear(keys, mom):
    fields = job_fields(mom, keys)
    assert SECRET.encode() not in fields["b"]
    for dc in ("east", "west"):
        assert decode(fields, mom, dc, keys[dc]).load["arg"][0]["pillar"]["pw"] == SECRET


@pytest.mark.parametrize("dc,key_of,reason", [
    ("east", "west", "undecryptable"),  # another DC's key
    ("north", "east", "not_for_this_dc"),  # a DC the MoM has no key for
    ("east", None, "no_payload_key"),  # a DC without payload_key
])
def test_encrypted_job_refused_without_the_right_key(keys, mom, dc, key_of, reason):
    with pytest.raises(RejectedEntry) as err:
        decode(job_fields(mom, keys), mom, dc, keys[key_of] if key_of else None)
    assert err.value.reason == reason


def test_a_clear_job_is_refused_by_a_dc_that_expects_encryption(keys, mom):
    with pytest.raises(RejectedEntry) as err:
        decode(job_fields(mom, None), mom, "east", keys["east"])
    assert err.value.reason == "unencrypted"


def test_moving_one_dcs_ciphertext_to_another_fails(keys, mom):
    fields = job_fields(mom, {"east": keys["east"], "west": keys["east"]})  # same key, different AAD
    doc = msgpack.unpackb(fields["b"], raw=False)
    assert unwrap(keys["east"], doc["load_enc"]["west"], f"job:{JID}:west")
    with pytest.raises(RejectedEntry) as err:
        unwrap(keys["east"], doc["load_enc"]["west"], f"job:{JID}:east")
    assert err.value.reason == "undecryptable"


def test_batch_wrap_round_trip_and_tamper(keys):
    body = b"batch body with " + SECRET.encode()
    wrapped = wrap(keys["east"], body, batch_aad("east"))
    assert is_wrapped(wrapped) and SECRET.encode() not in wrapped
    assert unwrap(keys["east"], wrapped, batch_aad("east")) == body
    doc = msgpack.unpackb(wrapped, raw=False)
    doc["c"] = bytes([doc["c"][0] ^ 1]) + doc["c"][1:]
    with pytest.raises(RejectedEntry) as err:
        unwrap(keys["east"], msgpack.packb(doc, use_bin_type=True), batch_aad("east"))
    assert err.value.reason == "undecryptable"
    with pytest.raises(RejectedEntry) as err:
        unwrap(keys["east"], body, batch_aad("east"))
    assert err.value.reason == "unencrypted"


def test_key_config_is_validated_and_hidden(tmp_path):
    key = generate_key_text()
    path = tmp_path / "east.key"
    path.write_text(key + "\n")
    base = {"role": "dc", "dc": "east", "redis_url": "redis://h:1/0", "trusted_keys": [Signer(Ed25519PrivateKey.generate()).public_pem]}
    s = load_settings({"id": "east"}, {**base, "payload_key": str(path)})
    assert key not in repr(s) and str(path) not in repr(s)
    assert load_settings({"id": "mom"}, {"role": "mom", "redis_url": "redis://h:1/0",
                                         "dc_payload_keys": {"east": key}}).dc_payload_keys == (("east", key),)
    for bad, option in (({"payload_key": "c2hvcnQ="}, "payload_key"), ({"payload_key": "not base64!"}, "payload_key"),
                        ({"dc_payload_keys": {"east": "c2hvcnQ="}}, "dc_payload_keys"),
                        ({"dc_payload_keys": ["east"]}, "dc_payload_keys")):
        with pytest.raises(ConfigError) as err:
            load_settings({"id": "east"}, {**base, **bad})
        assert err.value.option == option
        assert "c2hvcnQ" not in str(err.value)
