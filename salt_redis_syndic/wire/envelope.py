"""Versioned records that cross Redis, and the one place they are decoded and validated.

Everything read from Redis is hostile until it has passed a ``decode_*`` function here:
sizes are bounded before parsing, msgpack is the only format (never pickle, never eval),
and every field is type-checked.  Failures raise :class:`RejectedEntry` with a short reason.

Jobs are signed: the stream entry carries the exact signed body bytes, the signature and the
key id, so verification needs no canonicalisation step (what was signed is what is parsed).
"""

from __future__ import annotations

import functools
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

import msgpack

from ..errors import RejectedEntry
from ..security.confidential import PayloadKey, unwrap, wrap
from ..security.signing import Signer, Verifier

T = TypeVar("T")
VERSION = 1
# ASCII-only and anchored with \Z: ``$`` would accept a trailing newline, ``\d`` any Unicode digit.
JID_RE = re.compile(r"^[0-9]{20}[0-9A-Za-z_]{0,24}\Z", re.ASCII)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z", re.ASCII)
# Salt minion ids: anything printable without path separators or NUL (salt.utils.verify.valid_id).
MINION_RE = re.compile(r"^[^/\\\x00]{1,255}\Z")

# Fields of the publish load that are forwarded to the DC master's LocalClient.pub.
LOAD_FIELDS = (
    "fun", "arg", "tgt", "tgt_type", "jid", "ret", "user", "to", "metadata", "master_id",
    "auth_list", "delimiter", "ret_config", "ret_kwargs", "module_executors", "executor_opts",
    "start_event", "id",
)


def is_trimmed(value: Any, marker: str = "VALUE_TRIMMED") -> bool:
    """True if Salt's ``dicttrim`` replaced any value of an event (events over ``max_event_size``)."""
    if isinstance(value, str):
        return value == marker
    if isinstance(value, dict):
        return any(is_trimmed(v, marker) for v in value.values())
    return False


def _default(obj: Any) -> Any:
    """msgpack fallback for the odd non-msgpack type in a return (sets, bytes-likes...)."""
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, default=_default)


def unpack(data: bytes, max_bytes: int) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise RejectedEntry("malformed", "entry is not bytes")
    if len(data) > max_bytes:
        raise RejectedEntry("too_large", f"{len(data)} bytes > {max_bytes}")
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True
        )
    except Exception as err:  # msgpack raises several unrelated types
        raise RejectedEntry("malformed", f"not msgpack: {err.__class__.__name__}") from None


def _require(cond: bool, reason: str, detail: str) -> None:
    if not cond:
        raise RejectedEntry(reason, detail)


