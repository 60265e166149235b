"""Fingerprints of file_roots / pillar_roots and the drift report."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from salt_redis_syndic.estate import drift
from salt_redis_syndic.estate.drift import (
    Fingerprinter,
    compare,
    digests,
    drift_report,
    in_sync,
)

pytestmark = pytest.mark.unit


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_first_root_wins_and_vcs_dirs_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "a" / "web").mkdir(parents=True)
    (tmp_path / "b" / ".git").mkdir(parents=True)
    (tmp_path / "a" / "web" / "init.sls").write_text("one")
    (tmp_path / "b" / "web").mkdir()
    (tmp_path / "b" / "web" / "init.sls").write_text("two")
    (tmp_path / "b" / "only.sls").write_text("b")
    (tmp_path / "b" / ".git" / "HEAD").write_text("ref")
    files = Fingerprinter().files([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "missing")])
    assert files == {"web/init.sls": sha("one"), "only.sls": sha("b")}


def test_unchanged_files_are_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "top.sls").write_text("base")
    fp = Fingerprinter()
    opts = {"file_roots": {"base": [str(tmp_path)]}}
    first = fp.listing(opts, ("file_roots",))
    reads = []

    def counting_open(path, *args, **kwargs):
        reads.append(path)
        return open(path, *args, **kwargs)

    monkeypatch.setattr(drift, "open", counting_open, raising=False)
    assert fp.listing(opts, ("file_roots",)) == first
    assert reads == []
    (tmp_path / "top.sls").write_text("changed!")
    assert fp.listing(opts, ("file_roots",))["file_roots"]["base"]["top.sls"] == sha("changed!")
    assert reads == [str(tmp_path / "top.sls")]


def test_report_names_files_per_dc_and_whether_dcs_agree() -> None:
    mom = {"file_roots": {"base": {"top.sls": sha("t"), "web.sls": sha("w")}}}
    east = {"file_roots": {"base": {"top.sls": sha("t"), "web.sls": sha("W!"), "extra.sls": sha("x")}}}
    west = {"file_roots": {"base": {"top.sls": sha("t")}, "dev": {"a.sls": sha("a")}}}
    report = drift_report(mom, {"east": east, "west": west, "north": None},
                          {"east": digests(east), "west": digests(west), "north": digests(mom)})
    assert report["dcs"]["north"] == {"file_roots": {"base": "in sync"}} and in_sync(report["dcs"]["north"])
    assert report["dcs"]["east"]["file_roots"]["base"] == {"changed": ["web.sls"], "only_on_dc": ["extra.sls"]}
    assert report["dcs"]["west"]["file_roots"]["base"] == {"missing_on_dc": ["web.sls"]}
    assert report["dcs"]["west"]["file_roots"]["dev"] == {"only_on_dc": ["a.sls"], "saltenv": "not served by the MoM"}
    assert report["dcs_agree"] == {"file_roots": {"base": False, "dev": False}}
    assert compare({"a": "1"}, {"a": "1"}) == {"changed": [], "only_on_dc": [], "missing_on_dc": []}
