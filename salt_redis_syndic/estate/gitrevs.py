"""What a master's gitfs and git_pillar serve: the commit each remote resolves to, per saltenv.

Files under ``file_roots`` are fingerprinted one by one; a git remote is pinned by one commit,
so its fingerprint is that commit's sha: ``{saltenv: {remote: sha}}``, the same shape as a
roots listing, so the drift report names the saltenv and the remote whose commit differs.

The revisions come from the master's own cache (``<cachedir>/gitfs``, ``<cachedir>/git_pillar``):
what it serves now, not what the remote holds.  The master's maintenance process fetches every
``gitfs_update_interval``; this module never fetches and takes none of Salt's locks (git
replaces refs atomically, a reader cannot see half a ref).

Which saltenvs exist and which ref serves each is Salt's logic (``gitfs_base``, per-remote
``saltenv`` and ``all_saltenvs``, whitelist/blacklist, ``disable_saltenv_mapping``,
``ref_types``, ``fallback``, cache directory names), so Salt's own ``GitFS`` / ``GitPillar``
objects parse the configuration; only their provider is ours, :class:`CacheRefs`, which reads
the refs with one ``git for-each-ref`` (Salt's classes are reached through
:mod:`salt_redis_syndic.salt_adapter.gitfs`).  It does not matter which provider the master uses:
pygit2, GitPython and gitcli fetch the same refs (``refs/remotes/origin/*``, ``refs/tags/*``)
into the same cache directory (a work tree's ``.git``, or a bare repository for gitcli).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from typing import Any, Callable, Mapping

from ..runtime import RateLimitedLog

log = logging.getLogger(__name__)
_rl = RateLimitedLog(log, 600.0)

GIT_KINDS = ("gitfs", "git_pillar")
NOT_CLONED = "not cloned yet"  # the value of a remote the master has not fetched yet
UNREADABLE = "cache unreadable"  # its cache exists but git cannot read its refs (logged)
MARKERS = (NOT_CLONED, UNREADABLE)
# {saltenv: {remote label: commit sha, or one of MARKERS}}
Revisions = dict[str, dict[str, str]]

GIT_TIMEOUT = 20.0
_HEX_RE = re.compile(r"^[0-9a-f]{4,64}$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class GitUnavailable(Exception):
    """The cache cannot be read at all (no ``git`` binary): one log line, not one per remote."""


def gitfs_configured(opts: Mapping[str, Any]) -> bool:
    """Whether the master serves files from gitfs (``fileserver_backend`` has ``gitfs`` or ``git``)."""
    backends = opts.get("fileserver_backend") or []
    if isinstance(backends, str):
        backends = backends.split(",")
    return any(isinstance(b, str) and b.strip().lower() in ("gitfs", "git") for b in backends)


def git_pillar_sources(opts: Mapping[str, Any]) -> list[list[Any]]:
    """The remotes of each ``ext_pillar`` git entry, as the master's maintenance reads them."""
    out = []
    for entry in opts.get("ext_pillar") or []:
        if isinstance(entry, Mapping) and "git" in entry:
            remotes = entry["git"]
            out.append(list(remotes) if isinstance(remotes, (list, tuple)) else [remotes])
    return out


def read_refs(git_dir: str) -> dict[str, str]:
    """``{ref name: commit sha}`` of the fetched branches and tags (annotated tags peeled)."""
    fmt = "%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)"
    out = _git(git_dir, "for-each-ref", f"--format={fmt}", "refs/remotes/", "refs/tags/")
    refs: dict[str, str] = {}
    for line in out.splitlines():
        name, otype, sha, peeled_type, peeled = (line.split("\0") + [""] * 5)[:5]
        if otype == "commit":
            refs[name] = sha
        elif peeled_type == "commit":
            refs[name] = peeled
    return refs


def _git(git_dir: str, *args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, env=env, check=False)
    except FileNotFoundError:
        raise GitUnavailable("the git command is not installed") from None
    if done.returncode != 0:
        raise OSError(f"git {args[0]} in {git_dir} failed: {done.stderr.strip()[:200]}")
    return done.stdout