def _str(d: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = d.get(key)
    _require(isinstance(value, str), "malformed", f"{key} must be a string")
    if pattern is not None:
        _require(bool(pattern.match(value)), "malformed", f"{key} has an invalid value")
    return value


def _num(d: Mapping[str, Any], key: str) -> float:
    value = d.get(key)
    _require(isinstance(value, (int, float)) and not isinstance(value, bool), "malformed", f"{key} must be a number")
    _require(math.isfinite(value) and abs(value) < 1e15, "malformed", f"{key} is out of range")
    return float(value)


def _count(value: Any) -> bool:
    """A plausible counter: a non-negative int below 2**53 (no bools, NaN or infinities)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def _brief(value: Any) -> str:
    """What to say about a rejected value: never its full repr (it may be huge or deeply nested)."""
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40])
    return type(value).__name__


def _boundary(fn: Callable[..., T]) -> Callable[..., T]:
    """Anything but RejectedEntry raised while decoding hostile input becomes RejectedEntry."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except RejectedEntry:
            raise
        except Exception as err:  # RecursionError, OverflowError, ... from a crafted input
            raise RejectedEntry("malformed", f"undecodable ({err.__class__.__name__})") from None

    return wrapper


def _str_list(d: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> list[str]:
    value = d.get(key, [])
    _require(isinstance(value, list), "malformed", f"{key} must be a list")
    for item in value:
        _require(isinstance(item, str) and bool(pattern.match(item)), "malformed", f"{key} has an invalid item")
    return value


# --------------------------------------------------------------------------- jobs (MoM -> DC)


@dataclass(frozen=True)
class JobEnvelope:
    """One job as the MoM published it, plus where it came from and when it stops being valid."""

    jid: str
    load: dict[str, Any]
    origin: str
    issued_at: float
    expires_at: float
    key_id: str = ""
    version: int = VERSION
    # The DCs this job is addressed to (signed); None: every DC (and every envelope older than the field).
    dcs: tuple[str, ...] | None = None

    def is_expired(self, now: float, skew: float) -> bool:
        return now > self.expires_at + skew

    def addressed_to(self, dc: str) -> bool:
        return self.dcs is None or dc in self.dcs


MAX_DCS = 1000


def make_job(load: Mapping[str, Any], origin: str, ttl: float, now: float | None = None,
             dcs: tuple[str, ...] | None = None) -> JobEnvelope:
    """Wrap the MoM publish load, keeping only the fields a DC master needs."""
    now = time.time() if now is None else now
    clean = {k: load[k] for k in LOAD_FIELDS if k in load}
    return JobEnvelope(jid=str(load["jid"]), load=clean, origin=origin, issued_at=now, expires_at=now + ttl, dcs=dcs)


def job_aad(jid: str, dc: str) -> str:
    """Associated data binding an encrypted load to its job and its DC (no cut-and-paste)."""
    return f"job:{jid}:{dc}"


def encode_job(job: JobEnvelope, signer: Signer,
               payload_keys: Mapping[str, PayloadKey] | None = None) -> dict[str, bytes]:
    """Stream entry fields: ``b`` signed body, ``s`` signature, ``k`` key id.

    With ``payload_keys`` ({dc: key}) the load travels only encrypted, once per DC
    (``load_enc``); DCs without a key cannot read the job.
    """
    doc: dict[str, Any] = {
        "v": job.version,
        "kind": "job",
        "jid": job.jid,
        "origin": job.origin,
        "issued_at": job.issued_at,
        "expires_at": job.expires_at,
        "kid": signer.key_id,
    }
    if job.dcs is not None:
        doc["dcs"] = list(job.dcs)
    if payload_keys:
        plain = pack(job.load)
        doc["load_enc"] = {dc: wrap(key, plain, job_aad(job.jid, dc)) for dc, key in payload_keys.items()
                           if job.addressed_to(dc)}
    else:
        doc["load"] = job.load
    body = pack(doc)
    return {"b": body, "s": signer.sign(body), "k": signer.key_id.encode()}


def _field(fields: Mapping[Any, Any], name: str) -> bytes:
    value = fields.get(name.encode(), fields.get(name))
    _require(isinstance(value, (bytes, bytearray)), "unsigned" if name in ("s", "k") else "malformed", f"missing field {name!r}")
    return bytes(value)


@dataclass(frozen=True)
class EventsEnvelope:
    """MoM bus events forwarded down to every DC (``forward_events_down``), signed like jobs."""

    origin: str
    issued_at: float
    expires_at: float
    events: list[tuple[str, dict[str, Any]]]
    key_id: str = ""


MAX_EVENTS_PER_ENTRY = 500


def encode_events(origin: str, events: list[tuple[str, dict[str, Any]]], signer: Signer, ttl: float,
                  now: float | None = None) -> dict[str, bytes]:
    """One stream entry carrying a batch of events (same fields and signature as a job)."""
    now = time.time() if now is None else now
    body = pack({"v": VERSION, "kind": "events", "origin": origin, "issued_at": now, "expires_at": now + ttl,
                 "kid": signer.key_id, "events": [{"tag": tag, "data": data} for tag, data in events]})
    return {"b": body, "s": signer.sign(body), "k": signer.key_id.encode()}


def _events_from_doc(doc: Mapping[str, Any], kid: str, now: float, skew: float) -> EventsEnvelope:
    origin = _str(doc, "origin", NAME_RE)
    issued_at = _num(doc, "issued_at")
    expires_at = _num(doc, "expires_at")
    _require(issued_at <= now + skew, "from_future", f"issued {issued_at - now:.0f}s in the future")
    raw = doc.get("events")
    _require(isinstance(raw, list) and 0 < len(raw) <= MAX_EVENTS_PER_ENTRY, "malformed", "events must be a list")
    events = []
    for item in raw:
        _require(isinstance(item, dict) and isinstance(item.get("data"), dict), "malformed", "event must be a map")
        events.append((_str(item, "tag", TAG_RE), item["data"]))
    return EventsEnvelope(origin=origin, issued_at=issued_at, expires_at=expires_at, events=events, key_id=kid)


@_boundary
def decode_entry(fields: Mapping[Any, Any], verifier: Verifier, max_bytes: int, now: float, skew: float,
                 dc: str | None = None, payload_key: PayloadKey | None = None) -> JobEnvelope | EventsEnvelope:
    """A job stream entry: a job (see :func:`decode_job`) or a batch of events from above."""
    return _decode_entry(fields, verifier, max_bytes, now, skew, dc, payload_key, allow_events=True)


@_boundary
def decode_job(fields: Mapping[Any, Any], verifier: Verifier, max_bytes: int, now: float, skew: float,
               dc: str | None = None, payload_key: PayloadKey | None = None) -> JobEnvelope:
    """Verify and decode a job stream entry.  Signature first, then structure, then issue time.

    ``dc``/``payload_key``: this DC's name and shared key when loads are encrypted.
    """
    job = _decode_entry(fields, verifier, max_bytes, now, skew, dc, payload_key, allow_events=False)
    assert isinstance(job, JobEnvelope)
    return job


def _decode_entry(fields: Mapping[Any, Any], verifier: Verifier, max_bytes: int, now: float, skew: float,
                  dc: str | None, payload_key: PayloadKey | None, allow_events: bool) -> JobEnvelope | EventsEnvelope:
    _require(isinstance(fields, Mapping), "malformed", "entry is not a mapping")
    body = _field(fields, "b")
    _require(len(body) <= max_bytes, "too_large", f"{len(body)} bytes > {max_bytes}")
    signature = _field(fields, "s")
    try:
        kid = _field(fields, "k").decode("ascii")
    except UnicodeDecodeError:
        raise RejectedEntry("malformed", "key id is not ascii") from None
    verifier.verify(kid, signature, body)
    doc = unpack(body, max_bytes)
    _require(isinstance(doc, dict), "malformed", "body is not a map")
    _require(type(doc.get("v")) is int and doc.get("v") == VERSION, "bad_version", f"unsupported version {_brief(doc.get('v'))}")
    _require(doc.get("kid") == kid, "bad_signature", "key id in body differs from the signing key")
    if allow_events and doc.get("kind") == "events":
        return _events_from_doc(doc, kid, now, skew)
    _require(doc.get("kind") == "job", "malformed", "not a job")
    jid = _str(doc, "jid", JID_RE)
    origin = _str(doc, "origin", NAME_RE)
    issued_at = _num(doc, "issued_at")
    expires_at = _num(doc, "expires_at")
    dcs: tuple[str, ...] | None = None
    if "dcs" in doc:
        raw_dcs = doc.get("dcs")
        _require(isinstance(raw_dcs, list) and 0 < len(raw_dcs) <= MAX_DCS, "malformed", "dcs must be a non-empty list")
        dcs = tuple(_str_list(doc, "dcs", NAME_RE))
        if dc is not None and dc not in dcs:
            # Not for this DC: its load is neither decrypted nor parsed (the caller skips the job).
            _require(issued_at <= now + skew, "from_future", f"issued {issued_at - now:.0f}s in the future")
            return JobEnvelope(jid=jid, load={}, origin=origin, issued_at=issued_at, expires_at=expires_at,
                               key_id=kid, dcs=dcs)
    if "load_enc" in doc:
        encrypted = doc.get("load_enc")
        _require(isinstance(encrypted, dict), "malformed", "load_enc must be a map")
        _require(payload_key is not None, "no_payload_key", "the job is encrypted and this DC has no payload_key")
        blob = encrypted.get(dc)
        _require(isinstance(blob, bytes), "not_for_this_dc", f"the job carries no load for DC {dc}")
        assert payload_key is not None
        load = unpack(unwrap(payload_key, blob, job_aad(jid, str(dc))), max_bytes)
    else:
        _require(payload_key is None, "unencrypted", "payload_key is set but the job's load is in clear")
        load = doc.get("load")
    _require(isinstance(load, dict), "malformed", "load must be a map")
    _validate_load(load, jid)
    _require(issued_at <= now + skew, "from_future", f"issued {issued_at - now:.0f}s in the future")
    _require(expires_at >= issued_at, "malformed", "expires before it was issued")
    # Expiry is the caller's to act on: an expired job is verified, then reported, never run.
    return JobEnvelope(jid=jid, load=load, origin=origin, issued_at=issued_at, expires_at=expires_at, key_id=kid,
                       dcs=dcs)


def _validate_load(load: Mapping[str, Any], jid: str) -> None:
    _require(set(load) <= set(LOAD_FIELDS), "malformed", f"unexpected load keys {sorted(map(repr, set(load) - set(LOAD_FIELDS)))}")
    _require(load.get("jid") == jid, "malformed", "load jid differs from envelope jid")
    fun = load.get("fun")
    _require(isinstance(fun, str) or (isinstance(fun, list) and all(isinstance(f, str) for f in fun)), "malformed", "fun")
    _require(isinstance(load.get("arg", []), list), "malformed", "arg must be a list")
    tgt = load.get("tgt")
    _require(isinstance(tgt, str) or (isinstance(tgt, list) and all(isinstance(t, str) for t in tgt)), "malformed", "tgt")
    _require(isinstance(load.get("tgt_type", "glob"), str), "malformed", "tgt_type")
    _require(isinstance(load.get("ret", ""), (str, list)), "malformed", "ret")
    for key in ("metadata", "ret_config", "ret_kwargs", "executor_opts"):
        if key in load:
            _require(isinstance(load[key], (dict, str)) or load[key] is None, "malformed", key)


# ------------------------------------------------------------------ sealed records (DC -> MoM)


def seal(body: bytes, signer: Signer) -> bytes:
    """Wrap ``body`` with its signature and key id: what a DC writes to Redis."""
    return pack({"b": body, "s": signer.sign(body), "k": signer.key_id})


@_boundary
def unseal(data: bytes, max_bytes: int) -> tuple[bytes, bytes, str]:
    """``(body, signature, key_id)`` of a sealed record; the caller verifies before parsing ``body``."""
    doc = unpack(data, max_bytes)
    _require(isinstance(doc, dict), "unsigned", "not a sealed record")
    body, sig, kid = doc.get("b"), doc.get("s"), doc.get("k")
    _require(isinstance(body, bytes) and isinstance(sig, bytes) and isinstance(kid, str), "unsigned",
             "record carries no body, signature and key id")
    return body, sig, kid


# ------------------------------------------------------------------ uplink (DC -> MoM)

ACK_STATUSES = ("published", "expired", "rejected", "failed", "refused", "skipped")


@dataclass(frozen=True)
class Ack:
    """Which of its minions a DC targeted for a job (or why it did not run it)."""

    jid: str
    dc: str
    status: str
    minions: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reason: str = ""
    # Three tiers: a middle master's ack says more minions follow (``more``), and later acks
    # extend its list (``ext``) with the minions of the DCs below it.
    ext: bool = False
    more: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire = {"t": "ack", "jid": self.jid, "dc": self.dc, "status": self.status,
                "minions": self.minions, "missing": self.missing, "reason": self.reason}
        for flag in ("ext", "more"):
            if getattr(self, flag):
                wire[flag] = True
        return wire


@dataclass(frozen=True)
class Return:
    """One minion's return, whole, as the DC master stored it."""

    jid: str
    dc: str
    minion: str
    load: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"t": "ret", "jid": self.jid, "dc": self.dc, "id": self.minion, "load": self.load}


# Forwarded event tags: printable, no NUL or control characters, bounded.
TAG_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,512}\Z")


