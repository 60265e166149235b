"""A job addressed to a subset of DCs: metadata -> signed ``dcs`` -> only those DCs run and are waited for."""

from __future__ import annotations

import os
import queue
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.jobs.consumer import JobConsumer
from salt_redis_syndic.jobs.publisher import JobPublisher
from salt_redis_syndic.jobs.targeting import BadTarget, dcs_from_load, is_relayed
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.confidential import PayloadKey
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer, Verifier
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.wire.codec import VERSION, pack
from salt_redis_syndic.wire.jobs import decode_job, encode_job, make_job
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.uplink import Ack, encode_batch

from support.fakes import FakeBus, FakeCache, FakePublisher, FakeQueue

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
NOW = 1_700_000_000.0
MOM_KEY = Signer(Ed25519PrivateKey.generate())
DC_KEYS = {dc: Signer(Ed25519PrivateKey.generate()) for dc in ("east", "west")}


def load(**extra):
    base = {"fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob", "jid": JID, "ret": "", "user": "root"}
    base.update(extra)
    return base


def meta(dcs):
    return {"metadata": {"redis_syndic": {"dcs": dcs}}}


# ------------------------------------------------------------------------ metadata -> dcs


def test_metadata_names_the_dcs_sorted_and_deduplicated():
    assert dcs_from_load(load(**meta(["west", "east", "west"]))) == ("east", "west")
    assert dcs_from_load(load(**meta("east, west"))) == ("east", "west")  # CLI-friendly string


def test_no_metadata_or_no_dcs_means_every_dc():
    assert dcs_from_load(load()) is None
    assert dcs_from_load(load(metadata={"who": "ops"})) is None
    assert dcs_from_load(load(metadata={"redis_syndic": {}})) is None
    assert dcs_from_load(load(metadata="a string")) is None


@pytest.mark.parametrize("value", [[], "", [""], ["../east"], [1], {"east": 1}, ["e" * 65], None])
def test_unusable_dcs_raise_instead_of_widening_to_all(value):
    with pytest.raises(BadTarget):
        dcs_from_load(load(**meta(value)))
    with pytest.raises(BadTarget):
        dcs_from_load(load(metadata={"redis_syndic": ["east"]}))


def test_relayed_job_is_one_published_for_a_master_above():
    assert is_relayed(load(master_id="top"), "mid") is True
    assert is_relayed(load(master_id="mid"), "mid") is False
    assert is_relayed(load(), "mid") is False


# ------------------------------------------------------------------------ envelope


def test_dcs_travel_signed_and_are_decoded():
    verifier = Verifier([MOM_KEY.public_pem])
    fields = encode_job(make_job(load(), "mom1", 900, now=NOW, dcs=("east",)), MOM_KEY)
    job = decode_job(fields, verifier, 1 << 20, NOW, 60, dc="east")
    assert job.dcs == ("east",) and job.addressed_to("east") and not job.addressed_to("west")
    assert job.load["fun"] == "test.ping"
    other = decode_job(fields, verifier, 1 << 20, NOW, 60, dc="west")
    assert other.dcs == ("east",) and other.load == {}  # not parsed for a DC it is not for


def test_envelope_without_dcs_is_for_every_dc():
    verifier = Verifier([MOM_KEY.public_pem])
    job = decode_job(encode_job(make_job(load(), "mom1", 900, now=NOW), MOM_KEY), verifier, 1 << 20, NOW, 60, dc="west")
    assert job.dcs is None and job.addressed_to("west")


def test_widening_the_dcs_breaks_the_signature():
    verifier = Verifier([MOM_KEY.public_pem])
    fields = encode_job(make_job(load(), "mom1", 900, now=NOW, dcs=("east",)), MOM_KEY)
    import msgpack

    doc = msgpack.unpackb(fields["b"], raw=False)
    doc["dcs"] = ["east", "west"]
    forged = {**fields, "b": pack(doc)}
    with pytest.raises(RejectedEntry) as info:
        decode_job(forged, verifier, 1 << 20, NOW, 60, dc="west")
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("dcs", [[], "east", ["east", 3], ["bad/name"], [None]])
def test_malformed_signed_dcs_are_rejected(dcs):
    verifier = Verifier([MOM_KEY.public_pem])
    body = pack({"v": VERSION, "kind": "job", "jid": JID, "load": load(), "origin": "mom1", "issued_at": NOW,
                 "expires_at": NOW + 900, "kid": MOM_KEY.key_id, "dcs": dcs})
    with pytest.raises(RejectedEntry) as info:
        decode_job({"b": body, "s": MOM_KEY.sign(body), "k": MOM_KEY.key_id.encode()}, verifier, 1 << 20, NOW, 60, dc="east")
    assert info.value.reason == "malformed"


