"""The MoM's job cache adapter against Salt's own job cache code: a return is kept, or the store fails loudly.

Real ``salt.utils.job.store_job`` and returners loaded by Salt's loader (``local_cache``, and a
returner of our own as ``master_job_cache``) on a cache directory in ``tmp_path``; no daemons.
``bus=None``: no event is fired (what a retried store does), the job cache is what is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salt_redis_syndic.errors import StoreFailed

pytestmark = pytest.mark.functional

JID = "20240501123456789012"
LOAD = {"jid": JID, "id": "m1", "return": {"x": 1}, "retcode": 0, "success": True, "fun": "test.ping"}

# A master_job_cache returner that fails like a full disk while a flag file exists.
FLAKY = '''
import json, os

def _dir():
    return os.path.join(__opts__["cachedir"], "flaky")

def prep_jid(nocache=False, passed_jid=None):
    return passed_jid

def save_load(jid, load, minions=None):
    pass

def get_load(jid):
    return {}

def returner(load):
    if os.path.exists(os.path.join(__opts__["cachedir"], "disk_full")):
        raise OSError(28, "No space left on device")
    os.makedirs(_dir(), exist_ok=True)
    with open(os.path.join(_dir(), load["jid"] + "." + load["id"]), "w") as fh:
        json.dump(load, fh)

def get_jid(jid):
    return {}
'''


def job_cache(tmp_path: Path, **extra):
    import salt.config

    from salt_redis_syndic.salt_adapter import JobCache

    conf = tmp_path / "master"
    lines = [f"cachedir: {tmp_path / 'cache'}", f"sock_dir: {tmp_path / 'sock'}", f"pki_dir: {tmp_path / 'pki'}",
             f"log_file: {tmp_path / 'master.log'}"] + [f"{k}: {v}" for k, v in extra.items()]
    conf.write_text("\n".join(lines) + "\n")
    opts = salt.config.master_config(str(conf))
    return JobCache(opts), opts


def publish(opts, minions=("m1",)) -> None:
    """What the MoM's own publish leaves in local_cache: the jid's directory, its load and minion list."""
    import salt.loader

    returners = salt.loader.returners(opts, {})
    returners["local_cache.prep_jid"](passed_jid=JID)
    returners["local_cache.save_load"](JID, {"jid": JID, "fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob"},
                                       minions=list(minions))


def minion_dir(opts, jid: str, minion: str) -> Path:
    import salt.utils.jid

    return Path(salt.utils.jid.jid_dir(jid, os.path.join(opts["cachedir"], "jobs"), opts["hash_type"])) / minion


def test_a_return_is_stored_and_read_back(tmp_path):
    cache, _ = job_cache(tmp_path)
    cache.store_job(dict(LOAD), None)
    assert cache.get_return(JID, "m1") == {"return": {"x": 1}, "retcode": 0, "success": True}


def test_a_return_stored_before_is_kept(tmp_path):
    # A MoM killed after the store and before its ledger noted it stores the return again:
    # Salt says "Duplicate return" and keeps the first one, which is there: nothing fails.
    cache, opts = job_cache(tmp_path)
    publish(opts)
    cache.store_job(dict(LOAD), None)
    cache.store_job({**LOAD, "return": {"x": 2}}, None)
    assert cache.get_return(JID, "m1")["return"] == {"x": 1}


@pytest.mark.parametrize("leftover", [None, ".___atomic_writeabc123"])
def test_a_half_written_return_is_completed(tmp_path, leftover):
    # Killed between local_cache's makedirs(<jid>/<minion>) and its write of return.p (or the
    # write failed, leaving the atomic writer's temp file): Salt then logs "Duplicate return"
    # and writes nothing, every time.  The adapter writes return.p itself.
    cache, opts = job_cache(tmp_path)
    publish(opts)
    half = minion_dir(opts, JID, "m1")
    half.mkdir()
    if leftover:
        (half / leftover).write_bytes(b"\x81\xa6ret")
    cache.store_job({**LOAD, "out": "highstate"}, None)
    assert cache.get_return(JID, "m1") == {"return": {"x": 1}, "retcode": 0, "success": True, "out": "highstate"}


def test_a_return_that_cannot_be_written_fails_the_store(tmp_path):
    cache, opts = job_cache(tmp_path)
    publish(opts)
    minion_dir(opts, JID, "m1").write_text("not a directory")  # nothing can be written under it
    with pytest.raises(StoreFailed) as err:
        cache.store_job(dict(LOAD), None)
    assert err.value.retryable
    assert cache.get_return(JID, "m1") is None


def test_a_job_cache_that_raises_fails_the_store(tmp_path):
    returners = tmp_path / "returners"
    returners.mkdir()
    (returners / "flaky.py").write_text(FLAKY)
    cache, opts = job_cache(tmp_path, master_job_cache="flaky", returner_dirs=f"[{returners}]")
    Path(opts["cachedir"]).mkdir(parents=True, exist_ok=True)
    (Path(opts["cachedir"]) / "disk_full").write_text("")
    with pytest.raises(StoreFailed) as err:
        cache.store_job(dict(LOAD), None)
    assert err.value.retryable and "No space left" in str(err.value)
    os.remove(Path(opts["cachedir"]) / "disk_full")
    cache.store_job(dict(LOAD), None)  # trusted: it did not raise
    assert (Path(opts["cachedir"]) / "flaky" / f"{JID}.m1").exists()


def test_salt_refusing_the_load_is_final(tmp_path):
    cache, _ = job_cache(tmp_path)
    with pytest.raises(StoreFailed) as err:
        cache.store_job({"jid": JID, "id": "m1"}, None)  # no "return": Salt ignores it
    assert not err.value.retryable


def test_no_job_cache_means_nothing_to_check(tmp_path):
    cache, opts = job_cache(tmp_path, job_cache="False")
    cache.store_job(dict(LOAD), None)
    assert not minion_dir(opts, JID, "m1").exists()
