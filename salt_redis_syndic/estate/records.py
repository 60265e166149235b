"""Signed DC -> MoM records of the estate: head, roster snapshot, roster delta, file listing.

Each is sealed with the DC's uplink key (:func:`wire.sealed.seal`) and read on the MoM only
through :func:`read_record`: signature against the DC's accepted key first (``wire.sealed``), then structure,
then "is it really about the DC that signed it".  Anything else raises :class:`RejectedEntry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from ..errors import RejectedEntry
from ..security.names import NAME_RE
from ..wire.codec import (
    MINION_RE,
    VERSION,
    boundary,
    number,
    pack,
    require,
    text,
    versioned,
)
from ..wire.sealed import Keyring, open_sealed
from .drift import KINDS, Listing
from .gitrevs import GIT_KINDS, MARKERS
from .roster import STATES, Delta, Entry, Roster

T = TypeVar("T")
_EPOCH_RE = re.compile(r"^[0-9a-f]{16}\Z")
_DIGEST_RE = re.compile(r"^[0-9a-f]{32}\Z")
_SHA_RE = re.compile(r"^[0-9a-f]{64}\Z")
_ENV_RE = re.compile(r"^[^\x00]{1,255}\Z")
_PATH_RE = re.compile(r"^[^\x00]{1,4096}\Z")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?\Z")  # sha-1 or sha-256 object names


@dataclass(frozen=True)
class EstateHead:
    """A DC's small periodic record: where its roster stands and what its master serves."""

    dc: str
    at: float
    epoch: str
    seq: int
    snapshot_seq: int
    digest: str
    counts: dict[str, int]
    files: dict[str, dict[str, str]]  # {kind: {saltenv: digest}}
    seen_resolution: float = 0.0  # how stale "last seen" may be (the DC's roster_seen_resolution)

    def encode(self) -> bytes:
        return pack({"v": VERSION, "kind": "estate", **self.__dict__})


@dataclass(frozen=True)
class RosterSnapshot:
    dc: str
    epoch: str
    seq: int
    minions: Roster

    def encode(self) -> bytes:
        return pack({"v": VERSION, "kind": "roster", "dc": self.dc, "epoch": self.epoch, "seq": self.seq,
                     "minions": {m: e.wire() for m, e in self.minions.items()}})


def encode_delta(dc: str, delta: Delta) -> bytes:
    return pack({"v": VERSION, "kind": "roster_delta", "dc": dc, "epoch": delta.epoch, "seq": delta.seq,
                 "changed": {m: e.wire() for m, e in delta.changed.items()}, "removed": delta.removed})


@dataclass(frozen=True)
class FileSet:
    dc: str
    at: float
    listing: Listing

    def encode(self) -> bytes:
        return pack({"v": VERSION, "kind": "files", "dc": self.dc, "at": self.at, "listing": self.listing})


def _doc(data: bytes, kind: str, max_bytes: int) -> dict[str, Any]:
    doc = versioned(data, max_bytes)
    require(doc.get("kind") == kind, "malformed", f"not a {kind} record")
    return doc


def _seq(doc: Mapping[str, Any], key: str, minimum: int = 0) -> int:
    value = doc.get(key)
    require(type(value) is int and minimum <= value < 2**53, "malformed", f"{key} must be a whole number")
    return value


def _roster(value: Any) -> Roster:
    require(isinstance(value, dict), "malformed", "minions must be a map")
    out: Roster = {}
    for minion, wire in value.items():
        require(isinstance(minion, str) and bool(MINION_RE.match(minion)), "malformed", "bad minion id")
        try:
            out[minion] = Entry.from_wire(wire)
        except ValueError as err:
            raise RejectedEntry("malformed", str(err)) from None
    return out


def _digests(value: Any) -> dict[str, dict[str, str]]:
    require(isinstance(value, dict), "malformed", "files must be a map")
    out: dict[str, dict[str, str]] = {}
    for kind, envs in value.items():
        require(kind in KINDS and isinstance(envs, dict), "malformed", "files: unknown kind")
        for env, dig in envs.items():
            require(isinstance(env, str) and bool(_ENV_RE.match(env)) and isinstance(dig, str) and bool(_DIGEST_RE.match(dig)),
                     "malformed", "files: bad saltenv digest")
        out[kind] = dict(envs)
    return out


