"""Salt's gitfs / git_pillar configuration parsing, with a provider of ours that only reads the cache.

Which saltenvs exist and which ref serves each is Salt's logic (``gitfs_base``, per-remote
``saltenv``, whitelists, ``ref_types``, ``fallback``, cache directory names), so Salt's own
``GitFS`` / ``GitPillar`` objects parse the configuration.  Their provider is built from a
``reader`` class given by the caller (:class:`salt_redis_syndic.estate.gitrevs.CacheRefs`),
mixed into Salt's ``GitProvider``: Salt's base class parses the per-remote configuration and
names the cache directory; the reader never fetches.
"""

from __future__ import annotations

from typing import Any, Mapping

import salt.utils.gitfs


def provider_class(reader: type) -> type:
    """``reader`` on top of Salt's ``GitProvider``: what Salt instantiates per remote."""
    return type("CacheReader", (reader, salt.utils.gitfs.GitProvider), {"__doc__": reader.__doc__})


def gitfs_objects(opts: Mapping[str, Any], reader: type, provider: str) -> list[Any]:
    """One ``GitFS`` over ``gitfs_remotes``, each remote read by ``reader`` (as provider ``provider``)."""
    from salt.fileserver.gitfs import PER_REMOTE_ONLY, PER_REMOTE_OVERRIDES

    conf = dict(opts)  # Salt writes the verified provider into the opts it gets
    conf["verified_gitfs_provider"] = provider
    # init_remotes=False: GitFS would otherwise reuse (or become) the process-wide instance.
    gitfs = salt.utils.gitfs.GitFS(conf, [], git_providers={provider: provider_class(reader)}, init_remotes=False)
    gitfs.init_remotes(conf.get("gitfs_remotes") or [], PER_REMOTE_OVERRIDES, PER_REMOTE_ONLY)
    return [gitfs]


def git_pillar_objects(opts: Mapping[str, Any], sources: list[list[Any]], reader: type, provider: str) -> list[Any]:
    """One ``GitPillar`` per ``ext_pillar`` git entry (``sources``), each remote read by ``reader``."""
    from salt.pillar import git_pillar

    conf = dict(opts)
    conf["verified_git_pillar_provider"] = provider
    providers = {provider: provider_class(reader)}
    return [salt.utils.gitfs.GitPillar(conf, remotes, per_remote_overrides=git_pillar.PER_REMOTE_OVERRIDES,
                                       per_remote_only=git_pillar.PER_REMOTE_ONLY,
                                       global_only=git_pillar.GLOBAL_ONLY, git_providers=providers)
            for remotes in sources]
