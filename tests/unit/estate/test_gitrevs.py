"""Revisions of gitfs / git_pillar remotes, read from a real master cache filled by Salt itself.

Each test makes real git repositories (``git init``, commits), points a master's opts at them
through ``file://`` URLs, and fills the cache the way the master's maintenance process does
(Salt's ``GitFS.update()`` / ``GitPillar.fetch_remotes()`` with the master's provider). The
fingerprint must follow what the cache holds: a commit pushed upstream changes nothing until
the master fetches it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.estate import gitrevs
from salt_redis_syndic.estate.drift import (
    Fingerprinter,
    compared_digests,
    digests,
    drift_report,
    in_sync,
)
from salt_redis_syndic.estate.gitrevs import NOT_CLONED, GitRevisions
from salt_redis_syndic.estate.records import FileSet, decode_fileset
from salt_redis_syndic.salt_adapter.release import running

from support.gitrepo import git

pytestmark = pytest.mark.unit

def commit(repo: Path, path: str, text: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", f"{path}: {text[:20]}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """A repo with ``master`` (top.sls), ``dev`` one commit ahead and an annotated tag ``v1``."""
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    commit(repo, "top.sls", "base:\n  '*': [web]\n")
    git(repo, "tag", "-a", "v1", "-m", "release 1")
    git(repo, "checkout", "-q", "-b", "dev")
    commit(repo, "web.sls", "dev web\n")
    git(repo, "checkout", "-q", "master")
    return repo


def master_opts(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A master's opts as ``salt.config`` builds them (plain lists, every gitfs default)."""
    import salt.config

    base = {"cachedir": str(tmp_path / "cache"), "sock_dir": str(tmp_path / "sock"), "fileserver_backend": ["gitfs"],
            "file_roots": {"base": [str(tmp_path / "srv")]}, "pillar_roots": {}}
    return salt.config.apply_master_config({**base, **overrides})


def master_fetches_gitfs(opts: dict[str, Any]) -> None:
    """What the master's FileserverUpdate process does every gitfs_update_interval."""
    import salt.utils.gitfs
    from salt.fileserver.gitfs import PER_REMOTE_ONLY, PER_REMOTE_OVERRIDES

    fs = salt.utils.gitfs.GitFS(dict(opts), [], init_remotes=False)  # not the per-process instance
    fs.init_remotes(opts["gitfs_remotes"], PER_REMOTE_OVERRIDES, PER_REMOTE_ONLY)
    # The master's provider: GitPython here unless the opts say gitcli; ours reads either cache.
    assert fs.provider == (opts.get("gitfs_provider") or "gitpython")
    try:
        fs.update()
    finally:
        for repo in fs.remotes:
            if hasattr(repo.repo, "close"):
                repo.repo.close()


def master_fetches_git_pillar(opts: dict[str, Any]) -> None:
    """What the master's Maintenance process does every git_pillar_update_interval."""
    import salt.daemons.masterapi

    for pillar in salt.daemons.masterapi.init_git_pillar(dict(opts)):
        try:
            pillar.fetch_remotes()
        finally:
            for repo in pillar.remotes:
                repo.repo.close()


def url(repo: Path) -> str:
    return f"file://{repo}"


def tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


# The master's own provider filling the cache: Salt 3006 and 3007 have no gitcli.
GITCLI = pytest.param("gitcli", marks=pytest.mark.skipif(running() < (3008, 0), reason="no gitcli before Salt 3008"))


@pytest.mark.parametrize("provider", ["gitpython", GITCLI])
def test_gitfs_revisions_per_saltenv_follow_the_cache_not_the_remote(tmp_path: Path, upstream: Path, provider: str) -> None:
    opts = master_opts(tmp_path, gitfs_remotes=[url(upstream)], gitfs_provider=provider)
    revs = GitRevisions(opts)
    # The master has not fetched yet: reported as such, under base.
    assert revs.listing("gitfs") == {"base": {url(upstream): NOT_CLONED}}

    master_fetches_gitfs(opts)
    master_sha, dev_sha = git(upstream, "rev-parse", "master"), git(upstream, "rev-parse", "dev")
    tag_sha = git(upstream, "rev-parse", "v1^{commit}")
    assert tag_sha == master_sha
    assert revs.listing("gitfs") == {"base": {url(upstream): master_sha}, "dev": {url(upstream): dev_sha},
                                     "v1": {url(upstream): tag_sha}}

    # A commit upstream is not served until the master fetches it: nor is it fingerprinted.
    new_sha = commit(upstream, "top.sls", "base:\n  '*': [web, db]\n")
    assert revs.listing("gitfs")["base"] == {url(upstream): master_sha}
    master_fetches_gitfs(opts)
    after = revs.listing("gitfs")
    assert after["base"] == {url(upstream): new_sha} and after["dev"] == {url(upstream): dev_sha}


