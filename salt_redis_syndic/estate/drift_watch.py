"""When to fingerprint what a master serves, and what a new drift report means (pure decisions).

:class:`ServedFiles` says when the served files are fingerprinted again (every
``drift_interval``); :func:`drift_news` compares a drift report with the last verdict per DC
and says what to log and fire.  The MoM's estate loop applies the news (log, bus).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .drift import Fingerprinter, Listing, in_sync
from .gitrevs import GIT_KINDS


class ServedFiles:
    """The files a master serves (``drift_roots``), fingerprinted again every ``interval`` seconds."""

    def __init__(self, opts: Mapping[str, Any], roots: tuple[str, ...], interval: float,
                 fingerprinter: Fingerprinter | None = None) -> None:
        self.opts = opts
        self.roots = roots
        self.interval = interval
        self.fingerprinter = fingerprinter or Fingerprinter()
        self.current: Listing = {}
        self._next = 0.0

    def due(self, now: float) -> bool:
        return bool(self.roots) and now >= self._next

    def refresh(self, now: float) -> Listing:
        self._next = now + self.interval
        self.current = self.fingerprinter.listing(self.opts, self.roots)
        return self.current


@dataclass(frozen=True)
class DriftNews:
    """A DC's drift verdict changed: ``known`` is False for the first verdict of a DC."""

    dc: str
    row: Mapping[str, Any]
    in_sync: bool
    known: bool

    @property
    def announce(self) -> bool:
        """Every new difference, and the return to sync: what a reactor or an operator acts on."""
        return not self.in_sync or self.known

    def describe(self) -> str:
        return describe(self.row)


def drift_news(rows: Mapping[str, Mapping[str, Any]], last: Mapping[str, Mapping[str, Any] | None]) -> list[DriftNews]:
    """The DCs whose verdict is new (a DC whose listing was not fetched yet has none)."""
    out = []
    for dc, row in rows.items():
        before = last.get(dc)
        if pending(row) or row == before:
            continue
        out.append(DriftNews(dc, row, in_sync(row), before is not None))
    return out


def pending(row: Mapping[str, Any]) -> bool:
    """A DC's listing was not fetched yet: no verdict to announce."""
    return any(isinstance(v, dict) and v.get("differs") for envs in row.values() for v in envs.values())


def describe(row: Mapping[str, Any]) -> str:
    parts = []
    for kind, envs in sorted(row.items()):
        for env, value in sorted(envs.items()):
            if value != "in sync" and kind in GIT_KINDS:
                remotes = [f"{r} {_short(v['mom'])} -> {_short(v['dc'])}" for r, v in value.get("changed", {}).items()]
                remotes += [f"{r} only on the DC" for r in value.get("only_on_dc", {})]
                remotes += [f"{r} missing on the DC" for r in value.get("missing_on_dc", {})]
                parts.append(f"{kind}:{env} ({', '.join(remotes[:5])}{'...' if len(remotes) > 5 else ''})")
            elif value != "in sync":
                files = [f for key in ("changed", "only_on_dc", "missing_on_dc") for f in value.get(key, [])]
                parts.append(f"{kind}:{env} ({', '.join(files[:5])}{'...' if len(files) > 5 else ''})")
    return "; ".join(parts)


def _short(sha: str) -> str:
    return sha[:12] if len(sha) >= 40 else sha
