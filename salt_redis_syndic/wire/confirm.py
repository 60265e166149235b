"""Uplink confirmations (MoM -> DC): which numbered batches of a DC a MoM has, signed by the MoM.

The decisions (what to confirm, what to re-send) are in ``returns/confirm.py``; this is the
record and its one reader, :func:`read_confirm`, which verifies before parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RejectedEntry
from ..security.names import NAME_RE
from ..security.signing import Verifier
from .codec import VERSION, boundary, number, pack, require, text, unpack
from .sealed import unseal

MAX_TAKEN = 5000  # seqs listed above done_upto; more is a MoM holding many batches (bounded, not exact)


@dataclass(frozen=True)
class Confirm:
    """What one MoM has of one DC's batches: all of ``1..done_upto``, plus ``taken`` above it."""

    mom: str
    dc: str
    done_upto: int
    max_seen: int
    taken: tuple[int, ...] = ()
    at: float = 0.0  # MoM clock: a newer confirmation has a larger ``at``

    def encode(self) -> bytes:
        return pack({"v": VERSION, "kind": "confirm", "mom": self.mom, "dc": self.dc, "done_upto": self.done_upto,
                     "max_seen": self.max_seen, "taken": list(self.taken), "at": self.at})


def _seq(value: object, what: str) -> int:
    require(type(value) is int and 0 <= value < 2**62, "malformed", f"bad {what}")
    return value  # type: ignore[return-value]


@boundary
def decode_confirm(data: bytes, max_bytes: int = 1024 * 1024) -> Confirm:
    doc = unpack(data, max_bytes)
    require(isinstance(doc, dict) and doc.get("kind") == "confirm", "malformed", "not a confirmation")
    require(doc.get("v") == VERSION, "bad_version", "unsupported confirmation version")
    taken = doc.get("taken")
    require(isinstance(taken, list) and len(taken) <= MAX_TAKEN, "malformed", "taken must be a short list")
    return Confirm(mom=text(doc, "mom", NAME_RE), dc=text(doc, "dc", NAME_RE),
                   done_upto=_seq(doc.get("done_upto"), "done_upto"), max_seen=_seq(doc.get("max_seen"), "max_seen"),
                   taken=tuple(_seq(s, "taken seq") for s in taken), at=number(doc, "at"))


def read_confirm(raw: bytes, verifier: Verifier, mom: str, dc: str) -> Confirm:
    """A confirmation for ``dc`` from ``mom``, only if a trusted MoM key signed it (else RejectedEntry)."""
    body, sig, kid = unseal(raw, 1024 * 1024)
    verifier.verify(kid, sig, body)  # before parsing anything else
    confirm = decode_confirm(body)
    if confirm.mom != mom or confirm.dc != dc:
        raise RejectedEntry("wrong_dc", f"confirmation for {confirm.mom}/{confirm.dc} found under {mom}/{dc}")
    return confirm
