"""The trust boundary: what decode_job / decode_batch accept, and what they reject and why."""

from __future__ import annotations

import time

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.security.signing import Signer, Verifier
from salt_redis_syndic.wire.codec import VERSION, pack
from salt_redis_syndic.wire.jobs import LOAD_FIELDS, JobEnvelope, decode_job, encode_job, make_job
from salt_redis_syndic.wire.status import DcStatus, decode_status
from salt_redis_syndic.wire.uplink import Ack, Return, decode_batch, encode_batch, is_trimmed

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
NOW = 1_700_000_000.0
SKEW = 60.0
MAX = 1024 * 1024


@pytest.fixture(scope="module")
def signer():
    return Signer(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def verifier(signer):
    return Verifier([signer.public_pem])


def publish_load(**extra):
    load = {"fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob", "jid": JID, "ret": "", "user": "root"}
    load.update(extra)
    return load


def job(ttl=900.0, now=NOW, **extra):
    return make_job(publish_load(**extra), origin="mom1", ttl=ttl, now=now)


def signed_body(signer, doc):
    """Stream fields for an arbitrary body, validly signed: tests the checks after the signature."""
    body = pack(doc)
    return {b"b": body, b"s": signer.sign(body), b"k": signer.key_id.encode()}


def body_doc(signer, **changes):
    doc = {"v": VERSION, "kind": "job", "jid": JID, "load": publish_load(), "origin": "mom1",
           "issued_at": NOW, "expires_at": NOW + 900, "kid": signer.key_id}
    doc.update(changes)
    return doc


def reason_of(fn, *args, **kwargs) -> str:
    with pytest.raises(RejectedEntry) as info:
        fn(*args, **kwargs)
    return info.value.reason


def decode(fields, verifier, now=NOW, max_bytes=MAX, skew=SKEW):
    return decode_job(fields, verifier, max_bytes, now, skew)


# ------------------------------------------------------------------------------------- jobs


def test_make_job_keeps_only_forwarded_fields():
    j = make_job({**publish_load(), "Minions": ["a"], "_stamp": "x", "metadata": {"k": 1}}, "mom1", 30, now=NOW)
    assert j.jid == JID and j.origin == "mom1"
    assert set(j.load) <= set(LOAD_FIELDS)
    assert "Minions" not in j.load and "_stamp" not in j.load
    assert j.load["metadata"] == {"k": 1}
    assert (j.issued_at, j.expires_at) == (NOW, NOW + 30)


def test_job_round_trip(signer, verifier):
    original = job(metadata={"who": "ops"}, ret_kwargs={"a": 1})
    fields = encode_job(original, signer)
    assert set(fields) == {"b", "s", "k"}
    decoded = decode(fields, verifier)
    assert isinstance(decoded, JobEnvelope)
    assert decoded.jid == original.jid
    assert decoded.load == original.load
    assert decoded.origin == "mom1"
    assert (decoded.issued_at, decoded.expires_at) == (original.issued_at, original.expires_at)
    assert decoded.key_id == signer.key_id
    assert decoded.version == VERSION


def test_round_trip_with_bytes_keys_as_redis_returns_them(signer, verifier):
    fields = {k.encode(): v for k, v in encode_job(job(), signer).items()}
    assert decode(fields, verifier).jid == JID


@pytest.mark.parametrize("drop", ["s", "k"])
def test_unsigned_entry(signer, verifier, drop):
    fields = dict(encode_job(job(), signer))
    del fields[drop]
    assert reason_of(decode, fields, verifier) == "unsigned"


def test_missing_body_is_malformed(signer, verifier):
    fields = dict(encode_job(job(), signer))
    del fields["b"]
    assert reason_of(decode, fields, verifier) == "malformed"


def test_tampered_load_after_signing(signer, verifier):
    fields = dict(encode_job(job(), signer))
    doc = msgpack.unpackb(fields["b"], raw=False)
    doc["load"]["fun"] = "cmd.run"
    doc["load"]["arg"] = ["rm -rf /"]
    fields["b"] = pack(doc)  # same signature, new body
    assert reason_of(decode, fields, verifier) == "bad_signature"


def test_tampered_expiry_after_signing(signer, verifier):
    fields = dict(encode_job(job(), signer))
    doc = msgpack.unpackb(fields["b"], raw=False)
    doc["expires_at"] += 10 ** 6
    fields["b"] = pack(doc)
    assert reason_of(decode, fields, verifier) == "bad_signature"


def test_body_signed_by_another_key(verifier):
    attacker = Signer(Ed25519PrivateKey.generate())
    assert reason_of(decode, encode_job(job(), attacker), verifier) == "unknown_key"


def test_attacker_claiming_the_trusted_key_id(signer, verifier):
    attacker = Signer(Ed25519PrivateKey.generate())
    fields = dict(encode_job(job(), attacker))
    fields["k"] = signer.key_id.encode()
    assert reason_of(decode, fields, verifier) == "bad_signature"


def test_key_id_in_body_must_match_signing_key(signer, verifier):
    other = Signer(Ed25519PrivateKey.generate())
    both = Verifier([signer.public_pem, other.public_pem])
    fields = signed_body(signer, body_doc(signer, kid=other.key_id))
    assert reason_of(decode, fields, both) == "bad_signature"


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_version_mismatch(signer, verifier, version):
    fields = signed_body(signer, body_doc(signer, v=version))
    assert reason_of(decode, fields, verifier) == "bad_version"


def test_future_version_through_the_encoder(signer, verifier):
    fields = encode_job(JobEnvelope(JID, publish_load(), "mom1", NOW, NOW + 60, version=VERSION + 1), signer)
    assert reason_of(decode, fields, verifier) == "bad_version"


def test_unknown_load_keys(signer, verifier):
    fields = signed_body(signer, body_doc(signer, load={**publish_load(), "evil": "x"}))
    assert reason_of(decode, fields, verifier) == "malformed"


def test_load_keys_of_mixed_types_are_rejected_not_a_crash(signer, verifier):
    # found by the fuzz test below: the error detail sorted str and int keys together
    fields = signed_body(signer, body_doc(signer, load={**publish_load(), 0: None, b"x": 1}))
    assert reason_of(decode, fields, verifier) == "malformed"


def test_load_jid_differs_from_envelope_jid(signer, verifier):
    fields = signed_body(signer, body_doc(signer, load=publish_load(jid="20240501123456789099")))
    assert reason_of(decode, fields, verifier) == "malformed"


@pytest.mark.parametrize("changes", [
    {"kind": "batch"},
    {"jid": "not-a-jid"},
    {"jid": "2024"},
    {"origin": "../mom"},
    {"origin": 7},
    {"issued_at": "now"},
    {"issued_at": True},
    {"expires_at": None},
    {"expires_at": NOW - 1},  # expires before it was issued
    {"load": ["fun", "test.ping"]},
    {"load": "test.ping"},
    {"load": None},
])
def test_malformed_signed_bodies(signer, verifier, changes):
    assert reason_of(decode, signed_body(signer, body_doc(signer, **changes)), verifier) == "malformed"


@pytest.mark.parametrize("load_changes", [
    {"fun": 3},
    {"fun": ["test.ping", 3]},
    {"arg": "not-a-list"},
    {"tgt": None},
    {"tgt": ["a", 1]},
    {"tgt_type": ["glob"]},
    {"ret": 5},
    {"metadata": 5},
    {"ret_kwargs": [1]},
])
def test_malformed_load_fields(signer, verifier, load_changes):
    doc = body_doc(signer, load=publish_load(**load_changes))
    assert reason_of(decode, signed_body(signer, doc), verifier) == "malformed"


def test_body_that_is_not_msgpack_but_signed(signer, verifier):
    body = b"\xc1\xc1 not msgpack"
    fields = {b"b": body, b"s": signer.sign(body), b"k": signer.key_id.encode()}
    assert reason_of(decode, fields, verifier) == "malformed"


def test_body_that_is_not_a_map(signer, verifier):
    assert reason_of(decode, signed_body(signer, [1, 2, 3]), verifier) == "malformed"


def test_oversized_entry_is_too_large(signer, verifier):
    fields = encode_job(job(arg=["x" * 5000]), signer)
    assert reason_of(decode, fields, verifier, max_bytes=1024) == "too_large"
    assert decode(fields, verifier, max_bytes=len(fields["b"])).jid == JID  # the limit is inclusive


def test_oversized_unsigned_garbage_is_too_large_before_any_crypto(verifier):
    fields = {b"b": b"\0" * 4096, b"s": b"x", b"k": b"nokey"}
    assert reason_of(decode, fields, verifier, max_bytes=1024) == "too_large"


@pytest.mark.parametrize("fields", [
    b"garbage",
    None,
    ["b", "s", "k"],
    {},
    {b"b": "text, not bytes", b"s": b"x", b"k": b"y"},
    {b"b": b"\xff", b"s": b"x", b"k": b"\xff\xfe"},
])
def test_garbage_entries(verifier, fields):
    assert reason_of(decode, fields, verifier) in ("malformed", "unsigned")


def test_non_ascii_key_id_is_malformed(verifier):
    assert reason_of(decode, {b"b": b"\x80", b"s": b"x" * 64, b"k": b"\xff\xfe"}, verifier) == "malformed"


def test_garbage_bytes_body_with_valid_signature_fields_from_wrong_key(verifier):
    assert reason_of(decode, {b"b": b"\x93\x01", b"s": b"\0" * 64, b"k": b"0123456789abcdef"}, verifier) == "unknown_key"


def test_issued_in_the_future_beyond_skew(signer, verifier):
    fields = encode_job(job(now=NOW + SKEW + 5), signer)
    assert reason_of(decode, fields, verifier, now=NOW) == "from_future"


def test_issued_in_the_future_within_skew_is_fine(signer, verifier):
    fields = encode_job(job(now=NOW + SKEW - 5), signer)
    assert decode(fields, verifier, now=NOW).jid == JID


def test_expired_job_decodes_but_reports_expired(signer, verifier):
    fields = encode_job(job(ttl=30, now=NOW - 1000), signer)
    decoded = decode(fields, verifier, now=NOW)
    assert decoded.jid == JID
    assert decoded.is_expired(NOW, SKEW)


def test_expiry_allows_clock_skew():
    j = job(ttl=30, now=NOW)
    assert not j.is_expired(NOW + 30, SKEW)
    assert not j.is_expired(NOW + 30 + SKEW, SKEW)
    assert j.is_expired(NOW + 30 + SKEW + 0.001, SKEW)
    assert j.is_expired(NOW + 31, 0.0)


# ------------------------------------------------------------------------------------ batches


def wire_ack(dc="east", jid=JID, minions=("m1", "m2"), status="published", **extra):
    return {**Ack(jid, dc, status, list(minions)).to_wire(), **extra}


def wire_ret(minion="m1", dc="east", jid=JID, **load_extra):
    load = {"return": True, "retcode": 0, "success": True, "fun": "test.ping", "id": minion, "jid": jid}
    load.update(load_extra)
    return Return(jid, dc, minion, load).to_wire()


def test_batch_round_trip_with_acks_and_returns():
    raw = encode_batch("east", [wire_ack(), wire_ret("m1"), wire_ret("m2", **{"return": {"big": "x" * 100}})], now=NOW)
    batch = decode_batch(raw, MAX)
    assert batch.dc == "east" and batch.sent_at == NOW
    assert [type(m) for m in batch.messages] == [Ack, Return, Return]
    ack = batch.messages[0]
    assert ack == Ack(JID, "east", "published", ["m1", "m2"], [], "")
    ret = batch.messages[2]
    assert isinstance(ret, Return)
    assert (ret.jid, ret.dc, ret.minion) == (JID, "east", "m2")
    assert ret.load["return"] == {"big": "x" * 100}


def test_empty_batch_is_fine():
    assert decode_batch(encode_batch("east", [], now=NOW), MAX).messages == []


@pytest.mark.parametrize("status", ["published", "expired", "rejected", "failed"])
def test_every_ack_status(status):
    (ack,) = decode_batch(encode_batch("east", [wire_ack(status=status)], now=NOW), MAX).messages
    assert ack.status == status


def test_long_ack_reason_is_cut():
    raw = encode_batch("east", [{**wire_ack(status="failed", minions=()), "reason": "r" * 5000}], now=NOW)
    (ack,) = decode_batch(raw, MAX).messages
    assert ack.reason == "r" * 500


def msg_reason(raw: bytes) -> str:
    """The reason of the single message a batch rejected (the envelope itself is fine)."""
    batch = decode_batch(raw, MAX)
    assert len(batch.rejected) == 1, batch.rejected
    return batch.rejected[0][0].reason


def test_message_naming_another_dc_is_wrong_dc():
    raw = encode_batch("east", [wire_ack(), wire_ret("m1", dc="west")], now=NOW)
    assert msg_reason(raw) == "wrong_dc"
    assert [type(m).__name__ for m in decode_batch(raw, MAX).messages] == ["Ack"]


def test_ack_naming_another_dc_is_wrong_dc():
    assert msg_reason(encode_batch("east", [wire_ack(dc="west")], now=NOW)) == "wrong_dc"


@pytest.mark.parametrize("msg", [
    wire_ret("web/01"),
    wire_ret("..\\web"),
    wire_ret(""),
    wire_ack(minions=("ok", "bad/id")),
    wire_ack(minions=("ok", 3)),
    {**wire_ack(), "missing": ["a/b"]},
    {**wire_ack(), "minions": "m1"},
])
def test_bad_minion_ids(msg):
    assert msg_reason(encode_batch("east", [msg], now=NOW)) == "malformed"


@pytest.mark.parametrize("msg", [
    {**wire_ret("m1"), "load": "not a dict"},
    {**wire_ret("m1"), "load": ["return", True]},
    {**wire_ret("m1"), "load": {"retcode": 0, "id": "m1"}},  # no 'return'
    {**wire_ret("m1"), "load": {"return": 1, "id": "m2"}},  # load claims another minion
    {**wire_ret("m1"), "load": {"return": 1, "jid": "20240501123456789099"}},
    {**wire_ret("m1"), "jid": "bad"},
    {**wire_ret("m1"), "t": "cmd"},
    {**wire_ack(), "status": "done"},
    {**wire_ack(), "status": None},
    {**wire_ack(), "reason": 7},
    "not a message",
    ["t", "ack"],
])
def test_bad_messages(msg):
    assert msg_reason(encode_batch("east", [msg], now=NOW)) == "malformed"


def test_one_bad_message_is_rejected_alone():
    raw = encode_batch("east", [wire_ack(), wire_ret("m1"), wire_ret("bad/one")], now=NOW)
    batch = decode_batch(raw, MAX)
    assert [r.reason for r, _ in batch.rejected] == ["malformed"]
    assert batch.rejected[0][1]["id"] == "bad/one"
    assert [type(m).__name__ for m in batch.messages] == ["Ack", "Return"]


@pytest.mark.parametrize("doc,reason", [
    ({"v": 2, "kind": "batch", "dc": "east", "sent_at": NOW, "msgs": []}, "bad_version"),
    ({"v": VERSION, "kind": "job", "dc": "east", "sent_at": NOW, "msgs": []}, "malformed"),
    ({"v": VERSION, "kind": "batch", "dc": "east/x", "sent_at": NOW, "msgs": []}, "malformed"),
    ({"v": VERSION, "kind": "batch", "dc": "east", "sent_at": "now", "msgs": []}, "malformed"),
    ({"v": VERSION, "kind": "batch", "dc": "east", "sent_at": NOW, "msgs": {}}, "malformed"),
    ({"v": VERSION, "kind": "batch", "dc": "east", "sent_at": NOW}, "malformed"),
    ([1, 2], "malformed"),
])
def test_bad_batch_envelopes(doc, reason):
    assert reason_of(decode_batch, pack(doc), MAX) == reason


@pytest.mark.parametrize("raw", [b"", b"\xc1", b"\x92\x01", b"\x81\xa1v", "a str", None, 42])
def test_garbage_batches(raw):
    assert reason_of(decode_batch, raw, MAX) == "malformed"


def test_oversized_batch():
    raw = encode_batch("east", [wire_ret("m1", **{"return": "x" * 4096})], now=NOW)
    assert reason_of(decode_batch, raw, 1024) == "too_large"


def test_trailing_bytes_after_a_valid_batch():
    raw = encode_batch("east", [wire_ack()], now=NOW) + b"\x00"
    assert reason_of(decode_batch, raw, MAX) == "malformed"


def test_no_pickle_or_code_path():
    # msgpack ext types come back as data, never as objects built by the decoder
    raw = pack({"v": VERSION, "kind": "batch", "dc": "east", "sent_at": NOW,
                "msgs": [msgpack.ExtType(1, b"cos\nsystem\n(S'id'\ntR.")]})
    batch = decode_batch(raw, MAX)
    assert batch.messages == [] and [r.reason for r, _ in batch.rejected] == ["malformed"]


# ------------------------------------------------------------------------------ status record


def test_status_round_trip():
    status = DcStatus("east", NOW, "1-0", "2-0", 1.5, 3, 42, "0.1.0", "dc-east", {"jobs_published": 7})
    assert decode_status(status.encode()) == status


def test_status_rejects_other_records():
    assert reason_of(decode_status, encode_batch("east", [], now=NOW)) == "malformed"


# -------------------------------------------------------------------------------- is_trimmed


@pytest.mark.parametrize("value,expected", [
    ("VALUE_TRIMMED", True),
    ({"return": "VALUE_TRIMMED"}, True),
    ({"a": {"b": {"c": "VALUE_TRIMMED"}}}, True),
    ({"return": "value trimmed"}, False),
    ({"return": ["VALUE_TRIMMED"]}, False),  # dicttrim replaces dict values only
    ({"return": {"x": 1}}, False),
    ("", False),
    (None, False),
    (3, False),
])
def test_is_trimmed(value, expected):
    assert is_trimmed(value) is expected


def test_is_trimmed_custom_marker():
    assert is_trimmed({"r": "CUT"}, marker="CUT")
    assert not is_trimmed({"r": "VALUE_TRIMMED"}, marker="CUT")


# --------------------------------------------------------------------------------------- fuzz


scalars = st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=30) \
    | st.binary(max_size=30)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=4), max_leaves=20)
