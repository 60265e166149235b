"""What a master serves, fingerprinted per saltenv: ``file_roots`` / ``pillar_roots`` and the
commits its gitfs and git_pillar remotes resolve to.

A DC that serves other files than the MoM runs other states than the operator tested.  Each
master hashes its roots (relative path -> sha256, the first root listing a path wins, as in
Salt's ``roots`` fileserver) into one short digest per saltenv; only when digests differ does
anyone need the full listing, which names the files that differ.
Hashes are cached by (size, mtime): a rescan of an unchanged tree reads no file.
A git remote needs no hashing: the commit it resolves to in the master's cache is its
fingerprint (remote -> commit sha, see :mod:`gitrevs`), and a difference names both commits.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Mapping

from .gitrevs import GIT_KINDS, GitRevisions

# {kind: {saltenv: {relative path: sha256 hex}}} for the roots kinds,
# {kind: {saltenv: {remote: commit sha}}} for the git kinds.
Listing = dict[str, dict[str, dict[str, str]]]
ROOT_KINDS = ("file_roots", "pillar_roots")
KINDS = ROOT_KINDS + GIT_KINDS
_SKIP_DIRS = {".git", ".svn", ".hg", "__pycache__"}


def roots_of(opts: Mapping[str, Any], kind: str) -> dict[str, list[str]]:
    """``{saltenv: [dirs]}`` from a master's opts (anything malformed counts as empty)."""
    value = opts.get(kind) or {}
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, list[str]] = {}
    for env, dirs in value.items():
        if isinstance(dirs, str):
            dirs = [dirs]
        if isinstance(dirs, (list, tuple)):
            out[str(env)] = [str(d) for d in dirs if isinstance(d, str)]
    return out


class Fingerprinter:
    """Hashes the files under some roots, re-reading only files whose size or mtime changed."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, int, str]] = {}
        self._visited: set[str] = set()
        self._revisions: GitRevisions | None = None

    def _hash(self, path: str, st: os.stat_result) -> str | None:
        cached = self._cache.get(path)
        if cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            return cached[2]
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            return None
        self._cache[path] = (st.st_size, st.st_mtime_ns, h.hexdigest())
        return h.hexdigest()

    def files(self, dirs: list[str]) -> dict[str, str]:
        """``{relative path: sha256}`` of every regular file under ``dirs`` (first dir wins)."""
        out: dict[str, str] = {}
        for root in dirs:
            for top, subdirs, names in os.walk(root, followlinks=True):
                subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS)
                rel_top = os.path.relpath(top, root)
                for name in names:
                    rel = name if rel_top == "." else f"{rel_top}/{name}".replace(os.sep, "/")
                    if rel in out:
                        continue
                    path = os.path.join(top, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    if not os.path.isfile(path):
                        continue
                    sha = self._hash(path, st)
                    if sha is not None:
                        out[rel] = sha
                        self._visited.add(path)
        return out

    def listing(self, opts: Mapping[str, Any], kinds: tuple[str, ...]) -> Listing:
        """The full listing of ``kinds`` served by the master of ``opts``.

        A git kind the master is not configured for (no ``gitfs`` in ``fileserver_backend``,
        no git ``ext_pillar``) is left out, not listed empty: "not used here" is no drift.
        """
        self._visited = set()
        out: Listing = {}
        for kind in kinds:
            if kind in GIT_KINDS:
                if self._revisions is None or self._revisions.opts is not opts:
                    self._revisions = GitRevisions(opts)
                revisions = self._revisions.listing(kind)
                if revisions is not None:
                    out[kind] = revisions
            else:
                out[kind] = {env: self.files(dirs) for env, dirs in roots_of(opts, kind).items()}
        # Forget files that are gone: the cache stays the size of the tree.
        self._cache = {p: v for p, v in self._cache.items() if p in self._visited}
        return out


def env_digest(files: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()[:32]


def digests(listing: Listing) -> dict[str, dict[str, str]]:
    """The compact form carried in every DC head record: one digest per kind and saltenv."""
    return {kind: {env: env_digest(files) for env, files in envs.items()} for kind, envs in listing.items()}


def compare(reference: Mapping[str, str], other: Mapping[str, str]) -> dict[str, list[str]]:
    """Files that differ between two ``{path: sha}`` maps, from ``other``'s point of view."""
    return {
        "changed": sorted(p for p in other if p in reference and reference[p] != other[p]),
        "only_on_dc": sorted(p for p in other if p not in reference),
        "missing_on_dc": sorted(p for p in reference if p not in other),
    }


