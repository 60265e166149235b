"""The MoM knows its estate, against real daemons: rosters of both DCs, key changes, drift, down minions.

One lab for the module (MoM + DCs east/west, two minions each) with a 1 s estate interval.
The lab's state tree is the same on every master, its pillar is not (each DC's ``lab.sls``
names the DC; the MoM's reads a grain), so ``pillar_roots`` drifts from the start and
``file_roots`` is in sync until a test changes a file.  Tests restore what they change.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab import Lab, find_script, wait_until

pytestmark = pytest.mark.integration

DCS = ("east", "west")
FAST = {"estate_interval": 1, "drift_interval": 1}


class MomEvents:
    """Events of the MoM's bus whose tag starts with ``redis_syndic/``, as the test saw them."""

    def __init__(self, lab: Lab) -> None:
        import salt.config
        import salt.utils.event

        opts = salt.config.master_config(str(lab.conf_dir("mom") / "master"))
        self._event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        while True:
            ev = self._event.get_event(wait=0.2, full=True, auto_reconnect=True)
            if not ev:
                return self.seen
            if ev["tag"].startswith("redis_syndic/"):
                self.seen.append((ev["tag"], ev["data"]))

    def find(self, tag: str, **match: Any) -> dict[str, Any] | None:
        for seen_tag, data in self.drain():
            if seen_tag == tag and all(data.get(k) == v for k, v in match.items()):
                return data
        return None

    def close(self) -> None:
        self._event.destroy()


@pytest.fixture(scope="module")
def estate_lab() -> Iterator[Lab]:
    lab = Lab(dcs=DCS, minions_per_dc=2, mom_bridge={**FAST, "key_management": True},
              dc_bridge=lambda dc: {**FAST, "roster_seen_resolution": 1, "key_management": dc == "east"})
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def events(estate_lab: Lab) -> Iterator[MomEvents]:
    bus = MomEvents(estate_lab)
    try:
        yield bus
    finally:
        bus.close()


def roster(lab: Lab, *args: str) -> dict[str, Any]:
    return lab.salt_run_json("redis_syndic.minions", *args)


def salt_key(lab: Lab, dc: str, *args: str) -> None:
    argv = [find_script("salt-key"), "-c", str(lab.conf_dir(dc)), "-y", *args]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)


def rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_roster_lists_exactly_the_minions_of_both_dcs(estate_lab: Lab) -> None:
    want = {m: {"dc": m.split("-")[0], "state": "accepted"} for m in estate_lab.minion_ids}

    def exact() -> dict[str, Any] | None:
        rows = roster(estate_lab)
        return rows if {m: {"dc": r["dc"], "state": r["state"]} for m, r in rows.items()} == want else None

    rows = wait_until(exact, 30, "the MoM's roster to list the four minions of east and west")
    assert all(row["last_seen"] for row in rows.values()), rows  # each minion was heard at its start
    assert set(roster(estate_lab, "dc=west")) == {"west-m1", "west-m2"}


def test_roster_follows_a_new_key_its_acceptance_and_its_deletion(estate_lab: Lab, events: MomEvents) -> None:
    events.drain()
    pending = estate_lab.master("east").pki_dir / "minions_pre" / "east-extra"
    pending.write_text(rsa_public_pem())

    wait_until(lambda: roster(estate_lab, "dc=east", "state=pending") == {
        "east-extra": {"dc": "east", "state": "pending", "last_seen": None}}, 15, "east-extra pending on the MoM")
    assert wait_until(lambda: events.find("redis_syndic/roster/east", added=["east-extra"]), 10,
                      "the roster event naming east-extra")["counts"]["pending"] == 1

    salt_key(estate_lab, "east", "-a", "east-extra")
    wait_until(lambda: roster(estate_lab).get("east-extra", {}).get("state") == "accepted", 15,
               "east-extra accepted on the MoM")

    salt_key(estate_lab, "east", "-d", "east-extra")
    wait_until(lambda: "east-extra" not in roster(estate_lab), 15, "east-extra gone from the MoM's roster")
    assert wait_until(lambda: events.find("redis_syndic/roster/east", removed=["east-extra"]), 10,
                      "the roster event naming the deleted key")
    assert set(roster(estate_lab)) == set(estate_lab.minion_ids)


