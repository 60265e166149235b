"""redis-server restarted (with AOF) in the middle of a burst of 100 jobs: nothing lost, nothing twice.

Real daemons (MoM + DCs east/west, 2 minions each).  Each job appends its own marker to a file
in every minion's root, so the minions' files say how often each job ran.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from lab import Lab, wait_until

pytestmark = pytest.mark.integration

ALL = {"east-m1", "east-m2", "west-m1", "west-m2"}


def publish(lab: Lab, marker: str) -> str:
    # template=jinja renders the path per minion: each minion appends to its own file
    return lab.salt_async("*", "cmd.run", f"echo {marker} >> {{{{ opts['root_dir'] }}}}/markers.txt", "template=jinja")


def test_redis_restart_with_aof_mid_burst(make_lab) -> None:
    lab: Lab = make_lab(redis_appendonly=True)
    lab.wait_bridge(timeout=90)
    markers = [uuid.uuid4().hex for _ in range(100)]
    jids = [publish(lab, m) for m in markers[:50]]
    lab.stop_redis()
    lab.start_redis()
    jids += [publish(lab, m) for m in markers[50:]]

    def all_returned() -> bool:
        return all(set(lab.mom_job_returns(jid)) == ALL for jid in jids)

    wait_until(all_returned, 240, "every (jid, minion) return on the MoM", interval=2)
    for minion in sorted(ALL):
        counts = Counter(lab.minion_file(minion, "markers.txt").read_text().split())
        assert {m: counts[m] for m in markers} == {m: 1 for m in markers}, minion
