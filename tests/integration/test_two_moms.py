"""Two MoMs sharing one Redis (high availability at the top, what several ``syndic_master`` give).

Lab: MoMs ``mom`` and ``mom2`` (each its own signing key, both trusted by every DC), DCs east
and west with one minion each.  east sends a job's acks and returns to the MoM that published
it only; west also mirrors them to every MoM (``mirror_returns``, ``moms: [mom, mom2]``).

A job published on either MoM runs once per minion, and its publisher's CLI lists every
minion; east's return reaches the publishing MoM and never the other one (the syndic bug
saltstack/salt #53721, #58193 sent returns to a random master); west's reaches both.
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest

from lab import (
    Lab,
    parse_json_documents,
    parse_json_output,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    the_lab = Lab(dcs=("east", "west"), minions_per_dc=1, extra_moms=("mom2",),
                  dc_bridge=lambda dc: {"moms": ["mom", "mom2"], "mirror_returns": dc == "west"})
    try:
        the_lab.start()
        the_lab.wait_bridge(timeout=90)
        yield the_lab
    finally:
        the_lab.stop()


def run_on(lab: Lab, mom: str) -> str:
    """``state.apply lab.jid`` from one MoM's CLI; returns the jid after checking the CLI saw both minions."""
    result = lab._master_salt(mom, "*", "state.apply", "lab.jid", "--show-jid", "--out=json", timeout=90)
    match = re.search(r"^jid: (\d{20})", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    assert set(parse_json_documents(result.stdout[match.end():])) == {"east-m1", "west-m1"}, result.stdout
    return match.group(1)


@pytest.mark.parametrize("origin, other", [("mom", "mom2"), ("mom2", "mom")])
def test_each_mom_gets_its_own_returns(lab: Lab, origin: str, other: str) -> None:
    jid = run_on(lab, origin)
    for minion in ("east-m1", "west-m1"):
        assert lab.minion_jids(minion).count(jid) == 1  # once per DC, whichever MoM published it
    assert set(lab.job_returns(origin, jid)) == {"east-m1", "west-m1"}
    # west mirrors: the other MoM stores west-m1's return too (announced, then stored)
    wait_until(lambda: "west-m1" in lab.job_returns(other, jid), 30, f"west's mirrored return on {other}")
    # east does not mirror: its return went to the publishing MoM only
    assert "east-m1" not in lab.job_returns(other, jid)
    assert f"job {jid} (state.apply) sent to the DCs" in lab.log(origin)
    assert f"job {jid} (state.apply) sent to" not in lab.log(other)  # never published twice
    assert f"job {jid}: no acknowledgement" not in lab.log(other)  # a mirror waits for no DC
    assert f"job {jid}: no acknowledgement" not in lab.log(origin)  # nor for the other MoM
    assert "untargeted_minion" not in lab.log(origin) + lab.log(other)


def test_both_moms_see_both_dcs_alive(lab: Lab) -> None:
    for mom in ("mom", "mom2"):
        status = parse_json_output(lab._master_salt(mom, "redis_syndic.status", "--out=json",
                                                    script="salt-run").stdout)
        assert status["east"]["alive"] is True and status["west"]["alive"] is True