@dataclass(frozen=True)
class Event:
    """An event fired on a DC master's bus that the DC forwards to its MoM(s) (``forward_events``)."""

    dc: str
    tag: str
    data: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"t": "ev", "dc": self.dc, "tag": self.tag, "data": self.data}


UplinkMessage = Ack | Return | Event


@dataclass(frozen=True)
class UplinkBatch:
    """A decoded uplink item.  Bad messages are kept apart so one cannot sink the others."""

    dc: str
    sent_at: float
    messages: list[UplinkMessage]
    rejected: list[tuple[RejectedEntry, Any]] = field(default_factory=list)
    seq: int | None = None  # the DC's batch number for this MoM (None: a DC older than confirmations)


def encode_batch(dc: str, wire_messages: list[dict[str, Any]], now: float | None = None, seq: int | None = None) -> bytes:
    """Pack already-wire-form messages (as spooled) into one list item, numbered ``seq`` per MoM."""
    doc: dict[str, Any] = {"v": VERSION, "kind": "batch", "dc": dc, "sent_at": time.time() if now is None else now,
                           "msgs": wire_messages}
    if seq is not None:
        doc["seq"] = seq
    return pack(doc)


@_boundary
def _decode_message(msg: Any, dc: str) -> UplinkMessage:
    _require(isinstance(msg, dict), "malformed", "message is not a map")
    _require(msg.get("dc") == dc, "wrong_dc", "message names another DC than its batch")
    kind = msg.get("t")
    if kind == "ev":  # not bound to a job
        data = msg.get("data")
        _require(isinstance(data, dict), "malformed", "event data must be a map")
        return Event(dc=dc, tag=_str(msg, "tag", TAG_RE), data=data)
    jid = _str(msg, "jid", JID_RE)
    if kind == "ack":
        status = _str(msg, "status")
        _require(status in ACK_STATUSES, "malformed", f"unknown ack status {status!r}")
        reason = msg.get("reason", "")
        _require(isinstance(reason, str), "malformed", "reason")
        ext, more = msg.get("ext", False), msg.get("more", False)
        _require(isinstance(ext, bool) and isinstance(more, bool), "malformed", "ext and more must be booleans")
        _require(not ext or status == "published", "malformed", "only a published ack can be extended")
        return Ack(jid=jid, dc=dc, status=status, minions=_str_list(msg, "minions", MINION_RE),
                   missing=_str_list(msg, "missing", MINION_RE), reason=reason[:500], ext=ext, more=more)
    if kind == "ret":
        minion = _str(msg, "id", MINION_RE)
        load = msg.get("load")
        _require(isinstance(load, dict), "malformed", "return load must be a map")
        _require("return" in load, "malformed", "return load has no 'return'")
        _require(load.get("id", minion) == minion and load.get("jid", jid) == jid, "malformed", "return load ids differ")
        return Return(jid=jid, dc=dc, minion=minion, load=load)
    raise RejectedEntry("malformed", f"unknown message type {_brief(kind)}")


