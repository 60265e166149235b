"""Acks, returns and events going up (DC -> MoM): uplink batches and their one reader.

A DC spools each message in its wire form (``to_wire``), the shipper packs them into numbered
batches (:func:`encode_batch`), optionally encrypted and always sealed with the DC's uplink
key.  On the MoM, :func:`read_batch` is the only way in: signature against the DC's accepted
key before parsing, decryption, structure, and "is it the DC that signed it".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import RejectedEntry
from ..security.confidential import PayloadKey
from ..security.names import NAME_RE
from .codec import (
    JID_RE,
    MINION_RE,
    TAG_RE,
    VERSION,
    boundary,
    brief,
    names,
    number,
    pack,
    require,
    text,
    versioned,
)
from .sealed import Keyring, is_wrapped, open_sealed, unwrap
from .subjobs import SUB_RE


def is_trimmed(value: Any, marker: str = "VALUE_TRIMMED") -> bool:
    """True if Salt's ``dicttrim`` replaced any value of an event (events over ``max_event_size``)."""
    if isinstance(value, str):
        return value == marker
    if isinstance(value, dict):
        return any(is_trimmed(v, marker) for v in value.values())
    return False


def batch_aad(dc: str) -> str:
    """Associated data binding an encrypted batch to the DC that sent it."""
    return f"batch:{dc}"


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
    # The sub-job acknowledged (batch mode: several under one jid, see subjobs); '' the whole jid.
    sub: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire = {"t": "ack", "jid": self.jid, "dc": self.dc, "status": self.status,
                "minions": self.minions, "missing": self.missing, "reason": self.reason}
        for flag in ("ext", "more"):
            if getattr(self, flag):
                wire[flag] = True
        if self.sub:
            wire["sub"] = self.sub
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


@boundary
def _decode_message(msg: Any, dc: str) -> UplinkMessage:
    require(isinstance(msg, dict), "malformed", "message is not a map")
    require(msg.get("dc") == dc, "wrong_dc", "message names another DC than its batch")
    kind = msg.get("t")
    if kind == "ev":  # not bound to a job
        data = msg.get("data")
        require(isinstance(data, dict), "malformed", "event data must be a map")
        return Event(dc=dc, tag=text(msg, "tag", TAG_RE), data=data)
    jid = text(msg, "jid", JID_RE)
    if kind == "ack":
        status = text(msg, "status")
        require(status in ACK_STATUSES, "malformed", f"unknown ack status {status!r}")
        reason = msg.get("reason", "")
        require(isinstance(reason, str), "malformed", "reason")
        ext, more = msg.get("ext", False), msg.get("more", False)
        require(isinstance(ext, bool) and isinstance(more, bool), "malformed", "ext and more must be booleans")
        require(not ext or status == "published", "malformed", "only a published ack can be extended")
        sub = msg.get("sub", "")
        require(sub == "" or (isinstance(sub, str) and bool(SUB_RE.match(sub))), "malformed", "sub must be a sub-job digest")
        return Ack(jid=jid, dc=dc, status=status, minions=names(msg, "minions", MINION_RE),
                   missing=names(msg, "missing", MINION_RE), reason=reason[:500], ext=ext, more=more, sub=sub)
    if kind == "ret":
        minion = text(msg, "id", MINION_RE)
        load = msg.get("load")
        require(isinstance(load, dict), "malformed", "return load must be a map")
        require("return" in load, "malformed", "return load has no 'return'")
        require(load.get("id", minion) == minion and load.get("jid", jid) == jid, "malformed", "return load ids differ")
        return Return(jid=jid, dc=dc, minion=minion, load=load)
    raise RejectedEntry("malformed", f"unknown message type {brief(kind)}")


@boundary
def decode_batch(data: bytes, max_bytes: int) -> UplinkBatch:
    """Decode one uplink list item.

    A bad envelope (not msgpack, wrong version, no DC name) rejects the whole item; a bad
    message inside a good envelope is rejected alone and listed in ``rejected``.
    """
    doc = versioned(data, max_bytes, "batch")
    require(doc.get("kind") == "batch", "malformed", "not a batch")
    dc = text(doc, "dc", NAME_RE)
    sent_at = number(doc, "sent_at")
    msgs = doc.get("msgs")
    require(isinstance(msgs, list), "malformed", "msgs must be a list")
    seq = doc.get("seq")
    require(seq is None or (type(seq) is int and 0 < seq < 2**62), "malformed", f"bad batch seq {brief(seq)}")
    batch = UplinkBatch(dc=dc, sent_at=sent_at, messages=[], seq=seq)
    for raw in msgs:
        try:
            batch.messages.append(_decode_message(raw, dc))
        except RejectedEntry as rej:
            batch.rejected.append((rej, raw))
    return batch


def read_batch(raw: bytes, keyring: Keyring, payload_keys: Mapping[str, PayloadKey], max_bytes: int) -> UplinkBatch:
    """One uplink list item, as the MoM takes it from Redis; RejectedEntry rejects the whole item.

    The seal is checked against the DC keyring before anything else is parsed; the body is
    decrypted when ``payload_keys`` has the signing DC (and refused when it is encrypted and
    there is no key); the batch must name the DC that signed it.
    """
    body, signer_dc = open_sealed(raw, keyring, max_bytes)
    key = payload_keys.get(signer_dc)
    if key is not None:
        body = unwrap(key, body, batch_aad(signer_dc))
    elif is_wrapped(body):
        raise RejectedEntry("no_payload_key", f"DC {signer_dc} encrypts its uplink; set dc_payload_keys:{signer_dc}")
    batch = decode_batch(body, max_bytes)
    if batch.dc != signer_dc:
        raise RejectedEntry("wrong_dc", f"batch names DC {batch.dc!r} but is signed by {signer_dc!r}")
    return batch