def test_encrypted_job_carries_a_load_only_for_the_addressed_dcs():
    keys = {dc: PayloadKey(os.urandom(32)) for dc in ("east", "west")}
    verifier = Verifier([MOM_KEY.public_pem])
    fields = encode_job(make_job(load(), "mom1", 900, now=NOW, dcs=("east",)), MOM_KEY, keys)
    east = decode_job(fields, verifier, 1 << 20, NOW, 60, dc="east", payload_key=keys["east"])
    assert east.load["fun"] == "test.ping"
    import msgpack

    assert set(msgpack.unpackb(fields["b"], raw=False)["load_enc"]) == {"east"}
    west = decode_job(fields, verifier, 1 << 20, NOW, 60, dc="west", payload_key=keys["west"])
    assert not west.addressed_to("west")  # skipped, not dead-lettered as not_for_this_dc


# ------------------------------------------------------------------------ DC consumer


def consumer(tmp_path, dc):
    settings = load_settings({"id": f"dc-{dc}", "cachedir": str(tmp_path / dc), "redis_syndic": {
        "role": "dc", "dc": dc, "redis_url": "redis://127.0.0.1:1/0", "trusted_keys": [MOM_KEY.public_pem]}})
    spool = Spool(settings.spool_dir, fsync=False)
    ledger = DcLedger(os.path.join(settings.state_dir, "dc.sqlite"))
    publisher = FakePublisher(["m1"])
    c = JobConsumer(settings, publisher, FakeCache(), FakeBus(), spool, ledger,
                    DeadLetters(os.path.join(settings.state_dir, "deadletter"), "redis_syndic:deadletter", 100, None),
                    Counters(), threading.Event(), threading.Event())
    return c, publisher, spool, ledger


def spooled(spool):
    return [m for item in spool.pending() for m in spool.read(item)]


def test_dc_not_addressed_neither_runs_nor_acks_nor_claims(tmp_path):
    entry = {k.encode(): v for k, v in encode_job(make_job(load(), "mom1", 900, dcs=("east",)), MOM_KEY).items()}
    east, east_pub, east_spool, _ = consumer(tmp_path, "east")
    west, west_pub, west_spool, west_ledger = consumer(tmp_path, "west")
    east.handle("1-0", entry)
    west.handle("1-0", entry)
    assert east_pub.jids() == [JID]
    assert [m["status"] for m in spooled(east_spool)] == ["published"]
    assert west_pub.calls == [] and spooled(west_spool) == []
    assert west_ledger.get(JID) is None
    assert west.counters.snapshot() == {"jobs_not_addressed": 1}
    assert west.deadletters.local() == []


# ------------------------------------------------------------------------ MoM publisher and barrier


def mom_settings(tmp_path):
    return load_settings({"id": "mom1", "cachedir": str(tmp_path / "mom"), "redis_syndic": {
        "role": "mom", "redis_url": "redis://127.0.0.1:1/0", "ack_wait": 5}})


def test_publisher_puts_the_metadata_dcs_into_the_job(tmp_path):
    bus = FakeBus()
    pub = JobPublisher(mom_settings(tmp_path), bus, MOM_KEY, queue.Queue(), Counters(), threading.Event(),
                       ledger=MomLedger(str(tmp_path / "mom.sqlite")))
    job = pub.job_from_event(f"salt/job/{JID}/publish", load(**meta(["west"])))
    assert job is not None and job.dcs == ("west",)
    assert pub.job_from_event(f"salt/job/{JID}/publish", load()).dcs is None
    # relayed from the tier above: the subset addressed that tier, this one forwards to all
    relayed = pub.job_from_event(f"salt/job/{JID}/publish", load(master_id="top", **meta(["mid"])))
    assert relayed is not None and relayed.dcs is None


