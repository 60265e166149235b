"""find_job for a job sent to some DCs: the MoM answers for the other DCs' mirrored minions."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.jobs import findjob
from salt_redis_syndic.config import load_settings
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.jobs import encode_job
from salt_redis_syndic.wire.subjobs import job_identity
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.jobs.publisher import JobPublisher
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.signing import Signer

from support.fakes import FakeBus

pytestmark = pytest.mark.unit

JOB = "20240501123456789012"
FIND = "20240501123501000000"
MOM_KEY = Signer(Ed25519PrivateKey.generate())


def find_load(tgt: Any, **extra: Any) -> dict[str, Any]:
    return {"fun": "saltutil.find_job", "arg": [JOB], "tgt": tgt, "tgt_type": "list", "jid": FIND, "ret": "",
            "user": "root", **extra}


def test_asked_reads_the_jid_and_the_listed_minions() -> None:
    assert findjob.asked(find_load(["e1", "w1"])) == (JOB, ["e1", "w1"])
    assert findjob.asked(find_load("e1,w1")) == (JOB, ["e1", "w1"])
    assert findjob.asked({**find_load(["e1"]), "tgt_type": "glob"}) is None
    assert findjob.asked({**find_load(["e1"]), "fun": "test.ping"}) is None
    assert findjob.asked({**find_load(["e1"]), "arg": []}) is None
    assert findjob.asked({**find_load(None)}) is None


def test_unaddressed_keeps_only_mirrors_of_other_dcs() -> None:
    owners = {"e1": "east", "w1": "west", "own": None}
    assert findjob.unaddressed(["e1", "w1", "own", "unknown"], owners, ["east"]) == {"w1": "west"}
    assert findjob.unaddressed(["e1", "w1"], owners, ["east", "west"]) == {}


def test_untargeted_keeps_minions_their_dc_did_not_run_the_job_on() -> None:
    owners = {"e1": "east", "e2": "east", "w1": "west", "n1": "north", "own": None}
    acks = {"east": ("published", ["e1"]), "west": ("refused", [])}  # north has not acknowledged yet
    assert findjob.untargeted(["e1", "e2", "w1", "n1", "own"], owners, acks) == {"e2": "east", "w1": "west"}
    assert findjob.untargeted(["e1"], owners, {}) == {}


def test_answer_is_what_salts_cli_drops_a_minion_for() -> None:
    tag, data = findjob.answer(FIND, JOB, "w1", findjob.not_addressed_why(JOB, "w1", "west", ["east"]))
    assert tag == f"salt/job/{FIND}/ret/w1"
    # LocalClient.get_iter_returns: ``if raw["data"]["retcode"] > 0: minions.remove(raw["data"]["id"])``
    assert data["retcode"] > 0 and data["id"] == "w1" and data["jid"] == FIND and data["return"] == {}
    assert "east" in data["redis_syndic"] and "west" in data["redis_syndic"]


def publisher(tmp_path: Any, owners: Any) -> tuple[JobPublisher, FakeBus]:
    settings = load_settings({"id": "mom1", "cachedir": str(tmp_path / "mom"), "redis_syndic": {
        "role": "mom", "redis_url": "redis://127.0.0.1:1/0"}})
    bus = FakeBus()
    ledger = MomLedger(str(tmp_path / "mom.sqlite"))
    pub = JobPublisher(settings, bus, MOM_KEY, queue.Queue(), Counters(), threading.Event(), ledger=ledger,
                       owners=owners)
    return pub, bus


def record(pub: JobPublisher, load: dict[str, Any]) -> None:
    job = pub.job_from_event(f"salt/job/{load['jid']}/publish", load)
    assert job is not None
    pub.ledger.add_outbox([(job.jid, pack(encode_job(job, MOM_KEY, {})), job.expires_at, job_identity(job.load))])


def test_publisher_answers_for_minions_of_dcs_the_job_was_not_sent_to(tmp_path: Any) -> None:
    owners = {"e1": "east", "w1": "west", "n1": "north"}
    pub, bus = publisher(tmp_path, lambda ms: {m: owners.get(m) for m in ms})
    record(pub, {"fun": "test.sleep", "arg": [60], "tgt": "*", "tgt_type": "glob", "jid": JOB, "ret": "",
                 "user": "root", "metadata": {"redis_syndic": {"dcs": ["east", "north"]}}})
    find = pub.job_from_event(f"salt/job/{FIND}/publish", find_load(["e1", "w1", "n1"]))
    assert find is not None
    pub.answer_find_job(find)
    assert [t for t, _ in bus.events] == [f"salt/job/{FIND}/ret/w1"]


def test_publisher_answers_nothing_for_a_job_sent_to_every_dc_or_unknown(tmp_path: Any) -> None:
    pub, bus = publisher(tmp_path, lambda ms: {m: "west" for m in ms})
    record(pub, {"fun": "test.sleep", "arg": [60], "tgt": "*", "tgt_type": "glob", "jid": JOB, "ret": "",
                 "user": "root"})
    pub.answer_find_job(pub.job_from_event(f"salt/job/{FIND}/publish", find_load(["w1"])))
    other = {**find_load(["w1"]), "arg": ["20240501000000000000"]}  # a jid this MoM never sent
    pub.answer_find_job(pub.job_from_event(f"salt/job/{FIND}/publish", other))
    assert bus.events == []


def test_publisher_answers_for_minions_their_dc_did_not_target(tmp_path: Any) -> None:
    owners = {"e1": "east", "e2": "east", "w1": "west"}
    pub, bus = publisher(tmp_path, lambda ms: {m: owners.get(m) for m in ms})
    record(pub, {"fun": "test.sleep", "arg": [60], "tgt": "* and not G@role:db", "tgt_type": "compound", "jid": JOB,
                 "ret": "", "user": "root"})
    find = pub.job_from_event(f"salt/job/{FIND}/publish", find_load(["e1", "e2", "w1"]))
    assert find is not None
    pub.answer_find_job(find)
    assert bus.events == []  # no DC acknowledged yet: nothing is known, Salt decides
    collector_view = MomLedger(str(tmp_path / "mom.sqlite"))  # the collect loop's own ledger
    collector_view.record_ack(JOB, "east", "published", ["e1"])
    collector_view.record_ack(JOB, "west", "published", ["w1"])
    pub.answer_find_job(find)
    assert [t for t, _ in bus.events] == [f"salt/job/{FIND}/ret/e2"]
    assert "without targeting e2" in bus.events[0][1]["redis_syndic"]


def test_publisher_waits_for_the_ack_of_every_sub_batch_sent(tmp_path: Any) -> None:
    """Batch mode: a DC's list is final only once it acknowledged every sub-job the MoM sent."""
    owners = {"e1": "east", "e2": "east"}
    pub, bus = publisher(tmp_path, lambda ms: {m: owners.get(m) for m in ms})
    first = {"fun": "test.sleep", "arg": [60], "tgt": ["e1"], "tgt_type": "list", "jid": JOB, "ret": "", "user": "root"}
    second = {**first, "tgt": ["e2"]}
    record(pub, first)
    record(pub, second)
    collector_view = MomLedger(str(tmp_path / "mom.sqlite"))
    collector_view.record_ack(JOB, "east", "published", ["e1"], sub=job_identity(first))
    find = pub.job_from_event(f"salt/job/{FIND}/publish", find_load(["e2"]))
    assert find is not None
    pub.answer_find_job(find)
    assert bus.events == []  # east has not acknowledged the second sub-batch: e2 may be running it
    collector_view.record_ack(JOB, "east", "published", ["e2"], sub=job_identity(second))
    pub.answer_find_job(find)
    assert bus.events == []  # e2 is in east's list now: it is Salt's to ask


def test_publisher_without_mirrors_never_answers(tmp_path: Any) -> None:
    pub, bus = publisher(tmp_path, None)
    record(pub, {"fun": "test.sleep", "arg": [60], "tgt": "*", "tgt_type": "glob", "jid": JOB, "ret": "",
                 "user": "root", "metadata": {"redis_syndic": {"dcs": ["east"]}}})
    pub.answer_find_job(pub.job_from_event(f"salt/job/{FIND}/publish", find_load(["w1"])))
    assert bus.events == []