class CacheRefs:
    """A gitfs / git_pillar "provider" that only reads the refs the master fetched.

    Mixed into Salt's ``GitProvider`` by :func:`salt_adapter.gitfs.provider_class`: Salt's base
    class parses the per-remote configuration and names the cache directory; nothing here
    fetches, checks out, initialises a repository or writes its git config.
    """

    # What Salt's GitProvider gives each remote (declared for the type checker only).
    id: str
    role: str
    fallback: str
    ref_types: list[str]
    get_cachedir: Callable[[], str]
    get_checkout_target: Callable[[], str | None]
    env_is_exposed: Callable[[str], bool]
    ref: Callable[[str], str | None]
    _get_envs_from_ref_paths: Callable[[list[str]], set[str]]
    # The provider name the reader stands in for (set by salt_adapter.gitfs.provider_class): one
    # of Salt's AUTH_PROVIDERS, so per-remote credentials are accepted (and ignored: no fetch).
    provider_name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.provider = self.provider_name
        self.repo = None  # GitBase.init_remotes keeps only remotes that have this attribute
        self.refs: dict[str, str] | None = None
        self.unreadable = False
        self._sha_cache: dict[str, str | None] = {}
        super().__init__(*args, **kwargs)

    def fetch_request_check(self) -> bool:  # Salt fetches here when it finds a request file
        return False

    def fetch(self) -> bool:  # pragma: no cover - never called; a guard against future Salt
        raise RuntimeError("redis_syndic reads the gitfs cache, it never fetches")

    def load(self) -> None:
        """Read the refs afresh; ``refs`` stays None while the master has not fetched the remote."""
        git_dir = self.git_dir()
        self.refs, self.unreadable, self._sha_cache = None, False, {}
        if git_dir is not None:
            try:
                self.refs = read_refs(git_dir)
            except GitUnavailable:
                raise
            except (OSError, subprocess.SubprocessError) as err:
                self.unreadable = True
                _rl.log(logging.WARNING, git_dir, "redis_syndic: cannot read the %s cache of remote %s: %s",
                        self.role, self.id, err)
        if not self.refs:
            self.refs = None  # initialised by the master, never fetched: serves nothing yet

    def git_dir(self) -> str | None:
        """The cache's repository: a work tree's ``.git`` (pygit2, GitPython) or bare (gitcli)."""
        cachedir = self.get_cachedir()
        for candidate in (os.path.join(cachedir, ".git"), cachedir):
            if os.path.isdir(os.path.join(candidate, "objects")):
                return candidate
        return None

    def envs(self) -> set[str]:
        return self._get_envs_from_ref_paths(list(self.refs or ()))

    def lookup(self, ref_type: str, ref: str) -> str | None:
        """The commit ``ref`` names as a branch, tag or sha, as Salt's ``get_tree_from_*``."""
        refs = self.refs or {}
        if ref_type == "branch":
            return refs.get(f"refs/remotes/origin/{ref}")
        if ref_type == "tag":
            return refs.get(f"refs/tags/{ref}")
        if ref_type == "sha" and _HEX_RE.match(ref):
            if ref not in self._sha_cache:
                try:
                    sha = _git(self.git_dir() or self.get_cachedir(), "rev-parse", "--verify", "-q",
                               "--end-of-options", f"{ref}^{{commit}}").strip()
                except (OSError, subprocess.SubprocessError):
                    sha = ""
                self._sha_cache[ref] = sha if _SHA_RE.match(sha) else None
            return self._sha_cache[ref]
        return None

    def first(self, candidates: list[str | None], ref_types: list[str]) -> str | None:
        for candidate in candidates:
            if candidate:
                for ref_type in ref_types:
                    sha = self.lookup(ref_type, candidate)
                    if sha:
                        return sha
        return None

    def gitfs_commit(self, tgt_env: str) -> str | None:
        """The commit gitfs serves ``tgt_env`` from (Salt's ``get_tree``, returning the commit)."""
        if not self.env_is_exposed(tgt_env):
            return None
        ref = self.ref(tgt_env)
        if ref is None:
            return None
        return self.first([ref, self.fallback or None], self.ref_types)

    def pillar_commit(self) -> str | None:
        """The commit git_pillar checks out at the next pillar render (GitPython's ``checkout``)."""
        return self.first([self.get_checkout_target(), self.fallback or None], ["branch", "tag"])


def _label(repo: Any, root: str, mountpoint: str) -> str:
    """A remote as the report names it: its id (git_pillar: ``<branch> <url>``), and what changes what it serves."""
    extras = [f"{k}={v}" for k, v in (("name", getattr(repo, "name", "")), ("root", root),
                                        ("mountpoint", mountpoint)) if v]
    return f"{repo.id} ({', '.join(extras)})" if extras else str(repo.id)


