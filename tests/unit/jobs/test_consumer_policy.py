"""DC policy for bridged jobs: allow/deny functions and targets, enforced before the local publish."""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import Settings, load_settings
from salt_redis_syndic.errors import ConfigError
from salt_redis_syndic.jobs.consumer import JobConsumer
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.policy import Policy
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.wire.jobs import encode_job, make_job
from salt_redis_syndic.wire.uplink import Ack, decode_batch, encode_batch

from support.fakes import FakeBus, FakeCache, FakePublisher

pytestmark = pytest.mark.unit

JID = "20240501123456789012"


def load(fun="test.ping", tgt="*", tgt_type="glob", **extra):
    return {"fun": fun, "arg": [], "tgt": tgt, "tgt_type": tgt_type, "jid": JID, **extra}


def dc_settings(tmp_path=None, **block):
    base = {"role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1/0", "trusted_keys": ["/k.pub"]}
    opts = {"id": "dc-east", "redis_syndic": {**base, **block}}
    if tmp_path is not None:
        opts["cachedir"] = str(tmp_path)
    return load_settings(opts)


# ------------------------------------------------------------------------------ the policy


def test_default_policy_allows_everything():
    policy = Policy.from_settings(dc_settings())
    assert not policy.active
    assert policy.check(load("cmd.run", tgt=["a", "b"], tgt_type="list")) is None
    assert policy.check(load(["cmd.run", "state.apply"], tgt="G@x:y", tgt_type="compound")) is None


def test_function_globs():
    policy = Policy(deny_functions=("cmd.*", "state.sls_id"))
    assert policy.check(load("test.ping")) is None
    assert policy.check(load("cmd.run_all")) == "function 'cmd.run_all' is denied by deny_functions ('cmd.*')"
    assert "deny_functions" in policy.check(load("state.sls_id"))
    assert policy.check(load("state.sls")) is None
    assert policy.check(load("CMD.run")) is None  # case-sensitive, like Salt's function names
    allow = Policy(allow_functions=("test.*", "grains.get"))
    assert allow.check(load("test.echo")) is None and allow.check(load("grains.get")) is None
    assert allow.check(load("grains.items")) == "function 'grains.items' is not in allow_functions"


def test_deny_wins_over_allow():
    policy = Policy(allow_functions=("*",), deny_functions=("cmd.run",), allow_targets=("web*",), deny_targets=("web-db*",))
    assert "deny_functions" in policy.check(load("cmd.run", tgt="web1"))
    assert policy.check(load("cmd.script", tgt="web1")) is None
    assert "deny_targets" in policy.check(load("test.ping", tgt="web-db1"))


def test_empty_allow_list_allows_nothing():
    assert "allow_functions" in Policy(allow_functions=()).check(load())
    assert "allow_targets" in Policy(allow_targets=()).check(load())


def test_compound_function_refused_if_any_element_is_denied_or_not_allowed():
    deny = Policy(deny_functions=("cmd.*",))
    assert deny.check(load(["test.ping", "grains.get"])) is None
    assert deny.check(load(["test.ping", "cmd.run"])) == "function 'cmd.run' is denied by deny_functions ('cmd.*')"
    allow = Policy(allow_functions=("test.*",))
    assert allow.check(load(["test.ping", "test.echo"])) is None
    assert allow.check(load(["test.ping", "pkg.install"])) == "function 'pkg.install' is not in allow_functions"
    assert allow.check(load([])) == "job names no function"


def test_target_globs_over_the_expression_as_given():
    policy = Policy(allow_targets=("web*", "db?"), deny_targets=("*prod*",))
    assert policy.check(load(tgt="web*")) is None  # the expression, not the minions it matches
    assert policy.check(load(tgt="db1")) is None
    assert policy.check(load(tgt="*")) == "target '*' is not in allow_targets"
    assert policy.check(load(tgt="web-prod-1")) == "target 'web-prod-1' is denied by deny_targets ('*prod*')"
    assert "deny_targets" in policy.check(load(tgt="G@env:prod and web1", tgt_type="compound"))


def test_list_targets_check_every_element():
    policy = Policy(allow_targets=("east-*",), deny_targets=("east-db*",))
    assert policy.check(load(tgt=["east-m1", "east-m2"], tgt_type="list")) is None
    assert policy.check(load(tgt=["east-m1", "west-m1"], tgt_type="list")) == "target 'west-m1' is not in allow_targets"
    assert "deny_targets" in policy.check(load(tgt=["east-m1", "east-db2"], tgt_type="list"))
    # a compound expression split into words is one expression, not a list of targets
    words = Policy(deny_targets=("* or *",))
    assert "deny_targets" in words.check(load(tgt=["G@role:web", "or", "east-m2"], tgt_type="compound"))


def test_target_types():
    policy = Policy(allow_target_types=("glob", "list"))
    assert policy.check(load(tgt_type="glob")) is None
    assert policy.check({"fun": "test.ping", "tgt": "*", "jid": JID}) is None  # no tgt_type: glob
    assert policy.check(load(tgt=["a"], tgt_type="list")) is None
    assert policy.check(load(tgt="G@os:Debian", tgt_type="compound")) == "target type 'compound' is not in allow_target_types"
    assert "allow_target_types" in policy.check(load(tgt="os:Debian", tgt_type="grain"))


