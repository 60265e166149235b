"""Mirrored minion keys: DC minions listed as accepted in the MoM's own key store.

Why: after ``timeout`` Salt's CLI (``LocalClient.get_iter_returns``) asks
``saltutil.find_job`` only of pending minions in the MoM's accepted key list
(``CkMinions._pki_minions()``).  DC minions are not there, so the MoM CLI gave up on every
long job after ``timeout + gather_job_timeout``.  With each DC's accepted minions mirrored
into the MoM's key store, the CLI sends ``find_job`` like a single master; the bridge carries
it to the DCs and brings the answers back as ``salt/job/<find jid>/ret/<minion>``.

A mirrored key is not a public key: its text is a marker naming the DC (:func:`marker`).
Salt's auth compares the key a minion presents with the stored text and then loads the
stored text as an RSA key to encrypt the session key; a marker can never pass both, so a
mirrored minion id can never authenticate to the MoM (a minion presenting its real key is
put in ``minions_denied``).  The marker is also how the engine knows which keys it owns:
it adds, moves and removes only keys whose text is a marker, never a key the MoM holds.

:func:`plan` decides (pure); :class:`KeyMirror` reads and writes the store through a small
:class:`KeyStore` interface (Salt's key cache, see ``salt_adapter.keystore.KeyStoreCache``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..security.names import NAME_PATTERN

log = logging.getLogger(__name__)

MARKER_HEAD = "-----REDIS-SYNDIC MIRRORED MINION KEY-----"
_MARKER_RE = re.compile(r"\A" + re.escape(MARKER_HEAD) + rf"\ndc: ({NAME_PATTERN})\n")


def marker(dc: str) -> str:
    """The text stored for a minion accepted on ``dc``; never a loadable public key."""
    return (f"{MARKER_HEAD}\ndc: {dc}\n"
            "Kept by the redis_syndic engine: this minion's key is accepted on DC master "
            f"{dc}. Not a public key: this id cannot authenticate to this master.\n")


def mirrored_dc(pub: Any) -> str | None:
    """The DC a stored key text mirrors, or None for anything else (a key the MoM owns)."""
    if not isinstance(pub, str):
        return None
    match = _MARKER_RE.match(pub.replace("\r\n", "\n"))
    return match.group(1) if match else None


@dataclass(frozen=True)
class Stored:
    """One minion in the MoM key store: its state and, for a mirrored key, the DC it mirrors."""

    state: str
    dc: str | None = None


@dataclass(frozen=True)
class Conflict:
    """A minion the engine will not mirror as asked: why, and who claims it."""

    minion: str
    reason: str  # "mom_key" | "several_dcs" | "other_dc"
    claimants: tuple[str, ...]
    holder: str | None = None  # the DC whose mirror stays (other_dc, several_dcs), None for the MoM


@dataclass
class Plan:
    add: dict[str, str] = field(default_factory=dict)  # minion -> DC (new, or moved to this DC)
    remove: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def plan(rosters: Mapping[str, Mapping[str, str]], store: Mapping[str, Stored], enabled: bool = True) -> Plan:
    """What to change so the store mirrors the accepted minions of ``rosters``.

    ``rosters``: ``{dc: {minion: key state}}`` for the DCs whose roster is known *now*; a DC
    missing here (its roster not loaded yet, e.g. right after a restart) keeps its mirrors.
    ``store``: the MoM key store.  ``enabled`` False: every mirror of a known DC goes.

    Rules: a key the MoM owns (any state, text not a marker) is never touched: a DC that
    claims it is a conflict.  A minion accepted on several DCs is mirrored for none of them
    (an existing mirror of one of them stays).  A mirror moves to another DC only when the
    DC it names is known and no longer accepts the minion.
    """
    out = Plan()
    claims: dict[str, list[str]] = {}
    if enabled:
        for dc in sorted(rosters):
            for minion, state in rosters[dc].items():
                if state == "accepted":
                    claims.setdefault(minion, []).append(dc)
    for minion in sorted(claims):
        dcs = tuple(claims[minion])
        have = store.get(minion)
        if have is not None and have.dc is None:
            out.conflicts.append(Conflict(minion, "mom_key", dcs))
            continue
        if len(dcs) > 1:
            out.conflicts.append(Conflict(minion, "several_dcs", dcs, have.dc if have else None))
            continue
        dc = dcs[0]
        if have is None:
            out.add[minion] = dc
        elif have.dc == dc:
            if have.state != "accepted":  # someone moved our mirror (salt-key -r): put it back
                out.add[minion] = dc
        elif have.dc in rosters:  # its DC is known and dropped it: the minion moved
            out.add[minion] = dc
        else:
            out.conflicts.append(Conflict(minion, "other_dc", dcs, have.dc))
    for minion, have in sorted(store.items()):
        if have.dc is None or minion in out.add:
            continue
        if have.dc in rosters and minion not in claims:
            out.remove.append(minion)
        elif have.dc in rosters and minion in claims and have.dc not in claims[minion]:
            out.remove.append(minion)  # claimed by several others, none of them the holder
    return out


class KeyStore(Protocol):
    """The MoM's minion key store (Salt's ``keys`` cache bank)."""

    def list(self) -> dict[str, tuple[str, Any]]: ...  # minion -> (state, stored text)
    def put(self, minion: str, pub: str) -> None: ...  # as accepted
    def delete(self, minion: str) -> None: ...


def read_store(keys: KeyStore) -> dict[str, Stored]:
    return {m: Stored(state, mirrored_dc(pub)) for m, (state, pub) in keys.list().items()}


class KeyMirror:
    """Keeps the MoM key store in step with the DC rosters (called from the MoM estate loop)."""

    def __init__(self, keys: KeyStore, enabled: bool, alarm: Callable[[list[Conflict]], None]) -> None:
        self.keys = keys
        self.enabled = enabled
        self.alarm = alarm
        self._reported: frozenset[tuple[str, str, tuple[str, ...]]] = frozenset()

    def sync(self, rosters: Mapping[str, Mapping[str, str]]) -> Plan:
        """Apply :func:`plan`; re-read the store each call (an operator may run salt-key)."""
        decided = plan(rosters, read_store(self.keys), self.enabled)
        for minion, dc in decided.add.items():
            self.keys.put(minion, marker(dc))
        for minion in decided.remove:
            self.keys.delete(minion)
        if decided.add or decided.remove:
            log.info("redis_syndic: mirrored minion keys: %d added or moved, %d removed", len(decided.add),
                     len(decided.remove))
        now = frozenset((c.minion, c.reason, c.claimants) for c in decided.conflicts)
        fresh = [c for c in decided.conflicts if (c.minion, c.reason, c.claimants) not in self._reported]
        self._reported = now
        if fresh:
            self.alarm(fresh)
        return decided


def describe(conflicts: Iterable[Conflict]) -> str:
    parts = []
    for c in conflicts:
        who = ", ".join(c.claimants)
        if c.reason == "mom_key":
            parts.append(f"{c.minion} (accepted on DC {who}, but the MoM holds its own key for it)")
        elif c.reason == "several_dcs":
            parts.append(f"{c.minion} (accepted on several DCs: {who})")
        else:
            parts.append(f"{c.minion} (accepted on DC {who}, still mirrored for DC {c.holder})")
    return "; ".join(parts)


ALARM_TAG = "redis_syndic/keymirror/conflict"


def mirror_alarm(bus: Any, counters: Any) -> Callable[[list[Conflict]], None]:
    """Report new conflicts once: a WARNING line, a counter and an event on the MoM bus."""

    def alarm(conflicts: list[Conflict]) -> None:
        counters.inc("key_mirror_conflicts", len(conflicts))
        log.warning("redis_syndic: minion key(s) not mirrored from the DCs: %s", describe(conflicts[:20]))
        try:
            bus.fire({"conflicts": [{"minion": c.minion, "reason": c.reason, "dcs": list(c.claimants),
                                     "holder": c.holder} for c in conflicts[:1000]]}, ALARM_TAG)
        except Exception as err:  # the log line above already says it  # noqa: BLE001
            log.debug("redis_syndic: cannot fire %s: %s", ALARM_TAG, err)

    return alarm