def test_saltenv_mapping_whitelist_root_and_mountpoint_are_salts(tmp_path: Path, upstream: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    other_sha = commit(other, "states/app.sls", "app\n")
    remotes = [
        {url(upstream): [{"base": "dev"}, {"saltenv": [{"prod": [{"ref": "v1"}]}]}]},
        {url(other): [{"root": "states"}, {"mountpoint": "salt://other"}]},
    ]
    opts = master_opts(tmp_path, gitfs_remotes=remotes, gitfs_saltenv_whitelist=["base", "prod", "main"])
    master_fetches_gitfs(opts)
    listing = GitRevisions(opts).listing("gitfs")
    other_label = f"{url(other)} (root=states, mountpoint=other)"
    assert listing == {
        "base": {url(upstream): git(upstream, "rev-parse", "dev")},  # per-remote base: dev serves base
        "prod": {url(upstream): git(upstream, "rev-parse", "v1^{commit}")},  # per-remote saltenv ref
        "main": {other_label: other_sha},  # the other remote has no master branch: no base
    }


def test_git_pillar_revisions_per_remote_and_branch(tmp_path: Path, upstream: Path) -> None:
    ext = [{"git": [f"master {url(upstream)}", f"dev {url(upstream)}", {f"__env__ {url(upstream)}": [{"name": "envs"}]},
                    {f"v1 {url(upstream)}": [{"env": "frozen"}]}]}]
    opts = master_opts(tmp_path, fileserver_backend=["roots"], ext_pillar=ext)
    revs = GitRevisions(opts)
    assert revs.listing("gitfs") is None  # not a gitfs master
    assert revs.listing("git_pillar")["base"][f"master {url(upstream)}"] == NOT_CLONED

    master_fetches_git_pillar(opts)
    master_sha, dev_sha = git(upstream, "rev-parse", "master"), git(upstream, "rev-parse", "dev")
    assert revs.listing("git_pillar") == {
        "base": {f"master {url(upstream)}": master_sha, f"__env__ {url(upstream)} (name=envs)": master_sha},
        "dev": {f"dev {url(upstream)}": dev_sha},
        "frozen": {f"v1 {url(upstream)}": git(upstream, "rev-parse", "v1^{commit}")},
    }
    git(upstream, "checkout", "-q", "dev")
    new_dev = commit(upstream, "web.sls", "dev web 2\n")
    assert revs.listing("git_pillar")["dev"] == {f"dev {url(upstream)}": dev_sha}
    master_fetches_git_pillar(opts)
    assert revs.listing("git_pillar")["dev"] == {f"dev {url(upstream)}": new_dev}


def test_reading_writes_nothing_in_the_master_cache(tmp_path: Path, upstream: Path) -> None:
    opts = master_opts(tmp_path, gitfs_remotes=[url(upstream)], ext_pillar=[{"git": [f"master {url(upstream)}"]}])
    master_fetches_gitfs(opts)
    master_fetches_git_pillar(opts)
    revs = GitRevisions(opts)
    revs.listing("gitfs"), revs.listing("git_pillar")  # build Salt's objects once
    before = tree(tmp_path / "cache")
    commit(upstream, "top.sls", "changed upstream\n")
    for _ in range(2):
        assert revs.listing("gitfs")["base"] == {url(upstream): git(upstream, "rev-parse", "master~1")}
        assert revs.listing("git_pillar")["base"] == {f"master {url(upstream)}": git(upstream, "rev-parse", "master~1")}
    assert tree(tmp_path / "cache") == before


def test_fingerprinter_lists_git_kinds_only_where_the_master_uses_them(tmp_path: Path, upstream: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "top.sls").write_text("base: {}\n")
    kinds = ("file_roots", "pillar_roots", "gitfs", "git_pillar")
    roots_only = master_opts(tmp_path, fileserver_backend=["roots"], gitfs_remotes=[url(upstream)])
    assert set(Fingerprinter().listing(roots_only, kinds)) == {"file_roots", "pillar_roots"}

    opts = master_opts(tmp_path, fileserver_backend=["roots", "git"], gitfs_remotes=[url(upstream)])
    master_fetches_gitfs(opts)
    fp = Fingerprinter()
    listing = fp.listing(opts, kinds)
    assert set(listing) == {"file_roots", "pillar_roots", "gitfs"}
    before = digests(listing)
    commit(upstream, "top.sls", "new\n")
    master_fetches_gitfs(opts)
    after = digests(fp.listing(opts, kinds))
    assert after["gitfs"]["base"] != before["gitfs"]["base"] and after["gitfs"]["dev"] == before["gitfs"]["dev"]
    assert after["file_roots"] == before["file_roots"]
    # The signed listing record carries commits and markers, and nothing else, for git kinds.
    record = FileSet("east", 1.0, {"gitfs": {"base": {url(upstream): NOT_CLONED, "x": "a" * 40}}}).encode()
    assert decode_fileset(record, 1 << 20).listing["gitfs"]["base"]["x"] == "a" * 40
    with pytest.raises(RejectedEntry):
        decode_fileset(FileSet("east", 1.0, {"gitfs": {"base": {"x": "main"}}}).encode(), 1 << 20)


def test_a_missing_git_command_is_one_log_line_not_a_traceback_per_interval(
        tmp_path: Path, upstream: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    opts = master_opts(tmp_path, gitfs_remotes=[url(upstream)])
    master_fetches_gitfs(opts)
    revs = GitRevisions(opts)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with caplog.at_level(logging.ERROR, logger=gitrevs.__name__):
        assert revs.listing("gitfs") is None
        assert revs.listing("gitfs") is None
    lines = [r for r in caplog.records if r.name == gitrevs.__name__]
    assert len(lines) == 1 and "git command is not installed" in lines[0].getMessage() and not lines[0].exc_info


def test_a_configuration_salt_rejects_is_one_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    opts = master_opts(tmp_path, gitfs_remotes=[{"file:///x": [{"no_such_param": 1}]}])
    revs = GitRevisions(opts)
    with caplog.at_level(logging.ERROR, logger=gitrevs.__name__):
        assert revs.listing("gitfs") is None
        assert revs.listing("gitfs") is None
    lines = [r for r in caplog.records if r.name == gitrevs.__name__]
    assert len(lines) == 1 and "Salt cannot read the gitfs configuration" in lines[0].getMessage()


def test_drift_report_names_saltenv_remote_and_both_commits() -> None:
    a, b = "a" * 40, "b" * 40
    mom = {"gitfs": {"base": {"file:///srv/states": a}, "dev": {"file:///srv/states": b}}}
    east = {"gitfs": {"base": {"file:///srv/states": b}, "dev": {"file:///srv/states": b}}}
    west = {"gitfs": {"base": {"file:///srv/states": a, "file:///srv/extra": NOT_CLONED}}}
    report = drift_report(mom, {"east": east, "west": west}, {"east": digests(east), "west": digests(west)})
    assert report["dcs"]["east"]["gitfs"] == {"base": {"changed": {"file:///srv/states": {"mom": a, "dc": b}}},
                                             "dev": "in sync"}
    assert report["dcs"]["west"]["gitfs"] == {
        "base": {"only_on_dc": {"file:///srv/extra": NOT_CLONED}},
        "dev": {"missing_on_dc": {"file:///srv/states": b}, "saltenv": "not served by the DC"}}
    synced = drift_report(mom, {"east": None}, {"east": digests(mom)})
    assert in_sync(synced["dcs"]["east"]) and synced["dcs_agree"] == {"gitfs": {"base": True, "dev": True}}


def test_a_remote_the_master_cannot_fetch_or_read_is_named_not_dropped(tmp_path: Path, upstream: Path) -> None:
    gone = tmp_path / "gone"
    opts = master_opts(tmp_path, gitfs_remotes=[url(upstream), url(gone)])
    master_fetches_gitfs(opts)  # Salt logs the failed fetch of the missing remote and goes on
    revs = GitRevisions(opts)
    listing = revs.listing("gitfs")
    assert listing["base"] == {url(upstream): git(upstream, "rev-parse", "master"), url(gone): NOT_CLONED}
    # A cache git cannot read any more (here: its HEAD destroyed) is told apart from "not cloned".
    cachedir = next(r.get_cachedir() for r in revs._built["gitfs"][0].remotes if r.id == url(upstream))
    Path(cachedir, ".git", "HEAD").write_text("garbage\n")
    assert revs.listing("gitfs")["base"] == {url(upstream): gitrevs.UNREADABLE, url(gone): NOT_CLONED}


def test_drift_roots_default_takes_the_git_kinds_and_rejects_unknown_ones() -> None:
    from salt_redis_syndic.config import ConfigError, load_settings

    def settings(**block: Any) -> Any:
        return load_settings({"id": "east-master", "redis_syndic": {"role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1",
                                                                   "trusted_keys": ["/nonexistent.pub"], **block}})

    assert settings().drift_roots == ("file_roots", "pillar_roots", "gitfs", "git_pillar")
    assert settings(drift_roots=["gitfs"]).drift_roots == ("gitfs",)
    with pytest.raises(ConfigError, match="git_pillar"):
        settings(drift_roots=["hgfs"])


def test_a_dc_without_the_moms_gitfs_serves_none_of_it() -> None:
    a = "a" * 40
    mom = {"file_roots": {"base": {"top.sls": "f" * 64}}, "gitfs": {"base": {"file:///srv/states": a}}}
    own = digests(mom)
    east = {"file_roots": mom["file_roots"]}  # a roots-only DC: no gitfs kind in its head
    compared = ("file_roots", "pillar_roots", "gitfs", "git_pillar")
    files = compared_digests(digests(east), own, compared)
    assert files == {"file_roots": own["file_roots"], "gitfs": {}}
    report = drift_report(mom, {"east": east}, {"east": files})
    assert report["dcs"]["east"] == {"file_roots": {"base": "in sync"}, "gitfs": {
        "base": {"missing_on_dc": {"file:///srv/states": a}, "saltenv": "not served by the DC"}}}
    # A kind the MoM leaves out of drift_roots is not compared, and one neither side uses stays out.
    assert compared_digests(digests(mom), own, ("file_roots",)) == {"file_roots": own["file_roots"]}
    assert "git_pillar" not in compared_digests(digests(east), own, compared)
