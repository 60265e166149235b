"""Liveness: which DCs are live, what changed since the last look, which DCs a new job waits for."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.liveness import DcDown, DcUp, Liveness, SpoolDrained, SpoolGrowing
from salt_redis_syndic.wire.status import DcStatus

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0


def status(dc, age=0.0, depth=0, warn=10, growing=False, cursor="0-0"):
    return DcStatus(dc=dc, last_seen=NOW - age, cursor=cursor, stream_last_id="0-0", lag_seconds=0.0,
                    spool_depth=depth, minion_count=1, version="1", master_id=dc, spool_warn_depth=warn,
                    spool_growing=growing)


def test_a_dc_with_a_recent_heartbeat_is_up_once():
    live = Liveness(dc_timeout=30)
    first = live.look(NOW, ["west", "east"], {"east": status("east"), "west": status("west", age=5)})
    assert first.changes == [DcUp("east"), DcUp("west")]
    assert first.ages == {"east": 0.0, "west": 5.0}
    assert first.first_seen == ["east", "west"]
    assert live.live == {"east", "west"} and live.known == {"east", "west"}
    live.note_first_seen("east", NOW - 100)
    live.note_first_seen("west", NOW - 50)
    again = live.look(NOW + 1, ["east", "west"], {"east": status("east"), "west": status("west")})
    assert again.changes == [] and again.first_seen == []


def test_a_silent_dc_goes_down_and_stays_known():
    live = Liveness(dc_timeout=30)
    live.look(NOW, ["east", "west"], {"east": status("east"), "west": status("west")})
    look = live.look(NOW, ["east", "west"], {"east": status("east"), "west": status("west", age=31)})
    assert look.changes == [DcDown("west")]
    assert look.ages["west"] == 31.0  # still measured: the gauge shows how long it has been silent
    assert live.live == {"east"} and live.known == {"east", "west"}


def test_a_dc_without_a_valid_record_is_known_not_live():
    live = Liveness(dc_timeout=30)
    look = live.look(NOW, ["east", "west"], {"east": status("east")})  # west: no record, or a rejected one
    assert look.changes == [DcUp("east")] and "west" not in look.ages
    assert live.known == {"east", "west"} and live.live == {"east"}


def test_a_clock_ahead_counts_as_just_seen():
    live = Liveness(dc_timeout=30)
    assert live.look(NOW, ["east"], {"east": status("east", age=-5)}).ages == {"east": 0.0}


def test_spool_alarm_once_per_episode_before_the_up_event():
    live = Liveness(dc_timeout=30)
    assert live.look(NOW, ["east"], {"east": status("east", depth=10)}).changes == [
        SpoolGrowing("east", 10, 10), DcUp("east")]
    assert live.look(NOW, ["east"], {"east": status("east", depth=50, growing=True)}).changes == []
    assert live.look(NOW, ["east"], {"east": status("east", depth=3)}).changes == []  # below, not empty yet
    assert live.look(NOW, ["east"], {"east": status("east", depth=0)}).changes == [SpoolDrained("east")]
    assert live.look(NOW, ["east"], {"east": status("east", depth=1, warn=0, growing=True)}).changes == [
        SpoolGrowing("east", 1, 0)]  # the DC's own verdict, whatever the threshold


def test_no_spool_alarm_without_a_threshold():
    live = Liveness(dc_timeout=30)
    assert live.look(NOW, ["east"], {"east": status("east", depth=10_000, warn=0)}).changes == [DcUp("east")]


def test_spool_of_a_dead_dc_is_not_watched():
    live = Liveness(dc_timeout=30)
    assert live.look(NOW, ["east"], {"east": status("east", age=60, depth=99)}).changes == []


def test_reconciler_views_need_a_status_and_a_first_seen_time():
    live = Liveness(dc_timeout=30)
    live.look(NOW, ["east", "west"], {"east": status("east", cursor="5-0", depth=2), "west": status("west")})
    live.note_first_seen("east", NOW - 10)
    views = live.views()
    assert list(views) == ["east"]
    assert (views["east"].cursor, views["east"].spool_depth, views["east"].first_seen) == ("5-0", 2, NOW - 10)


@pytest.mark.parametrize("addressed,wait_for,unknown,down", [
    (None, {"east"}, [], ["west"]),
    (["east"], {"east"}, [], []),
    (["west", "east"], {"east"}, [], ["west"]),
    (["esat", "east"], {"east"}, ["esat"], []),
    ([], set(), [], []),
])
def test_a_job_waits_for_the_live_dcs_it_is_addressed_to(addressed, wait_for, unknown, down):
    live = Liveness(dc_timeout=30)
    live.look(NOW, ["east", "west"], {"east": status("east"), "west": status("west", age=60)})
    dcs = live.for_job(addressed)
    assert (dcs.wait_for, dcs.unknown, dcs.down) == (wait_for, unknown, down)


def test_a_job_names_the_dcs_it_will_not_hear_from():
    live = Liveness(dc_timeout=30)
    live.look(NOW, ["east", "west"], {"east": status("east"), "west": status("west", age=60)})
    JID = "20240501123456789012"
    notices = live.for_job(["esat", "east", "west"]).notices(JID)
    assert [(data, tag) for _, data, tag in notices] == [
        ({"jid": JID, "dcs": ["esat"]}, f"redis_syndic/job/{JID}/unknown_dcs"),
        ({"jid": JID, "dcs": ["west"]}, f"redis_syndic/job/{JID}/dc_down")]
    assert "esat" in notices[0][0] and "down" in notices[1][0]
    assert live.for_job(["east"]).notices(JID) == []