# database=None: no .hypothesis/ directory in the source tree; failures print their example.
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_rejected(fn, *args):
    try:
        fn(*args)
    except RejectedEntry as rej:
        assert rej.reason and isinstance(rej.reason, str)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_fuzz_decode_batch_arbitrary_bytes(raw):
    _only_rejected(decode_batch, raw, 4096)


@FUZZ
@given(doc=values)
def test_fuzz_decode_batch_arbitrary_documents(doc):
    _only_rejected(decode_batch, pack(doc), MAX)


@FUZZ
@given(msgs=st.lists(st.fixed_dictionaries({"t": st.sampled_from(["ack", "ret", "x"]), "dc": st.just("east"),
                                            "jid": st.just(JID) | st.text(max_size=25)},
                                           optional={"status": values | st.sampled_from(["published", "failed"]),
                                                     "minions": values | st.lists(st.text(max_size=5)),
                                                     "missing": values, "reason": values, "id": values,
                                                     "load": values | st.dictionaries(st.sampled_from(["return", "id", "jid"]), values)}),
                     max_size=4))
def test_fuzz_decode_batch_near_valid_messages(msgs):
    _only_rejected(decode_batch, encode_batch("east", msgs, now=NOW), MAX)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from([b"b", b"s", b"k", "b", "s", "k", b"x"]), scalars, max_size=5))
