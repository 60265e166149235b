"""Mirrored minion keys: which keys the MoM engine adds, moves, removes or refuses (alarm).

The decisions are pure (:func:`keymirror.plan`); :class:`KeyMirror` is driven here through an
in-memory store, and the Salt side (``salt_adapter.KeyStoreCache``) against a real
``localfs_key`` pki directory and Salt's own key listing and auth comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from salt_redis_syndic.salt_adapter.release import running
from salt_redis_syndic.estate.keymirror import (
    Conflict,
    KeyMirror,
    Stored,
    describe,
    marker,
    mirrored_dc,
    plan,
    read_store,
)

pytestmark = pytest.mark.unit

A = "accepted"
REAL_PUB = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n"


def mirrors(**dcs: str) -> dict[str, Stored]:
    return {m: Stored(A, dc) for m, dc in dcs.items()}


def test_marker_names_its_dc_and_nothing_else_is_a_mirror() -> None:
    assert mirrored_dc(marker("east")) == "east"
    assert mirrored_dc(marker("east").replace("\n", "\r\n")) == "east"
    assert mirrored_dc(REAL_PUB) is None
    assert mirrored_dc("") is None and mirrored_dc(None) is None and mirrored_dc(b"x") is None
    # the head alone, or the head later in the text, is not a marker
    assert mirrored_dc(marker("east")[:40]) is None
    assert mirrored_dc(REAL_PUB + marker("east")) is None


def load_public_key(text: str, tmp_path: Path) -> Any:
    """How the master loads a stored minion key: 3008 from the text, 3006/3007 from the file."""
    import salt.crypt

    if hasattr(salt.crypt.PublicKey, "from_str"):
        return salt.crypt.PublicKey.from_str(text)
    path = tmp_path / "stored.pub"
    path.write_text(text)
    return salt.crypt.PublicKey(str(path))


def compare_keys(stored: str, presented: str) -> bool:
    """The master's key comparison at auth: 3008 ``AuthFuncs``, 3006/3007 ``ReqServerChannel``."""
    import salt.master

    if hasattr(salt.master, "AuthFuncs"):
        return salt.master.AuthFuncs.compare_keys(stored, presented)
    import salt.channel.server

    return salt.channel.server.ReqServerChannel.compare_keys(stored, presented)


def test_marker_is_not_a_loadable_public_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError):  # salt.exceptions.InvalidKeyError
        load_public_key(marker("east"), tmp_path)


def test_accepted_minions_of_each_dc_are_added_and_other_states_are_not() -> None:
    decided = plan({"east": {"e1": A, "e2": "pending", "e3": "rejected", "e4": "denied"}, "west": {"w1": A}}, {})
    assert decided.add == {"e1": "east", "w1": "west"}
    assert decided.remove == [] and decided.conflicts == []


def test_nothing_changes_when_in_step() -> None:
    decided = plan({"east": {"e1": A}, "west": {"w1": A}}, mirrors(e1="east", w1="west"))
    assert not decided and decided.conflicts == []


def test_a_key_the_mom_holds_is_never_touched_and_is_reported() -> None:
    store = {"e1": Stored(A, None), "e2": Stored("pending", None), "e3": Stored("rejected", None)}
    decided = plan({"east": {"e1": A, "e2": A, "e3": A}}, store)
    assert decided.add == {} and decided.remove == []
    assert [(c.minion, c.reason) for c in decided.conflicts] == [("e1", "mom_key"), ("e2", "mom_key"), ("e3", "mom_key")]
    # and a MoM key is never removed, whatever the rosters say
    assert plan({"east": {}}, store).remove == []
    assert plan({"east": {}}, store, enabled=False).remove == []


def test_a_minion_accepted_on_two_dcs_is_mirrored_for_neither() -> None:
    decided = plan({"east": {"x": A}, "west": {"x": A}}, {})
    assert decided.add == {} and decided.remove == []
    assert decided.conflicts == [Conflict("x", "several_dcs", ("east", "west"), None)]


def test_a_mirror_held_by_one_of_two_claimants_stays() -> None:
    decided = plan({"east": {"x": A}, "west": {"x": A}}, mirrors(x="east"))
    assert not decided
    assert decided.conflicts == [Conflict("x", "several_dcs", ("east", "west"), "east")]


def test_a_mirror_held_by_a_dc_that_dropped_it_goes_when_two_others_claim_it() -> None:
    decided = plan({"east": {"x": A}, "west": {"x": A}, "north": {}}, mirrors(x="north"))
    assert decided.add == {} and decided.remove == ["x"]


def test_one_dc_cannot_take_another_dcs_mirror_while_that_dc_is_unknown() -> None:
    # north's roster is not loaded (engine just restarted, or north is gone): its mirror stays
    decided = plan({"east": {"x": A}}, mirrors(x="north"))
    assert decided.add == {} and decided.remove == []
    assert decided.conflicts == [Conflict("x", "other_dc", ("east",), "north")]


def test_a_minion_that_moved_dc_moves_its_mirror() -> None:
    decided = plan({"east": {"x": A}, "north": {"x": "denied"}}, mirrors(x="north"))
    assert decided.add == {"x": "east"} and decided.remove == [] and decided.conflicts == []