def _pillar_env(repo: Any, opts: Mapping[str, Any]) -> str:
    """The pillar env a git_pillar remote feeds, as ``GitPillar.checkout`` assigns it."""
    if repo.branch == "__env__" and hasattr(repo, "all_saltenvs"):
        return str(opts.get("pillarenv") or opts.get("saltenv") or "base")
    if repo.env:
        return str(repo.env)
    if repo.branch == repo.base:
        return "base"
    target = repo.get_checkout_target()
    return "base" if target == repo.base else str(target)


class GitRevisions:
    """The gitfs / git_pillar revisions a master serves, read from its cache on every call.

    Salt's objects are built once (the master's configuration does not change under a running
    engine); a configuration Salt rejects, or a missing ``git``, is logged once and the kind is
    left out, as on a master not configured for it.
    """

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.opts = opts
        self._built: dict[str, list[Any]] = {}
        self._broken: dict[str, str] = {}

    def _build(self, kind: str) -> list[Any]:
        from ..salt_adapter import gitfs

        if kind == "gitfs":
            return gitfs.gitfs_objects(self.opts, CacheRefs)
        return gitfs.git_pillar_objects(self.opts, git_pillar_sources(self.opts), CacheRefs)

    def _objects(self, kind: str) -> list[Any] | None:
        if kind in self._broken:
            return None
        if kind not in self._built:
            try:
                self._built[kind] = self._build(kind)
            except Exception as err:  # Salt raises FileserverConfigError, ImportError, OSError...
                self._broken[kind] = f"{type(err).__name__}: {err}"
                log.error("redis_syndic: %s revisions are not fingerprinted: Salt cannot read the %s "
                          "configuration of this master (%s)", kind, kind, self._broken[kind])
                return None
        return self._built[kind]

    def listing(self, kind: str) -> Revisions | None:
        """``{saltenv: {remote: sha}}`` of ``kind``, or None when the master does not use it."""
        if kind == "gitfs" and not gitfs_configured(self.opts):
            return None
        if kind == "git_pillar" and not git_pillar_sources(self.opts):
            return None
        objects = self._objects(kind)
        if objects is None:
            return None
        try:
            for obj in objects:
                for repo in obj.remotes:
                    repo.load()
            return self._gitfs(objects[0]) if kind == "gitfs" else self._git_pillar(objects)
        except GitUnavailable as err:
            self._broken[kind] = str(err)
            log.error("redis_syndic: %s revisions are not fingerprinted: %s", kind, err)
        except Exception as err:  # a Salt we do not know: the rest of the estate goes on
            _rl.log(logging.ERROR, f"listing:{kind}", "redis_syndic: cannot read the %s revisions of this master: %s: %s",
                    kind, type(err).__name__, err)
        return None

    def _gitfs(self, gitfs: Any) -> Revisions:
        out: Revisions = {}
        envs = set()
        for repo in gitfs.remotes:
            if repo.refs is not None:
                envs |= {e for e in repo.envs() | {e for v in repo.saltenv_revmap.values() for e in v}
                         if repo.env_is_exposed(e)}
        for repo in gitfs.remotes:
            if repo.refs is None:
                # What it would serve is unknown: shown under base, where every remote serves.
                marker = UNREADABLE if repo.unreadable else NOT_CLONED
                out.setdefault("base", {})[_label(repo, repo.root(), repo.mountpoint())] = marker
                continue
            for env in sorted(envs):
                sha = repo.gitfs_commit(env)
                if sha:
                    out.setdefault(env, {})[_label(repo, repo.root(env), repo.mountpoint(env))] = sha
        return out

    def _git_pillar(self, pillars: list[Any]) -> Revisions:
        out: Revisions = {}
        for pillar in pillars:
            for repo in pillar.remotes:
                env = _pillar_env(repo, self.opts)
                label = _label(repo, repo.root(), repo.mountpoint())
                if repo.refs is None:
                    out.setdefault(env, {})[label] = UNREADABLE if repo.unreadable else NOT_CLONED
                    continue
                sha = repo.pillar_commit()
                if sha:
                    out.setdefault(env, {})[label] = sha
        return out