# ------------------------------------------------------------------------- configuration


def test_config_defaults_and_values():
    s = dc_settings()
    assert (s.allow_functions, s.deny_functions, s.allow_targets, s.deny_targets, s.allow_target_types) == (None, (), None, (), None)
    s = dc_settings(allow_functions=["test.*"], deny_functions="cmd.*", allow_targets=["web*"], deny_targets=[],
                    allow_target_types=["glob", "list"])
    assert s.allow_functions == ("test.*",) and s.deny_functions == ("cmd.*",)
    assert s.allow_targets == ("web*",) and s.deny_targets == () and s.allow_target_types == ("glob", "list")
    assert Policy.from_settings(s) == Policy(("test.*",), ("cmd.*",), ("web*",), (), ("glob", "list"))
    assert Settings.__dataclass_fields__["allow_functions"].default is None


@pytest.mark.parametrize("option, value", [
    ("allow_functions", {"cmd.run": True}),
    ("deny_functions", [""]),
    ("deny_functions", ["cmd.*", 3]),
    ("allow_targets", 5),
    ("deny_targets", [None]),
    ("allow_target_types", ["glob", "gob"]),
    ("allow_target_types", "grains"),
])
def test_config_bad_values_name_the_option(option, value):
    with pytest.raises(ConfigError) as info:
        dc_settings(**{option: value})
    assert info.value.option == option
    assert f"option {option!r}" in str(info.value)


def test_refused_is_a_valid_ack_status_on_the_wire():
    ack = Ack(JID, "west", "refused", reason="DC west policy: function 'cmd.run' is denied")
    batch = decode_batch(encode_batch("west", [ack.to_wire()]), 1 << 20)
    assert batch.rejected == [] and batch.messages == [ack]


# ---------------------------------------------------------------- the DC's jobs loop applies it


@pytest.fixture
def consumer(tmp_path):
    signer = Signer(Ed25519PrivateKey.generate())
    settings = dc_settings(tmp_path, trusted_keys=[signer.public_pem], deny_functions=["cmd.*"])
    spool = Spool(settings.spool_dir, fsync=False)
    ledger = DcLedger(os.path.join(settings.state_dir, "dc.sqlite"))
    c = JobConsumer(settings, FakePublisher(["m1"]), FakeCache(), FakeBus(), spool, ledger,
                    DeadLetters(os.path.join(settings.state_dir, "deadletter"), "redis_syndic:deadletter", 100, None),
                    Counters(), threading.Event(), threading.Event())

    def entry(jid=JID, **kw):
        job = make_job(load(jid=jid, **kw) | {"jid": jid}, origin="mom1", ttl=900)
        return {k.encode(): v for k, v in encode_job(job, signer).items()}

    def acks():
        return [m for item in spool.pending() for m in spool.read(item)]

    c.entry, c.acks = entry, acks  # type: ignore[attr-defined]
    yield c
    ledger.close()


def test_refused_job_is_never_published_and_is_reported(consumer, caplog):
    caplog.set_level("WARNING")
    consumer.handle("1-0", consumer.entry(fun="cmd.run", arg=["echo hi"]))
    assert consumer.publisher.calls == []
    (ack,) = consumer.acks()
    assert ack["status"] == "refused" and ack["jid"] == JID and ack["minions"] == [] and ack["mom"] == "mom1"
    assert ack["reason"] == "DC east policy: function 'cmd.run' is denied by deny_functions ('cmd.*')"
    assert consumer.counters.snapshot()["jobs_refused"] == 1
    ((tag, data),) = consumer.bus.events
    assert tag == f"redis_syndic/job/{JID}/refused" and data["fun"] == "cmd.run" and "deny_functions" in data["reason"]
    assert consumer.ledger.get(JID).status == "refused"
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1 and JID in lines[0] and "cmd.run" in lines[0]
    # a replay is not re-evaluated: it is a duplicate, not a second refusal (acknowledged again)
    consumer.handle("2-0", consumer.entry(fun="cmd.run", arg=["echo hi"]))
    assert consumer.publisher.calls == [] and [a["status"] for a in consumer.acks()] == ["refused", "refused"]
    assert len([r for r in caplog.records if "refused by the policy" in r.getMessage()]) == 1
    assert consumer.counters.snapshot()["jobs_duplicate"] == 1


def test_allowed_job_still_runs_next_to_a_refused_one(consumer):
    consumer.handle("1-0", consumer.entry(jid="20240501123456789001", fun=["test.ping", "cmd.run"]))
    consumer.handle("2-0", consumer.entry(jid="20240501123456789002", fun="test.ping"))
    assert [c["jid"] for c in consumer.publisher.loads()] == ["20240501123456789002"]
    assert [a["status"] for a in consumer.acks()] == ["refused", "published"]


def test_policy_applies_to_a_job_recovered_after_a_crash(consumer):
    consumer.ledger.claim(JID, "mom1")  # claimed, then the engine died before publishing
    consumer.handle("1-0", consumer.entry(fun="cmd.run"))
    assert consumer.publisher.calls == []
    assert consumer.ledger.get(JID).status == "refused"
