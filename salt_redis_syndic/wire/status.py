"""DC status records (heartbeats): the record, and its reader on the MoM.

:func:`registered_dcs` lists the DCs whose records to read (the names in ``<ns>:dcs``, any
other member skipped); :func:`read_status` unseals, verifies against the DC keyring before
parsing, decodes and checks that the record is about the DC that signed it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import RejectedEntry
from ..runtime import Counters, RateLimitedLog
from ..security.names import NAME_RE
from ..transport.keys import Keys
from ..transport.registry import DcSet
from .codec import VERSION, boundary, count, number, pack, require, text, unpack
from .dcnames import read_names
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


BAD_NAME_COUNTER = "rejected_bad_dc_name"


def registered_dcs(client: Any, keys: Keys, counters: Counters | None = None,
                   rl: RateLimitedLog | None = None) -> list[str]:
    """The DC names in ``<ns>:dcs``; other members are counted (``rejected_bad_dc_name``) and
    reported by one rate-limited warning (``rl``), never decoded or used."""
    names, rejected = read_names(DcSet(client, keys.dcs).members())
    if rejected:
        if counters is not None:
            counters.inc(BAD_NAME_COUNTER, rejected)
        if rl is not None:
            rl.log(logging.WARNING, "bad-dc-names", "redis_syndic: %d member(s) of %s are not DC names (a Redis writer "
                   "added them); ignored. Remove them with SREM and check who may write to Redis", rejected, keys.dcs)
    return names
