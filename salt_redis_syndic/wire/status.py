"""DC status records (heartbeats): the record, and its reader on the MoM.

:func:`read_status` unseals, verifies against the DC keyring before parsing, decodes and
checks that the record is about the DC that signed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import RejectedEntry
from ..security.names import NAME_RE
from .codec import VERSION, boundary, count, number, pack, require, text, unpack
from .sealed import Keyring, open_sealed


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


@boundary
def decode_status(data: bytes, max_bytes: int = 1024 * 1024) -> DcStatus:
    doc = unpack(data, max_bytes)
    require(isinstance(doc, dict) and doc.get("kind") == "status", "malformed", "not a status record")
    counters = doc.get("counters", {})
    require(isinstance(counters, dict), "malformed", "counters")
    return DcStatus(
        dc=text(doc, "dc", NAME_RE),
        last_seen=number(doc, "last_seen"),
        cursor=text(doc, "cursor"),
        stream_last_id=text(doc, "stream_last_id"),
        lag_seconds=number(doc, "lag_seconds"),
        spool_depth=int(number(doc, "spool_depth")),
        minion_count=int(number(doc, "minion_count")),
        version=text(doc, "version"),
        master_id=text(doc, "master_id"),
        counters={str(k)[:64]: v for k, v in list(counters.items())[:256] if count(v)},
        spool_warn_depth=int(number(doc, "spool_warn_depth")) if "spool_warn_depth" in doc else 0,
        spool_growing=doc.get("spool_growing") is True,
    )


def read_status(raw: bytes, keyring: Keyring, dc: str, max_bytes: int = 1024 * 1024) -> DcStatus:
    """A DC status record, only if the DC's accepted key signed it (else RejectedEntry)."""
    body, signer_dc = open_sealed(raw, keyring, max_bytes)
    status = decode_status(body, max_bytes)
    if signer_dc != dc or status.dc != dc:
        raise RejectedEntry("wrong_dc", f"status of {dc!r} signed by the key of {signer_dc!r}")
    return status
