"""Jobs and events going down (MoM -> DC): the signed job stream entries and their one decoder.

A stream entry carries the exact signed body bytes, the signature and the key id (fields
``b``, ``s``, ``k``), so verification needs no canonicalisation step: what was signed is what
is parsed.  :func:`decode_entry` checks size, signature, version, kind and every field, and
decrypts the load when loads are encrypted per DC; failures raise :class:`RejectedEntry`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import RejectedEntry
from ..security.confidential import PayloadKey
from ..security.names import NAME_RE
from ..security.signing import Signer, Verifier
from .codec import (
    JID_RE,
    KEY_ID_RE,
    MAX_SIGNATURE_BYTES,
    TAG_RE,
    VERSION,
    boundary,
    brief,
    names,
    number,
    pack,
    require,
    text,
    unpack,
)
from .sealed import unwrap, wrap

# Fields of the publish load that are forwarded to the DC master's LocalClient.pub.
LOAD_FIELDS = (
    "fun", "arg", "tgt", "tgt_type", "jid", "ret", "user", "to", "metadata", "master_id",
    "auth_list", "delimiter", "ret_config", "ret_kwargs", "module_executors", "executor_opts",
    "start_event", "id",
)


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
    require(isinstance(value, (bytes, bytearray)), "unsigned" if name in ("s", "k") else "malformed", f"missing field {name!r}")
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
    origin = text(doc, "origin", NAME_RE)
    issued_at = number(doc, "issued_at")
    expires_at = number(doc, "expires_at")
    require(issued_at <= now + skew, "from_future", f"issued {issued_at - now:.0f}s in the future")
    raw = doc.get("events")
    require(isinstance(raw, list) and 0 < len(raw) <= MAX_EVENTS_PER_ENTRY, "malformed", "events must be a list")
    events = []
    for item in raw:
        require(isinstance(item, dict) and isinstance(item.get("data"), dict), "malformed", "event must be a map")
        events.append((text(item, "tag", TAG_RE), item["data"]))
    return EventsEnvelope(origin=origin, issued_at=issued_at, expires_at=expires_at, events=events, key_id=kid)


@boundary
def decode_entry(fields: Mapping[Any, Any], verifier: Verifier, max_bytes: int, now: float, skew: float,
                 dc: str | None = None, payload_key: PayloadKey | None = None) -> JobEnvelope | EventsEnvelope:
    """A job stream entry: a job (see :func:`decode_job`) or a batch of events from above."""
    return _decode_entry(fields, verifier, max_bytes, now, skew, dc, payload_key, allow_events=True)


@boundary
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
    require(isinstance(fields, Mapping), "malformed", "entry is not a mapping")
    body = _field(fields, "b")
    require(len(body) <= max_bytes, "too_large", f"{len(body)} bytes > {max_bytes}")
    signature = _field(fields, "s")
    require(len(signature) <= MAX_SIGNATURE_BYTES, "malformed", f"signature of {len(signature)} bytes")
    raw_kid = _field(fields, "k")
    require(len(raw_kid) <= 64, "malformed", f"key id of {len(raw_kid)} bytes")
    try:
        kid = raw_kid.decode("ascii")
    except UnicodeDecodeError:
        raise RejectedEntry("malformed", "key id is not ascii") from None
    require(bool(KEY_ID_RE.match(kid)), "malformed", "key id is not printable")
    verifier.verify(kid, signature, body)
    doc = unpack(body, max_bytes)
    require(isinstance(doc, dict), "malformed", "body is not a map")
    require(type(doc.get("v")) is int and doc.get("v") == VERSION, "bad_version", f"unsupported version {brief(doc.get('v'))}")
    require(doc.get("kid") == kid, "bad_signature", "key id in body differs from the signing key")
    if allow_events and doc.get("kind") == "events":
        return _events_from_doc(doc, kid, now, skew)
    require(doc.get("kind") == "job", "malformed", "not a job")
    jid = text(doc, "jid", JID_RE)
    origin = text(doc, "origin", NAME_RE)
    issued_at = number(doc, "issued_at")
    expires_at = number(doc, "expires_at")
    dcs: tuple[str, ...] | None = None
    if "dcs" in doc:
        raw_dcs = doc.get("dcs")
        require(isinstance(raw_dcs, list) and 0 < len(raw_dcs) <= MAX_DCS, "malformed", "dcs must be a non-empty list")
        dcs = tuple(names(doc, "dcs", NAME_RE))
        if dc is not None and dc not in dcs:
            # Not for this DC: its load is neither decrypted nor parsed (the caller skips the job).
            require(issued_at <= now + skew, "from_future", f"issued {issued_at - now:.0f}s in the future")
            return JobEnvelope(jid=jid, load={}, origin=origin, issued_at=issued_at, expires_at=expires_at,
                               key_id=kid, dcs=dcs)
    if "load_enc" in doc:
        encrypted = doc.get("load_enc")
        require(isinstance(encrypted, dict), "malformed", "load_enc must be a map")
        require(payload_key is not None, "no_payload_key", "the job is encrypted and this DC has no payload_key")
        blob = encrypted.get(dc)
        require(isinstance(blob, bytes), "not_for_this_dc", f"the job carries no load for DC {dc}")
        assert payload_key is not None
        load = unpack(unwrap(payload_key, blob, job_aad(jid, str(dc))), max_bytes)
    else:
        require(payload_key is None, "unencrypted", "payload_key is set but the job's load is in clear")
        load = doc.get("load")
    require(isinstance(load, dict), "malformed", "load must be a map")
    _validate_load(load, jid)
    require(issued_at <= now + skew, "from_future", f"issued {issued_at - now:.0f}s in the future")
    require(expires_at >= issued_at, "malformed", "expires before it was issued")
    # Expiry is the caller's to act on: an expired job is verified, then reported, never run.
    return JobEnvelope(jid=jid, load=load, origin=origin, issued_at=issued_at, expires_at=expires_at, key_id=kid,
                       dcs=dcs)


def _validate_load(load: Mapping[str, Any], jid: str) -> None:
    require(set(load) <= set(LOAD_FIELDS), "malformed", f"unexpected load keys {sorted(map(repr, set(load) - set(LOAD_FIELDS)))}")
    require(load.get("jid") == jid, "malformed", "load jid differs from envelope jid")
    fun = load.get("fun")
    require(isinstance(fun, str) or (isinstance(fun, list) and all(isinstance(f, str) for f in fun)), "malformed", "fun")
    require(isinstance(load.get("arg", []), list), "malformed", "arg must be a list")
    tgt = load.get("tgt")
    require(isinstance(tgt, str) or (isinstance(tgt, list) and all(isinstance(t, str) for t in tgt)), "malformed", "tgt")
    require(isinstance(load.get("tgt_type", "glob"), str), "malformed", "tgt_type")
    require(isinstance(load.get("ret", ""), (str, list)), "malformed", "ret")
    for key in ("metadata", "ret_config", "ret_kwargs", "executor_opts"):
        if key in load:
            require(isinstance(load[key], (dict, str)) or load[key] is None, "malformed", key)