def test_key_orders_from_the_mom_are_carried_out_and_audited_on_both_masters(estate_lab: Lab) -> None:
    for dc in DCS:
        (estate_lab.master(dc).pki_dir / "minions_pre" / f"{dc}-ordered").write_text(rsa_public_pem())
    wait_until(lambda: set(roster(estate_lab, "state=pending")) == {"east-ordered", "west-ordered"}, 15,
               "both new keys pending on the MoM")
    sent = {dc: estate_lab.salt_run_json("redis_syndic.key", dc, "accept", f"{dc}-ordered") for dc in DCS}
    wait_until(lambda: roster(estate_lab).get("east-ordered", {}).get("state") == "accepted", 15,
               "east-ordered accepted through the MoM's order")
    order = sent["east"]["order"]
    assert f"AUDIT key order {order} sent to DC east: accept minion east-ordered" in estate_lab.log("mom")
    assert wait_until(lambda: "AUDIT key of minion east-ordered on DC east: accept" in estate_lab.log("east"), 10,
                      "the audit line on east")
    assert order in estate_lab.log("east")
    # west did not turn key_management on: the order is not carried out there.
    assert roster(estate_lab)["west-ordered"]["state"] == "pending"
    assert "AUDIT" not in estate_lab.log("west")
    estate_lab.salt_run_json("redis_syndic.key", "east", "delete", "east-ordered")
    wait_until(lambda: "east-ordered" not in roster(estate_lab), 15, "east-ordered deleted through the MoM's order")
    salt_key(estate_lab, "west", "-d", "west-ordered")
    wait_until(lambda: "west-ordered" not in roster(estate_lab), 15, "west-ordered deleted on west")


def drift(lab: Lab) -> dict[str, Any]:
    return lab.salt_run_json("redis_syndic.drift")


def test_pillar_roots_differ_per_dc_from_the_start(estate_lab: Lab) -> None:
    report = wait_until(lambda: (lambda d: d if set(d.get("dcs", {})) == set(DCS) else None)(drift(estate_lab)),
                        20, "a drift report naming both DCs")
    for dc in DCS:
        assert report["dcs"][dc]["pillar_roots"] == {"base": {"changed": ["lab.sls"]}}
    assert report["dcs_agree"]["pillar_roots"] == {"base": False}  # each DC's lab.sls names the DC


def test_a_changed_file_shows_as_drift_naming_dc_saltenv_and_file_until_fixed(estate_lab: Lab, events: MomEvents) -> None:
    path = estate_lab.master("east").root / "srv" / "salt" / "lab" / "init.sls"
    original = path.read_text()
    wait_until(lambda: all(drift(estate_lab).get("dcs", {}).get(dc, {}).get("file_roots") == {"base": "in sync"}
                           for dc in DCS), 20, "file_roots in sync on both DCs")
    events.drain()
    path.write_text(original + "\n# changed on east only\n")
    try:
        report = wait_until(lambda: (lambda d: d if d["dcs"]["east"]["file_roots"] != {"base": "in sync"} else None)(
            drift(estate_lab)), 20, "drift of east's file_roots")
        assert report["dcs"]["east"]["file_roots"] == {"base": {"changed": ["lab/init.sls"]}}
        assert report["dcs"]["west"]["file_roots"] == {"base": "in sync"}
        assert report["dcs_agree"]["file_roots"] == {"base": False}
        event = wait_until(lambda: events.find("redis_syndic/drift", dc="east", in_sync=False), 10, "the drift event of east")
        assert event["drift"]["file_roots"] == {"base": {"changed": ["lab/init.sls"]}}
    finally:
        path.write_text(original)
    wait_until(lambda: drift(estate_lab)["dcs"]["east"]["file_roots"] == {"base": "in sync"}, 20,
               "east's file_roots in sync again")
    fixed = wait_until(lambda: [d for t, d in events.drain() if t == "redis_syndic/drift" and d["dc"] == "east"][-1:],
                       10, "a drift event of east after the fix")[0]
    assert fixed["drift"]["file_roots"] == {"base": "in sync"}


def test_job_report_names_known_minions_that_were_down(estate_lab: Lab) -> None:
    estate_lab.stop_minion("west-m2")
    try:
        jid = estate_lab.salt_async("*", "test.ping")

        def report() -> dict[str, Any] | None:
            rep = estate_lab.salt_run_json("redis_syndic.job", jid)
            done = rep.get("east", {}).get("returned") == ["east-m1", "east-m2"] and rep.get("west", {}).get("returned")
            return rep if done else None

        rep = wait_until(report, 30, f"the returns of {jid} in redis_syndic.job")
        assert rep["west"]["missing"] == ["west-m2"] and rep["west"]["down"] == ["west-m2"]
        assert rep["west"]["known_minions"] == 2 and rep["west"]["not_targeted"] == []
        assert rep["east"]["down"] == [] and rep["east"]["known_minions"] == 2
    finally:
        estate_lab.start_minion("west-m2")
