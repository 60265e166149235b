"""The one codec: msgpack with a size bound, and the field checkers every decoder uses.

Everything read from Redis is hostile until a ``decode_*`` / ``read_*`` function of ``wire``
has passed it: sizes are bounded before parsing, msgpack is the only format (never pickle,
never eval), and every field is type-checked.  Failures raise :class:`RejectedEntry` with a
short reason.  :func:`unpack_local` is for the files a master wrote itself (spool, dead
letters, estate caches), which are trusted as much as the master's disk.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Callable, Mapping, TypeVar

import msgpack

from ..errors import RejectedEntry

T = TypeVar("T")
VERSION = 1
# ASCII-only and anchored with \Z: ``$`` would accept a trailing newline, ``\d`` any Unicode digit.
JID_RE = re.compile(r"^[0-9]{20}[0-9A-Za-z_]{0,24}\Z", re.ASCII)
# Salt minion ids: anything printable without path separators or NUL (salt.utils.verify.valid_id).
MINION_RE = re.compile(r"^[^/\\\x00]{1,255}\Z")
# Key ids travel unsigned beside a signature (``k``): printable ASCII, bounded before any use.
KEY_ID_RE = re.compile(r"^[\x21-\x7e]{1,64}\Z", re.ASCII)
MAX_SIGNATURE_BYTES = 128  # Ed25519: 64
# Forwarded event tags: printable, no NUL or control characters, bounded.
TAG_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,512}\Z")


def _default(obj: Any) -> Any:
    """msgpack fallback for the odd non-msgpack type in a return (sets, bytes-likes...)."""
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, default=_default)


def unpack(data: bytes, max_bytes: int) -> Any:
    """Hostile bytes (from Redis): bounded, then parsed; RejectedEntry when they are not msgpack."""
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


def unpack_local(data: bytes) -> Any:
    """A file this master wrote itself (no size bound, no RejectedEntry: a corrupt file raises
    the decoder's own error, for the caller to quarantine).  Never for bytes read from Redis."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def require(cond: bool, reason: str, detail: str) -> None:
    if not cond:
        raise RejectedEntry(reason, detail)


def text(d: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = d.get(key)
    require(isinstance(value, str), "malformed", f"{key} must be a string")
    if pattern is not None:
        require(bool(pattern.match(value)), "malformed", f"{key} has an invalid value")
    return value


def number(d: Mapping[str, Any], key: str) -> float:
    value = d.get(key)
    require(isinstance(value, (int, float)) and not isinstance(value, bool), "malformed", f"{key} must be a number")
    require(math.isfinite(value) and abs(value) < 1e15, "malformed", f"{key} is out of range")
    return float(value)


def count(value: Any) -> bool:
    """A plausible counter: a non-negative int below 2**53 (no bools, NaN or infinities)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def names(d: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> list[str]:
    """A list of strings, each matching ``pattern`` (absent: empty)."""
    value = d.get(key, [])
    require(isinstance(value, list), "malformed", f"{key} must be a list")
    for item in value:
        require(isinstance(item, str) and bool(pattern.match(item)), "malformed", f"{key} has an invalid item")
    return value


def brief(value: Any) -> str:
    """What to say about a rejected value: never its full repr (it may be huge or deeply nested)."""
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40])
    return type(value).__name__


def versioned(data: bytes, max_bytes: int, what: str = "record") -> dict[str, Any]:
    """The map of a ``{"v": VERSION, ...}`` record: bounded, parsed, its version checked (its kind is the caller's)."""
    doc = unpack(data, max_bytes)
    require(isinstance(doc, dict), "malformed", f"{what} is not a map")
    require(type(doc.get("v")) is int and doc.get("v") == VERSION, "bad_version", f"unsupported version {brief(doc.get('v'))}")
    return doc


def boundary(fn: Callable[..., T]) -> Callable[..., T]:
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
