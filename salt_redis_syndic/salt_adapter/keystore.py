"""The master's minion key store, read and written for mirrored DC minions (see ``estate.keymirror``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any


class KeyStoreCache:
    """The master's minion key store through Salt's key cache (``keys.cache_driver``, 3008+).

    Salt 3006/3007 have no key cache driver: keys are files under ``pki_dir/minions*``, which
    is what ``localfs_key`` reads and writes on 3008, so the same layout is used there.
    Writes re-check the stored text just before changing it (see :mod:`salt_redis_syndic.estate.keymirror`): a key
    that stopped being a mirror between the read and the write is left alone.
    """

    _DIRS = (("minions", "accepted"), ("minions_pre", "pending"), ("minions_rejected", "rejected"))

    def __init__(self, opts: Mapping[str, Any], mirrored_dc: Callable[[Any], str | None]) -> None:
        """``mirrored_dc(text)``: the DC a stored key text mirrors, None for a key the master owns."""
        self._opts = dict(opts)
        self._mirrored_dc = mirrored_dc
        self._cache: Any = None
        if "keys.cache_driver" in opts:
            import salt.cache

            self._cache = salt.cache.Cache(self._opts, driver=self._opts["keys.cache_driver"])

    def list(self) -> dict[str, tuple[str, Any]]:
        if self._cache is not None:
            try:
                entries = self._cache.list_all("keys", include_data=True)
            except AttributeError:  # a driver without list_all
                entries = None
            if entries is None:
                entries = {m: self._cache.fetch("keys", m) for m in self._cache.list("keys")}
            return {m: (e.get("state", ""), e.get("pub")) for m, e in entries.items() if isinstance(e, dict)}
        out: dict[str, tuple[str, Any]] = {}
        for dirname, state in self._DIRS:
            try:
                entries = list(os.scandir(os.path.join(self._opts["pki_dir"], dirname)))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False) or entry.name in out:
                    continue
                try:
                    with open(entry.path, encoding="utf-8", errors="replace") as fh:
                        out[entry.name] = (state, fh.read())
                except OSError:
                    continue
        return out

    def _current(self, minion: str) -> tuple[str, Any] | None:
        if self._cache is not None:
            got = self._cache.fetch("keys", minion)
            return (got.get("state", ""), got.get("pub")) if isinstance(got, dict) else None
        files = self._files(minion)
        return files[0] if files else None

    def _files(self, minion: str) -> list[tuple[str, str]]:
        """``(state, text)`` of every key file of ``minion`` (legacy layout), rejected first like Salt."""
        import salt.utils.verify

        if not salt.utils.verify.valid_id(self._opts, minion):
            raise ValueError(f"invalid minion id {minion!r}")
        out = []
        for dirname, state in reversed(self._DIRS):
            path = os.path.join(self._opts["pki_dir"], dirname, minion)
            try:
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        out.append((state, fh.read()))
            except OSError:
                continue
        return out

    def put(self, minion: str, pub: str) -> None:
        if self._cache is not None:
            now = self._current(minion)
            if now is not None and self._mirrored_dc(now[1]) is None:
                return  # the master took this id meanwhile (salt-key, a minion's first auth)
            self._cache.store("keys", minion, {"state": "accepted", "pub": pub})
            return
        if any(self._mirrored_dc(text) is None for _, text in self._files(minion)):
            return
        for dirname, _ in self._DIRS[1:]:  # only markers here (checked above): ours, back to accepted
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._opts["pki_dir"], dirname, minion))
        path = os.path.join(self._opts["pki_dir"], "minions", minion)
        tmp = os.path.join(self._opts["pki_dir"], f".{minion}.redis_syndic.tmp")  # not in minions/: never listed
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(pub)
        os.replace(tmp, path)

    def owners(self, minions: list[str]) -> dict[str, str | None]:
        """``{minion: DC its key mirrors, or None}`` for the named minions."""
        out: dict[str, str | None] = {}
        for minion in minions:
            try:
                now = self._current(minion)
            except Exception:  # an invalid id, a driver error: not a mirror  # noqa: BLE001
                now = None
            out[minion] = self._mirrored_dc(now[1]) if now is not None else None
        return out

    def delete(self, minion: str) -> None:
        if self._cache is not None:
            now = self._current(minion)
            if now is not None and self._mirrored_dc(now[1]) is not None:
                self._cache.flush("keys", minion)  # Salt reads rejected/pending first: neither is a real key
            return
        for _, text in self._files(minion):
            if self._mirrored_dc(text) is None:
                return  # a real key beside a marker: leave the id to the operator
        for dirname, _ in self._DIRS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._opts["pki_dir"], dirname, minion))