@_boundary
def decode_batch(data: bytes, max_bytes: int) -> UplinkBatch:
    """Decode one uplink list item.

    A bad envelope (not msgpack, wrong version, no DC name) rejects the whole item; a bad
    message inside a good envelope is rejected alone and listed in ``rejected``.
    """
    doc = unpack(data, max_bytes)
    _require(isinstance(doc, dict), "malformed", "batch is not a map")
    _require(type(doc.get("v")) is int and doc.get("v") == VERSION, "bad_version", f"unsupported version {_brief(doc.get('v'))}")
    _require(doc.get("kind") == "batch", "malformed", "not a batch")
    dc = _str(doc, "dc", NAME_RE)
    sent_at = _num(doc, "sent_at")
    msgs = doc.get("msgs")
    _require(isinstance(msgs, list), "malformed", "msgs must be a list")
    seq = doc.get("seq")
    _require(seq is None or (type(seq) is int and 0 < seq < 2**62), "malformed", f"bad batch seq {_brief(seq)}")
    batch = UplinkBatch(dc=dc, sent_at=sent_at, messages=[], seq=seq)
    for raw in msgs:
        try:
            batch.messages.append(_decode_message(raw, dc))
        except RejectedEntry as rej:
            batch.rejected.append((rej, raw))
    return batch


