"""announcement: what the MoM says about a DC's minions for a job, from the DC's acks."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.announcement import ListOut, NotRun, announcement, released_minions
from salt_redis_syndic.wire.subjobs import EXTENSION

pytestmark = pytest.mark.unit

JID = "20240501123456789012"


def test_a_dc_that_ran_the_job_announces_its_list():
    said = announcement(JID, "east", None, ("published", ["m1", "m2"]), {"": ("published", ["m1", "m2"])})
    assert said == ListOut({"jid": JID, "minions": ["m1", "m2"], "missing": [], "syndic_id": "east"},
                           f"syndic/east/salt/job/{JID}/new", ["m1", "m2"])


def test_a_sub_batch_announces_its_own_minions_and_caches_the_whole_list():
    rows = {"s1": ("published", ["m1"]), "s2": ("published", ["m2"])}
    said = announcement(JID, "east", "s2", ("published", ["m1", "m2"]), rows)
    assert said.data["minions"] == ["m2"]  # what that sub-batch's CLI iterator waits for
    assert said.cache_minions == ["m1", "m2"]  # the job cache keeps one list per DC


def test_an_extension_announces_the_merged_list():
    rows = {"": ("published", ["a"]), EXTENSION: ("published", ["b"])}
    said = announcement(JID, "mid", EXTENSION, ("published", ["a", "b"]), rows)
    assert said.data["minions"] == ["a", "b"]


def test_an_empty_list_is_announced_but_not_cached():
    said = announcement(JID, "east", None, ("published", []), {"": ("published", [])})
    assert isinstance(said, ListOut) and said.cache_minions == []


@pytest.mark.parametrize("status", ["expired", "failed", "rejected"])
def test_a_job_not_run_is_reported(status):
    said = announcement(JID, "east", None, (status, []), {"": (status, [])})
    assert said == NotRun(status, {"jid": JID, "dc": "east", "status": status}, f"redis_syndic/job/{JID}/{status}/east")


def test_no_ack_at_all_is_unknown():
    assert announcement(JID, "east", None, None, {}).status == "unknown"


def test_released_names_every_minion_of_the_dcs_that_ran_it():
    acks = {"east": ("published", ["m2", "m1"]), "west": ("published", ["m1", "w1"]), "north": ("expired", ["n1"])}
    assert released_minions(acks) == ["m1", "m2", "w1"]