def test_mirrors_go_when_their_dc_drops_or_unaccepts_the_minion() -> None:
    decided = plan({"east": {"e2": "rejected"}, "west": {"w1": A}}, mirrors(e1="east", e2="east", w1="west"))
    assert decided.remove == ["e1", "e2"] and decided.add == {}


def test_mirrors_of_a_dc_whose_roster_is_not_loaded_stay() -> None:
    decided = plan({"west": {"w1": A}}, mirrors(e1="east", w1="west"))
    assert not decided


def test_disabled_removes_the_mirrors_of_known_dcs_only() -> None:
    store = {**mirrors(e1="east", w1="west"), "own": Stored(A, None)}
    decided = plan({"east": {"e1": A}}, store, enabled=False)
    assert decided.add == {} and decided.remove == ["e1"] and decided.conflicts == []


def test_a_mirror_moved_out_of_accepted_is_put_back() -> None:
    decided = plan({"east": {"e1": A}}, {"e1": Stored("rejected", "east")})
    assert decided.add == {"e1": "east"}


class MemoryStore:
    def __init__(self, keys: dict[str, tuple[str, Any]]) -> None:
        self.keys = keys

    def list(self) -> dict[str, tuple[str, Any]]:
        return dict(self.keys)

    def put(self, minion: str, pub: str) -> None:
        self.keys[minion] = (A, pub)

    def delete(self, minion: str) -> None:
        del self.keys[minion]


def test_key_mirror_applies_the_plan_and_alarms_once_per_conflict() -> None:
    store = MemoryStore({"own": (A, REAL_PUB), "gone": (A, marker("east"))})
    alarms: list[list[Conflict]] = []
    mirror = KeyMirror(store, True, alarms.append)
    rosters = {"east": {"e1": A, "own": A}, "west": {"w1": A}}
    mirror.sync(rosters)
    assert store.keys == {"own": (A, REAL_PUB), "e1": (A, marker("east")), "w1": (A, marker("west"))}
    assert alarms == [[Conflict("own", "mom_key", ("east",))]]
    mirror.sync(rosters)  # same conflict: no second alarm
    assert len(alarms) == 1
    mirror.sync({"east": {"e1": A}, "west": {"w1": A}})  # resolved
    mirror.sync(rosters)  # back again: reported again
    assert len(alarms) == 2
    assert "MoM holds its own key" in describe(alarms[0])


@pytest.fixture()
def salt_opts(tmp_path: Path) -> dict[str, Any]:
    import salt.config

    opts = salt.config.master_config(None)
    opts.update({"pki_dir": str(tmp_path / "pki"), "cachedir": str(tmp_path / "cache"), "user": None,
                 "sock_dir": str(tmp_path / "sock"), "key_cache": ""})
    for sub in ("minions", "minions_pre", "minions_rejected", "minions_denied"):
        (tmp_path / "pki" / sub).mkdir(parents=True)
    return opts


def test_salt_key_store_lists_mirrors_as_accepted_and_leaves_real_keys(salt_opts: dict[str, Any]) -> None:
    import salt.key
    import salt.utils.minions

    from salt_redis_syndic.salt_adapter.keystore import KeyStoreCache

    pki = Path(salt_opts["pki_dir"])
    (pki / "minions" / "own").write_text(REAL_PUB)
    (pki / "minions_pre" / "newbie").write_text(REAL_PUB)
    store = KeyStoreCache(salt_opts, mirrored_dc)
    mirror = KeyMirror(store, True, lambda c: None)
    mirror.sync({"east": {"e1": A, "newbie": A}, "west": {"w1": A}})
    # Salt itself now lists the DC minions as accepted (what the CLI's find_job filter reads)
    assert set(salt.utils.minions.CkMinions(salt_opts)._pki_minions()) == {"own", "e1", "w1"}
    assert salt.key.get_key(salt_opts).list_keys()["minions_pre"] == ["newbie"]
    assert read_store(store)["e1"] == Stored(A, "east") and read_store(store)["own"] == Stored(A, None)
    assert not [p for p in pki.iterdir() if p.is_file()]  # no temporary file left behind
    # the DC drops e1: gone; a real key under a mirrored name is never deleted
    (pki / "minions" / "w1").write_text(REAL_PUB)  # an operator re-keyed w1 on the MoM meanwhile
    mirror.sync({"east": {}, "west": {}})
    assert sorted(p.name for p in (pki / "minions").iterdir()) == ["own", "w1"]
    assert (pki / "minions" / "w1").read_text() == REAL_PUB


def test_a_minion_presenting_any_key_for_a_mirrored_id_is_not_authenticated(tmp_path: Path) -> None:
    """Salt's auth: the presented key must equal the stored text AND load as an RSA key."""
    assert not compare_keys(marker("east"), REAL_PUB)
    # presenting the marker text itself matches, but it is not a key: no session key can be sent
    assert compare_keys(marker("east"), marker("east"))
    with pytest.raises(ValueError):  # salt.exceptions.InvalidKeyError
        load_public_key(marker("east").strip(), tmp_path)


