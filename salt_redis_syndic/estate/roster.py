"""The minion roster of one DC master: who holds a key there, in which state, when last heard.

The DC side reads key states from the master's ``pki_dir`` the way Salt's default
``localfs_key`` driver lists them, and turns each change into a small numbered delta; the
MoM side applies deltas in order and knows it is in step when its digest equals the DC's.
Only changes travel at steady state: a roster of 10,000 idle minions sends nothing but the
DC's small periodic head record (see :mod:`salt_redis_syndic.estate.dc_estate`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

# Key directories under the master's pki_dir and the state each means (salt/cache/localfs_key.py).
KEY_DIRS = (("minions", "accepted"), ("minions_pre", "pending"), ("minions_rejected", "rejected"),
            ("minions_denied", "denied"))
STATES = tuple(state for _, state in KEY_DIRS)
# One state per minion: a minion with an accepted key that presents another one also has a
# denied key; it is shown by the state that decides whether it can run jobs.
_PRECEDENCE = {state: i for i, state in enumerate(STATES)}
_CODES = {"accepted": "a", "pending": "p", "rejected": "r", "denied": "d"}
_STATE_OF = {code: state for state, code in _CODES.items()}
# What Salt's valid_id accepts as a key file name (no path separators, no NUL, not hidden).
_ID_RE = re.compile(r"^[^/\\\x00.][^/\\\x00]{0,254}\Z")


@dataclass(frozen=True)
class Entry:
    """One minion as its DC knows it.  ``seen`` is an epoch second, quantized (None: never heard)."""

    state: str
    seen: int | None = None
    grains: dict[str, Any] | None = None

    def wire(self) -> list[Any]:
        return [_CODES[self.state], self.seen, self.grains]

    @classmethod
    def from_wire(cls, value: Any) -> "Entry":
        """Raises ValueError for anything but ``[code, int|None, map|None]``."""
        if not isinstance(value, list) or len(value) != 3 or value[0] not in _STATE_OF:
            raise ValueError("roster entry must be [state, seen, grains]")
        seen, grains = value[1], value[2]
        if seen is not None and (isinstance(seen, bool) or not isinstance(seen, int) or not 0 <= seen < 2**40):
            raise ValueError("roster entry seen must be an epoch second")
        if grains is not None and not isinstance(grains, dict):
            raise ValueError("roster entry grains must be a map")
        return cls(_STATE_OF[value[0]], seen, grains)


Roster = dict[str, Entry]


def scan_pki(pki_dir: str) -> dict[str, str]:
    """``{minion id: key state}`` from the key directories of a master's ``pki_dir``.

    Regular files only (no symlinks, no dotfiles such as ``.key_cache``), like
    ``salt.cache.localfs_key.list_all``; a missing directory is an empty one.
    """
    out: dict[str, str] = {}
    for dirname, state in KEY_DIRS:
        try:
            with os.scandir(os.path.join(pki_dir, dirname)) as it:
                for entry in it:
                    if not _ID_RE.match(entry.name) or entry.is_symlink() or not entry.is_file():
                        continue
                    known = out.get(entry.name)
                    if known is None or _PRECEDENCE[state] < _PRECEDENCE[known]:
                        out[entry.name] = state
        except (FileNotFoundError, NotADirectoryError):
            continue
    return out


def pki_stamp(pki_dir: str) -> tuple[int, ...]:
    """Modification times of the key directories: adding, moving or deleting a key changes them."""
    out = []
    for dirname, _ in KEY_DIRS:
        try:
            out.append(os.stat(os.path.join(pki_dir, dirname)).st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


def digest(roster: Mapping[str, Entry]) -> str:
    """Order-independent fingerprint of a roster: equal on both sides means in step."""
    h = hashlib.sha256()
    for minion in sorted(roster):
        e = roster[minion]
        grains = json.dumps(e.grains, sort_keys=True, default=str) if e.grains is not None else ""
        h.update(f"{minion}\t{e.state}\t{e.seen}\t{grains}\n".encode())
    return h.hexdigest()[:32]


def counts(roster: Mapping[str, Entry]) -> dict[str, int]:
    out = {state: 0 for state in STATES}
    for e in roster.values():
        out[e.state] += 1
    return out


@dataclass(frozen=True)
class Delta:
    """Changes from roster ``seq - 1`` to ``seq`` of one engine run (``epoch``)."""

    epoch: str
    seq: int
    changed: dict[str, Entry]
    removed: list[str]


def diff(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> tuple[dict[str, Entry], list[str]]:
    changed = {m: e for m, e in new.items() if old.get(m) != e}
    removed = sorted(m for m in old if m not in new)
    return changed, removed


class SeenClock:
    """When each minion was last heard, quantized so that a busy minion is not a stream of deltas.

    A minion's published ``seen`` moves only once it is ``resolution`` seconds behind what
    the bus reported; with no activity nothing moves at all.
    """

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self._raw: dict[str, float] = {}
        self._dirty: set[str] = set()

    def note(self, minion: str, when: float) -> None:
        if when > self._raw.get(minion, float("-inf")):
            self._raw[minion] = when
            self._dirty.add(minion)

    def take_dirty(self) -> set[str]:
        """Minions heard from since the last call (only their ``seen`` can have moved)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def seen(self, minion: str, published: int | None) -> int | None:
        raw = self._raw.get(minion)
        if raw is None:
            return published
        if published is None or raw - published >= max(self.resolution, 1.0):
            return int(raw)
        return published

    def forget(self, keep: Iterable[str]) -> None:
        keep = set(keep)
        for minion in [m for m in self._raw if m not in keep]:
            del self._raw[minion]


@dataclass
class RosterSource:
    """DC side: the roster as last published, and the next delta when it changes.

    A new ``epoch`` per engine run: the MoM reloads the snapshot instead of guessing how a
    restarted DC's numbering relates to the previous one.
    """

    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    snapshot_seq: int = -1
    published: Roster = field(default_factory=dict)

    def step(self, current: Roster) -> Delta | None:
        if current is self.published and self.seq > 0:
            return None  # the caller knows nothing changed
        changed, removed = diff(self.published, current)
        if not changed and not removed and self.seq > 0:
            return None
        self.seq += 1
        self.published = dict(current)
        return Delta(self.epoch, self.seq, changed, removed)


@dataclass
class RosterView:
    """MoM side: one DC's roster rebuilt from a snapshot and the deltas after it."""

    epoch: str = ""
    seq: int = -1
    minions: Roster = field(default_factory=dict)

    def load(self, epoch: str, seq: int, minions: Roster) -> None:
        self.epoch, self.seq, self.minions = epoch, seq, dict(minions)

    def apply(self, delta: Delta) -> bool | None:
        """True: applied; None: already had it; False: a gap or another epoch (reload needed)."""
        if delta.epoch != self.epoch:
            return False
        if delta.seq <= self.seq:
            return None
        if delta.seq != self.seq + 1:
            return False
        for minion in delta.removed:
            self.minions.pop(minion, None)
        self.minions.update(delta.changed)
        self.seq = delta.seq
        return True

    def digest(self) -> str:
        return digest(self.minions)