def compare_revisions(reference: Mapping[str, str], other: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Remotes whose commit differs between two ``{remote: sha}`` maps, with the commits.

    Unlike a file's hash, a commit is something the operator can look up (``git show``), so
    the report carries them: ``changed`` maps a remote to ``{"mom": sha, "dc": sha}``.
    """
    return {
        "changed": {r: {"mom": reference[r], "dc": other[r]} for r in sorted(other)
                    if r in reference and reference[r] != other[r]},
        "only_on_dc": {r: other[r] for r in sorted(other) if r not in reference},
        "missing_on_dc": {r: reference[r] for r in sorted(reference) if r not in other},
    }


def compared_digests(dc_files: Mapping[str, Mapping[str, str]], own: Mapping[str, Mapping[str, str]],
                     compared: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """The digests of a DC's head that the MoM compares with its own ``own``.

    A DC leaves out a git kind its master does not use; when the MoM's does use it, the DC
    counts as serving none of it (drift), not as "not compared".
    """
    out = {k: dict(v) for k, v in dc_files.items() if k in compared}
    for kind in GIT_KINDS:
        if kind in compared and kind in own and kind not in out:
            out[kind] = {}
    return out


def drift_report(reference: Listing, dcs: Mapping[str, Listing | None],
                 dc_digests: Mapping[str, Mapping[str, Mapping[str, str]]]) -> dict[str, Any]:
    """Per DC, kind and saltenv: ``"in sync"`` or the files (git kinds: remotes) that differ from the MoM's.

    ``dcs`` holds a DC's full listing only when some digest differed (None otherwise);
    ``dc_digests`` the digests of its head record.  A ``dcs_agree`` section says, per kind
    and saltenv, whether all DCs serve the same thing as each other (even if not the MoM's).
    """
    ref_digests = digests(reference)
    out: dict[str, Any] = {}
    for dc in sorted(dc_digests):
        row: dict[str, Any] = {}
        for kind, envs in sorted(dc_digests[dc].items()):
            kind_row: dict[str, Any] = {}
            for env in sorted(set(envs) | set(ref_digests.get(kind, {}))):
                if envs.get(env) is not None and envs.get(env) == ref_digests.get(kind, {}).get(env):
                    kind_row[env] = "in sync"
                    continue
                listing = dcs.get(dc)
                if listing is None:
                    kind_row[env] = {"differs": "listing not fetched yet"}
                    continue
                differ = compare_revisions if kind in GIT_KINDS else compare
                diff: Mapping[str, Any] = differ(reference.get(kind, {}).get(env, {}), listing.get(kind, {}).get(env, {}))
                kind_row[env] = {k: v for k, v in diff.items() if v}
                if env not in envs:
                    kind_row[env]["saltenv"] = "not served by the DC"
                elif env not in ref_digests.get(kind, {}):
                    kind_row[env]["saltenv"] = "not served by the MoM"
            row[kind] = kind_row
        out[dc] = row
    agree: dict[str, dict[str, bool]] = {}
    for kind in sorted({k for d in dc_digests.values() for k in d}):
        envs = sorted({e for d in dc_digests.values() for e in d.get(kind, {})})
        agree[kind] = {env: len({d.get(kind, {}).get(env) for d in dc_digests.values()}) == 1 for env in envs}
    return {"dcs": out, "dcs_agree": agree}


def in_sync(row: Mapping[str, Any]) -> bool:
    return all(v == "in sync" for envs in row.values() for v in envs.values())