def test_publisher_refuses_a_job_with_unusable_dcs(tmp_path):
    bus = FakeBus()
    counters = Counters()
    pub = JobPublisher(mom_settings(tmp_path), bus, MOM_KEY, queue.Queue(), counters, threading.Event(),
                       ledger=MomLedger(str(tmp_path / "mom.sqlite")))
    assert pub.job_from_event(f"salt/job/{JID}/publish", load(**meta(["no/such"]))) is None
    assert [t for t, _ in bus.events] == [f"redis_syndic/job/{JID}/bad_target"]
    assert counters.snapshot() == {"jobs_bad_target": 1}


def test_barrier_waits_only_for_the_addressed_dcs(tmp_path):
    settings = mom_settings(tmp_path)
    published: queue.Queue = queue.Queue()
    bus, cache = FakeBus(), FakeCache()
    ledger = MomLedger(os.path.join(settings.state_dir, "mom.sqlite"))
    keyring = DcKeyring(os.path.join(settings.state_dir, "dc_keys"), {dc: s.public_pem for dc, s in DC_KEYS.items()})
    collector = Collector(settings, bus, cache, ledger, published,
                          DeadLetters(os.path.join(settings.state_dir, "dl"), "redis_syndic:deadletter", 100, None),
                          Counters(), threading.Event(), keyring=keyring, uplink=FakeQueue())
    collector.live_dcs = {"east", "west"}
    collector.known_dcs = {"east", "west"}
    published.put((JID, NOW + 900, ("east",)))
    collector.drain_published()
    ret = {"t": "ret", "jid": JID, "dc": "east", "id": "m1", "load": {"return": True, "id": "m1", "jid": JID}}
    collector.process(seal(encode_batch("east", [Ack(JID, "east", "published", ["m1"]).to_wire(), ret]), DC_KEYS["east"]))
    # east alone releases the job: west, alive but not addressed, is not waited for
    assert cache.stored_ids() == ["m1"]
    assert f"syndic/east/salt/job/{JID}/new" in [t for t, _ in bus.events]
    ledger.close()


def test_job_for_an_unknown_dc_is_named(tmp_path):
    settings = mom_settings(tmp_path)
    published: queue.Queue = queue.Queue()
    bus = FakeBus()
    ledger = MomLedger(os.path.join(settings.state_dir, "mom.sqlite"))
    collector = Collector(settings, bus, FakeCache(), ledger, published,
                          DeadLetters(os.path.join(settings.state_dir, "dl"), "redis_syndic:deadletter", 100, None),
                          Counters(), threading.Event(), keyring=DcKeyring(os.path.join(settings.state_dir, "k"), {}))
    collector.live_dcs = collector.known_dcs = {"east"}
    published.put((JID, NOW + 900, ("esat",)))
    collector.drain_published()
    assert (f"redis_syndic/job/{JID}/unknown_dcs", {"jid": JID, "dcs": ["esat"]}) in bus.events
    ledger.close()


def test_publisher_refuses_a_job_of_another_user_without_its_authorization_list(tmp_path):
    """Salt 3006 records no auth_list: a DC master would run such a job with the engine's rights."""
    bus, counters = FakeBus(), Counters()
    pub = JobPublisher(mom_settings(tmp_path), bus, MOM_KEY, queue.Queue(), counters, threading.Event(),
                       ledger=MomLedger(str(tmp_path / "mom.sqlite")), master_user="salt")
    assert pub.job_from_event(f"salt/job/{JID}/publish", load(user="sudo_alice")) is None
    assert bus.tags() == [f"redis_syndic/job/{JID}/no_auth_list"] and counters.snapshot() == {"jobs_no_auth_list": 1}
    # the master's own users (empty auth_list on 3007+ too), and anyone whose auth_list Salt gave
    for user in ("root", "salt"):
        assert pub.job_from_event(f"salt/job/{JID}/publish", load(user=user)) is not None
    with_list = pub.job_from_event(f"salt/job/{JID}/publish", load(user="sudo_alice", auth_list=[{"web*": ["test.*"]}]))
    assert with_list is not None and with_list.load["auth_list"] == [{"web*": ["test.*"]}]
    assert len(bus.events) == 1
