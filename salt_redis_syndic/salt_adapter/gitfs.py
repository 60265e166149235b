"""Salt's gitfs / git_pillar configuration parsing, with a provider of ours that only reads the cache.

Which saltenvs exist and which ref serves each is Salt's logic (``gitfs_base``, per-remote
``saltenv``, whitelists, ``ref_types``, ``fallback``, cache directory names), so Salt's own
``GitFS`` / ``GitPillar`` objects parse the configuration.  Their provider is built from a
``reader`` class given by the caller (:class:`salt_redis_syndic.estate.gitrevs.CacheRefs`),
mixed into Salt's ``GitProvider``: Salt's base class parses the per-remote configuration and
names the cache directory; the reader never fetches.

Releases differ (read in the installed sources of 3006.29 and 3008.4): 3006 and 3007's
``GitProvider.__init__`` calls ``self.init_remote()`` (the base raises ``NotImplementedError``),
3008's leaves it to each provider's own ``__init__``; 3006 and 3007 have no ``gitcli`` provider
and accept per-remote credentials for ``pygit2`` only (``AUTH_PROVIDERS``).
"""

from __future__ import annotations

from typing import Any, Mapping

import salt.utils.gitfs


def reader_provider() -> str:
    """The provider name the reader stands in for: one Salt accepts per-remote credentials for,
    so a master's ``user``/``password``/``privkey`` remotes parse (and are ignored: no fetch)."""
    auth = tuple(getattr(salt.utils.gitfs, "AUTH_PROVIDERS", ()))
    return "gitcli" if "gitcli" in auth else "pygit2"


def _init_remote(self: Any) -> bool:
    """Nothing to initialise (3006/3007 call this from ``GitProvider.__init__``): not a new clone."""
    return False


def provider_class(reader: type) -> type:
    """``reader`` on top of Salt's ``GitProvider``: what Salt instantiates per remote."""
    return type("CacheReader", (reader, salt.utils.gitfs.GitProvider),
                {"__doc__": reader.__doc__, "init_remote": _init_remote, "provider_name": reader_provider()})


def gitfs_objects(opts: Mapping[str, Any], reader: type) -> list[Any]:
    """One ``GitFS`` over ``gitfs_remotes``, each remote read by ``reader`` (as :func:`reader_provider`)."""
    from salt.fileserver.gitfs import PER_REMOTE_ONLY, PER_REMOTE_OVERRIDES

    provider = reader_provider()
    conf = dict(opts)  # Salt writes the verified provider into the opts it gets
    conf["verified_gitfs_provider"] = provider
    # init_remotes=False: GitFS would otherwise reuse (or become) the process-wide instance.
    gitfs = salt.utils.gitfs.GitFS(conf, [], git_providers={provider: provider_class(reader)}, init_remotes=False)
    gitfs.init_remotes(conf.get("gitfs_remotes") or [], PER_REMOTE_OVERRIDES, PER_REMOTE_ONLY)
    return [gitfs]


def git_pillar_objects(opts: Mapping[str, Any], sources: list[list[Any]], reader: type) -> list[Any]:
    """One ``GitPillar`` per ``ext_pillar`` git entry (``sources``), each remote read by ``reader``."""
    from salt.pillar import git_pillar

    provider = reader_provider()
    conf = dict(opts)
    conf["verified_git_pillar_provider"] = provider
    providers = {provider: provider_class(reader)}
    return [salt.utils.gitfs.GitPillar(conf, remotes, per_remote_overrides=git_pillar.PER_REMOTE_OVERRIDES,
                                       per_remote_only=git_pillar.PER_REMOTE_ONLY,
                                       global_only=git_pillar.GLOBAL_ONLY, git_providers=providers)
            for remotes in sources]