def test_mirror_minion_keys_is_on_unless_turned_off() -> None:
    from salt_redis_syndic.config import load_settings

    def settings(**block: Any) -> Any:
        return load_settings({"id": "mom1", "redis_syndic": {"role": "mom", "redis_url": "redis://127.0.0.1:1/0",
                                                              **block}})

    assert settings().mirror_minion_keys is True
    assert settings(mirror_minion_keys=False).mirror_minion_keys is False


# 3006/3007 authenticate in ReqServerChannel._auth (a coroutine of the request channel, not built
# here): the two tests above pin the comparison and the key loading it rests on there.
@pytest.mark.skipif(running() < (3008, 0), reason="AuthFuncs (the auth outside the channel) is 3008+")
def test_salts_own_auth_refuses_a_mirrored_id_whatever_key_it_presents(salt_opts: dict[str, Any]) -> None:
    """Salt's ``AuthFuncs._auth_impl_sync`` with ``auto_accept``: only the mirrored id is refused."""
    import types

    import salt.crypt
    import salt.master
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    salt_opts["auto_accept"] = True
    Path(salt_opts["cachedir"]).mkdir(parents=True)
    Path(salt_opts["sock_dir"]).mkdir(parents=True)
    pki = Path(salt_opts["pki_dir"])
    pub = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (pki / "minions" / "own").write_text(pub)
    from salt_redis_syndic.salt_adapter.keystore import KeyStoreCache

    KeyMirror(KeyStoreCache(salt_opts, mirrored_dc), True, lambda c: None).sync({"east": {"east-m1": A}})
    saved = dict(salt.master.SMaster.secrets)
    salt.master.SMaster.secrets["aes"] = {"secret": types.SimpleNamespace(
        value=salt.crypt.Crypticle.generate_key_string().encode())}
    auth = salt.master.AuthFuncs(salt_opts)
    try:

        def attempt(minion: str, presented: str) -> str:
            return auth._auth_impl_sync({"id": minion, "pub": presented, "cmd": "_auth"})["enc"]

        assert attempt("own", pub) == "pub"  # control: a real accepted key authenticates
        assert attempt("newcomer", pub) == "pub"  # control: auto_accept takes an unknown id
        assert attempt("east-m1", pub) == "clear"  # the mirrored id: refused with a real key...
        assert attempt("east-m1", marker("east")) == "clear"  # ...and with the marker text itself
        assert (pki / "minions_denied" / "east-m1").read_text().strip() == pub.strip()  # the refusal is on record
        assert mirrored_dc((pki / "minions" / "east-m1").read_text()) == "east"  # the mirror is unchanged
    finally:
        auth.event.destroy()
        salt.master.SMaster.secrets.clear()
        salt.master.SMaster.secrets.update(saved)


def test_key_files_written_directly_without_a_key_cache_driver(salt_opts: dict[str, Any]) -> None:
    """Salt 3006/3007 have no ``keys.cache_driver``: the same pki layout, written as files."""
    import salt.utils.minions

    from salt_redis_syndic.salt_adapter.keystore import KeyStoreCache

    pki = Path(salt_opts["pki_dir"])
    (pki / "minions_pre" / "e2").write_text(REAL_PUB)  # pending on the MoM: a MoM key, left alone
    legacy = {k: v for k, v in salt_opts.items() if k != "keys.cache_driver"}
    store = KeyStoreCache(legacy, mirrored_dc)
    mirror = KeyMirror(store, True, lambda c: None)
    decided = mirror.sync({"east": {"e1": A, "e2": A}})
    assert decided.add == {"e1": "east"} and [c.minion for c in decided.conflicts] == ["e2"]
    assert mirrored_dc((pki / "minions" / "e1").read_text()) == "east"
    assert set(salt.utils.minions.CkMinions(salt_opts)._pki_minions()) == {"e1"}
    assert store.owners(["e1", "e2", "nosuch"]) == {"e1": "east", "e2": None, "nosuch": None}
    assert not [p for p in pki.iterdir() if p.is_file()]
    mirror.sync({"east": {}})
    assert not (pki / "minions" / "e1").exists() and (pki / "minions_pre" / "e2").exists()


def test_legacy_layout_never_removes_or_overwrites_a_real_key_beside_a_marker(salt_opts: dict[str, Any]) -> None:
    from salt_redis_syndic.salt_adapter.keystore import KeyStoreCache

    pki = Path(salt_opts["pki_dir"])
    (pki / "minions" / "x").write_text(marker("east"))
    (pki / "minions_rejected" / "x").write_text(REAL_PUB)  # the operator rejected a real key under that id
    store = KeyStoreCache({k: v for k, v in salt_opts.items() if k != "keys.cache_driver"}, mirrored_dc)
    assert store.owners(["x"]) == {"x": None}  # Salt reads the rejected key first: not a mirror
    store.delete("x")
    store.put("x", marker("west"))
    assert (pki / "minions_rejected" / "x").read_text() == REAL_PUB
    assert mirrored_dc((pki / "minions" / "x").read_text()) == "east"
