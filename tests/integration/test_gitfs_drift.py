"""gitfs drift against real daemons: a DC whose gitfs serves another commit than the MoM's.

The MoM and both DC masters serve ``fileserver_backend: [roots, gitfs]`` from one local bare
repository (``file://``), fetched by each master every second.  The MoM and west serve base
from ``master``; east's remote maps base to the ``release`` branch (a per-remote ``base``),
which starts at the same commit.  A commit pushed to ``release`` only must show as drift of
east naming the saltenv, the remote and both commits, and the report must return to "in sync"
once ``master`` catches up.  (``gitfs_saltenv_whitelist: [base]`` on every master: east's
mapping would otherwise also expose ``master`` as a saltenv of its own.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, wait_until

from support.gitrepo import GIT_ENV, git

pytestmark = pytest.mark.integration

DCS = ("east", "west")
FAST = {"estate_interval": 1, "drift_interval": 1}
class Upstream:
    """The bare repository every master's gitfs fetches, and a clone to push commits from."""

    def __init__(self, base: Path) -> None:
        self.bare = base / "states.git"
        self.work = base / "work"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "master", str(self.bare)], check=True, env=GIT_ENV)
        subprocess.run(["git", "clone", "-q", str(self.bare), str(self.work)], check=True, capture_output=True, env=GIT_ENV)
        git(self.work, "checkout", "-q", "-b", "master")
        self.commit("gitfs_lab/init.sls", "gitfs-lab:\n  test.succeed_without_changes\n")
        git(self.work, "push", "-q", "origin", "master", "master:release")

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, path: str, text: str) -> str:
        (self.work / path).parent.mkdir(parents=True, exist_ok=True)
        (self.work / path).write_text(text)
        git(self.work, "add", path)
        git(self.work, "commit", "-q", "-m", f"change {path}")
        return git(self.work, "rev-parse", "HEAD")

    def sha(self, branch: str) -> str:
        return git(self.bare, "rev-parse", branch)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    return Upstream(tmp_path_factory.mktemp("gitfs"))


@pytest.fixture(scope="module")
def gitfs_lab(upstream: Upstream) -> Iterator[Lab]:
    common = {"fileserver_backend": ["roots", "gitfs"], "gitfs_update_interval": 1, "gitfs_saltenv_whitelist": ["base"]}

    def dc_opts(dc: str) -> dict[str, Any]:
        remote: Any = {upstream.url: [{"base": "release"}]} if dc == "east" else upstream.url
        return {**common, "gitfs_remotes": [remote]}

    lab = Lab(dcs=DCS, minions_per_dc=1, mom_bridge=FAST, dc_bridge=FAST,
              mom_opts={**common, "gitfs_remotes": [upstream.url]}, dc_opts=dc_opts)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


def gitfs_drift(lab: Lab) -> dict[str, Any]:
    report = lab.salt_run_json("redis_syndic.drift")
    return {dc: row.get("gitfs") for dc, row in report.get("dcs", {}).items()}


def test_a_dc_serving_another_commit_shows_as_gitfs_drift_until_it_matches_again(gitfs_lab: Lab, upstream: Upstream) -> None:
    synced = {"base": "in sync"}
    wait_until(lambda: gitfs_drift(gitfs_lab) == {"east": synced, "west": synced}, 60,
               "gitfs in sync on both DCs (every master fetched the same commit)")
    served = upstream.sha("master")

    git(upstream.work, "checkout", "-q", "-b", "release", "origin/release")
    fresh = upstream.commit("gitfs_lab/init.sls", "gitfs-lab:\n  test.succeed_with_changes\n")
    git(upstream.work, "push", "-q", "origin", "release")

    want_east = {"base": {"changed": {upstream.url: {"mom": served, "dc": fresh}}}}
    drift = wait_until(lambda: (lambda d: d if d.get("east") == want_east else None)(gitfs_drift(gitfs_lab)), 30,
                       "east's gitfs drift naming base, the remote and both commits")
    assert drift["west"] == synced
    report = gitfs_lab.salt_run_json("redis_syndic.drift")
    assert report["dcs_agree"]["gitfs"] == {"base": False}
    assert wait_until(lambda: f"gitfs:base ({upstream.url} {served[:12]} -> {fresh[:12]})" in gitfs_lab.log("mom"), 10,
                      "the MoM's warning naming east's commit")

    # The fix: master catches up with release, every master fetches it, the drift is gone.
    git(upstream.work, "push", "-q", "origin", "release:master")
    wait_until(lambda: gitfs_drift(gitfs_lab) == {"east": synced, "west": synced}, 30,
               "gitfs in sync again once master has the release commit")
    report = gitfs_lab.salt_run_json("redis_syndic.drift")
    assert report["dcs_agree"]["gitfs"] == {"base": True}
    for name in ("mom", *DCS):  # the engines read every cache without a complaint
        assert "revisions are not fingerprinted" not in gitfs_lab.log(name)
        assert "cannot read the gitfs" not in gitfs_lab.log(name)
