"""The job tags: what the builders spell, the patterns read back; nothing else matches."""

from __future__ import annotations

import pytest

from salt_redis_syndic.wire.tags import (
    DC_NEW_TAG,
    PUBLISH_TAG,
    RELEASED_TAG,
    RET_TAG,
    START_TAG,
    dc_new_tag,
    job_event_tag,
    ret_tag,
)

pytestmark = pytest.mark.unit

JID = "20260102030405123456"


def test_builders_and_patterns_agree():
    match = RET_TAG.match(ret_tag(JID, "web1"))
    assert match and match.group("jid", "minion") == (JID, "web1")
    match = DC_NEW_TAG.match(dc_new_tag("east", JID))
    assert match and match.group("jid") == JID
    match = RELEASED_TAG.match(job_event_tag(JID, "released"))
    assert match and match.group("jid") == JID
    assert job_event_tag(JID, "not_run", "east") == f"redis_syndic/job/{JID}/not_run/east"
    assert PUBLISH_TAG.match(f"salt/job/{JID}_1/publish").group("jid") == f"{JID}_1"
    assert START_TAG.match("salt/minion/web1/start").group("minion") == "web1"


@pytest.mark.parametrize("tag", [
    f"salt/job/{JID}/publish\n",
    f"salt/job/{JID[:-1]}/publish",
    "salt/job/" + "\u0661" * 20 + "/publish",  # Arabic-Indic digits: not a jid
    f"salt/job/{JID}/ret/a/b",
    f"syndic/east/salt/job/{JID}/new\n",
])
def test_near_misses_do_not_match(tag):
    assert not any(p.match(tag) for p in (PUBLISH_TAG, RET_TAG, DC_NEW_TAG, RELEASED_TAG, START_TAG))