def test_fuzz_decode_job_arbitrary_fields(verifier, fields):
    _only_rejected(decode_job, fields, verifier, MAX, NOW, SKEW)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_fuzz_decode_job_arbitrary_signed_bytes(signer, verifier, raw):
    _only_rejected(decode_job, {b"b": raw, b"s": signer.sign(raw), b"k": signer.key_id.encode()}, verifier, MAX, NOW, SKEW)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["v", "kind", "jid", "load", "origin", "issued_at", "expires_at", "kid"]),
                               values, max_size=3),
       load_changes=st.dictionaries(st.sampled_from(list(LOAD_FIELDS) + ["zzz"]), values, max_size=3))
def test_fuzz_decode_job_signed_near_valid_documents(signer, verifier, changes, load_changes):
    doc = body_doc(signer, **changes)
    if isinstance(doc.get("load"), dict):
        doc["load"] = {**doc["load"], **load_changes}
    fields = signed_body(signer, doc)
    try:
        decoded = decode_job(fields, verifier, MAX, NOW, SKEW)
    except RejectedEntry:
        return
    # whatever got through is well-typed
    assert isinstance(decoded.load, dict) and set(decoded.load) <= set(LOAD_FIELDS)
    assert decoded.load["jid"] == decoded.jid
    assert isinstance(decoded.issued_at, float) and decoded.issued_at <= NOW + SKEW


def test_wall_clock_default_make_job():
    before = time.time()
    j = make_job(publish_load(), "mom1", ttl=10)
    assert before <= j.issued_at <= time.time()
    assert j.expires_at == pytest.approx(j.issued_at + 10)