# ------------------------------------------------------------------ DC status record


@dataclass(frozen=True)
class DcStatus:
    """Heartbeat a DC engine writes; the MoM tells a slow DC from a dead one with it."""

    dc: str
    last_seen: float
    cursor: str
    stream_last_id: str
    lag_seconds: float
    spool_depth: int
    minion_count: int
    version: str
    master_id: str
    counters: dict[str, int] = field(default_factory=dict)
    spool_warn_depth: int = 0  # 0: unknown (a DC older than this field)
    spool_growing: bool = False

    def encode(self) -> bytes:
        return pack({"v": VERSION, "kind": "status", **self.__dict__})


@_boundary
def decode_status(data: bytes, max_bytes: int = 1024 * 1024) -> DcStatus:
    doc = unpack(data, max_bytes)
    _require(isinstance(doc, dict) and doc.get("kind") == "status", "malformed", "not a status record")
    counters = doc.get("counters", {})
    _require(isinstance(counters, dict), "malformed", "counters")
    return DcStatus(
        dc=_str(doc, "dc", NAME_RE),
        last_seen=_num(doc, "last_seen"),
        cursor=_str(doc, "cursor"),
        stream_last_id=_str(doc, "stream_last_id"),
        lag_seconds=_num(doc, "lag_seconds"),
        spool_depth=int(_num(doc, "spool_depth")),
        minion_count=int(_num(doc, "minion_count")),
        version=_str(doc, "version"),
        master_id=_str(doc, "master_id"),
        counters={str(k)[:64]: v for k, v in list(counters.items())[:256] if _count(v)},
        spool_warn_depth=int(_num(doc, "spool_warn_depth")) if "spool_warn_depth" in doc else 0,
        spool_growing=doc.get("spool_growing") is True,
    )
