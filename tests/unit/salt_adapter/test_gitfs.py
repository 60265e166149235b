"""salt_adapter.gitfs against the installed Salt: the reader stands in for a provider that release
accepts credentials for, and Salt's per-remote parsing builds it without fetching anything.

Run on both CI venvs (Salt 3008 in .venv, 3006 in .venv-salt3006): the release-specific
assertion is chosen by the running release, so each branch runs in one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from salt_redis_syndic.estate.gitrevs import NOT_CLONED, CacheRefs, GitRevisions
from salt_redis_syndic.salt_adapter import gitfs
from salt_redis_syndic.salt_adapter.release import running

pytestmark = pytest.mark.unit


def master_opts(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    import salt.config

    base = {"cachedir": str(tmp_path / "cache"), "sock_dir": str(tmp_path / "sock"), "fileserver_backend": ["gitfs"],
            "file_roots": {"base": [str(tmp_path / "srv")]}, "pillar_roots": {}}
    return salt.config.apply_master_config({**base, **overrides})


@pytest.mark.skipif(running() < (3008, 0), reason="3008+: gitcli exists and takes credentials")
def test_on_3008_the_reader_stands_in_for_gitcli() -> None:
    import salt.utils.gitfs

    assert "gitcli" in salt.utils.gitfs.AUTH_PROVIDERS
    assert gitfs.reader_provider() == "gitcli"


@pytest.mark.skipif(running() >= (3008, 0), reason="3006/3007: no gitcli, credentials for pygit2 only")
def test_before_3008_the_reader_stands_in_for_pygit2() -> None:
    import salt.utils.gitfs

    assert "gitcli" not in salt.utils.gitfs.GIT_PROVIDERS
    assert salt.utils.gitfs.AUTH_PROVIDERS == ("pygit2",)
    assert gitfs.reader_provider() == "pygit2"


def test_salts_base_provider_does_not_initialise_a_remote_by_itself_before_3008_only() -> None:
    """3006/3007's GitProvider.__init__ calls init_remote (the base raises); 3008 leaves it to subclasses."""
    import inspect

    import salt.utils.gitfs

    calls = "self.init_remote()" in inspect.getsource(salt.utils.gitfs.GitProvider.__init__)
    assert calls == (running() < (3008, 0))
    assert gitfs.provider_class(CacheRefs).init_remote(object()) is False  # our reader has nothing to set up


def test_a_remote_with_credentials_is_parsed_and_nothing_is_fetched(tmp_path: Path) -> None:
    remote = {"https://git.example.invalid/states.git": [{"user": "bot"}, {"password": "s3cret"},
                                                          {"insecure_auth": True}]}
    opts = master_opts(tmp_path, gitfs_remotes=[remote])
    listing = GitRevisions(opts).listing("gitfs")
    assert listing == {"base": {"https://git.example.invalid/states.git": NOT_CLONED}}
    assert not list((tmp_path / "cache" / "gitfs").rglob("objects"))  # no repository was initialised