@boundary
def decode_head(data: bytes, max_bytes: int) -> EstateHead:
    doc = _doc(data, "estate", max_bytes)
    counts = doc.get("counts")
    require(isinstance(counts, dict) and set(counts) <= set(STATES)
             and all(type(v) is int and v >= 0 for v in counts.values()), "malformed", "counts")
    digest = text(doc, "digest", _DIGEST_RE)
    return EstateHead(dc=text(doc, "dc", NAME_RE), at=number(doc, "at"), epoch=text(doc, "epoch", _EPOCH_RE),
                      seq=_seq(doc, "seq"), snapshot_seq=_seq(doc, "snapshot_seq", -1), digest=digest,
                      counts=dict(counts), files=_digests(doc.get("files", {})),
                      seen_resolution=number(doc, "seen_resolution") if "seen_resolution" in doc else 0.0)


@boundary
def decode_snapshot(data: bytes, max_bytes: int) -> RosterSnapshot:
    doc = _doc(data, "roster", max_bytes)
    return RosterSnapshot(dc=text(doc, "dc", NAME_RE), epoch=text(doc, "epoch", _EPOCH_RE), seq=_seq(doc, "seq"),
                          minions=_roster(doc.get("minions")))


@dataclass(frozen=True)
class DeltaRecord:
    dc: str
    delta: Delta


@boundary
def decode_delta(data: bytes, max_bytes: int) -> DeltaRecord:
    doc = _doc(data, "roster_delta", max_bytes)
    removed = doc.get("removed")
    require(isinstance(removed, list) and all(isinstance(m, str) and MINION_RE.match(m) for m in removed),
             "malformed", "removed must be a list of minion ids")
    delta = Delta(epoch=text(doc, "epoch", _EPOCH_RE), seq=_seq(doc, "seq", 1), changed=_roster(doc.get("changed")),
                  removed=list(removed))
    return DeltaRecord(dc=text(doc, "dc", NAME_RE), delta=delta)


def _fingerprint_ok(kind: str, value: str) -> bool:
    """A file's sha256, or for a git remote its commit (or why there is none)."""
    if kind in GIT_KINDS:
        return bool(_COMMIT_RE.match(value)) or value in MARKERS
    return bool(_SHA_RE.match(value))


@boundary
def decode_fileset(data: bytes, max_bytes: int) -> FileSet:
    doc = _doc(data, "files", max_bytes)
    listing = doc.get("listing")
    require(isinstance(listing, dict), "malformed", "listing must be a map")
    for kind, envs in listing.items():
        require(kind in KINDS and isinstance(envs, dict), "malformed", "listing: unknown kind")
        for env, files in envs.items():
            require(isinstance(env, str) and bool(_ENV_RE.match(env)) and isinstance(files, dict), "malformed", "listing: saltenv")
            for path, sha in files.items():
                require(isinstance(path, str) and bool(_PATH_RE.match(path)) and isinstance(sha, str) and _fingerprint_ok(kind, sha),
                         "malformed", "listing: bad file entry")
    return FileSet(dc=text(doc, "dc", NAME_RE), at=number(doc, "at"), listing=listing)


def read_record(raw: bytes, keyring: Keyring, dc: str, decode: Callable[[bytes, int], T], max_bytes: int) -> T:
    """A record about ``dc``, only if ``dc``'s accepted key signed it (else :class:`RejectedEntry`)."""
    body, signer_dc = open_sealed(raw, keyring, max_bytes)
    record = decode(body, max_bytes)
    named = getattr(record, "dc", None)
    if signer_dc != dc or named != dc:
        raise RejectedEntry("wrong_dc", f"estate record of {dc!r} names {named!r} and is signed by the key of {signer_dc!r}")
    return record
