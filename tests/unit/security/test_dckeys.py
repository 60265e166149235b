"""DcKeyring: DC uplink keys are trusted only when accepted on the MoM (like salt-key)."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.errors import ConfigError, RejectedEntry
from salt_redis_syndic.runtime import Counters, RateLimitedLog
from salt_redis_syndic.security.dckeys import Announced, DcKeyring, report_announced
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.status import DcStatus, read_status

pytestmark = pytest.mark.unit


def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


def test_announced_key_is_pending_until_accepted(tmp_path):
    ring = DcKeyring(str(tmp_path))
    east = signer()
    body = b"batch"
    with pytest.raises(RejectedEntry) as err:
        ring.verify(east.key_id, east.sign(body), body)
    assert err.value.reason == "unknown_key"
    assert ring.note_announced("east", east.public_pem) == Announced("east", east.key_id)
    assert ring.note_announced("east", east.public_pem) is None  # announced once
    assert [(k.dc, k.state, k.key_id) for k in ring.list()] == [("east", "pending", east.key_id)]
    with pytest.raises(RejectedEntry):
        ring.verify(east.key_id, east.sign(body), body)  # pending is not trusted
    assert ring.accept("east", east.key_id).state == "accepted"
    assert ring.verify(east.key_id, east.sign(body), body) == "east"
    assert [(k.dc, k.state) for k in ring.list()] == [("east", "accepted")]


def test_a_pending_key_swapped_through_redis_is_not_accepted_in_place_of_the_one_compared(tmp_path):
    ring = DcKeyring(str(tmp_path))
    genuine, attacker = signer(), signer()
    ring.note_announced("east", genuine.public_pem)
    # The operator compares the pending key id with the DC's log... and meanwhile a Redis writer announces theirs.
    assert ring.note_announced("east", attacker.public_pem) == Announced("east", attacker.key_id, genuine.key_id)
    with pytest.raises(ConfigError) as err:
        ring.accept("east", genuine.key_id)
    assert f"{attacker.key_id}, not {genuine.key_id}" in str(err.value) and "nothing accepted" in str(err.value)
    with pytest.raises(RejectedEntry):
        ring.verify(attacker.key_id, attacker.sign(b"x"), b"x")  # nothing trusted
    # The genuine DC announces again (every heartbeat): the id the operator compared is accepted.
    assert ring.note_announced("east", genuine.public_pem).replaced == attacker.key_id
    assert ring.accept("east", genuine.key_id).key_id == genuine.key_id
    assert ring.verify(genuine.key_id, genuine.sign(b"x"), b"x") == "east"


def test_accept_without_a_key_id_names_the_pending_one_and_accepts_nothing(tmp_path):
    ring = DcKeyring(str(tmp_path))
    east = signer()
    ring.note_announced("east", east.public_pem)
    with pytest.raises(ConfigError) as err:
        ring.accept("east")
    assert f"salt-run redis_syndic.accept east {east.key_id}" in str(err.value)
    assert [(k.dc, k.state) for k in ring.list()] == [("east", "pending")]


def test_a_changed_pending_key_raises_an_alarm_a_new_one_only_says_so(caplog):
    fired, counters, rl = [], Counters(), RateLimitedLog(logging.getLogger("t"))
    with caplog.at_level(logging.WARNING):
        report_announced(None, lambda d, t: fired.append(t), counters, rl)
        report_announced(Announced("east", "k1"), lambda d, t: fired.append(t), counters, rl)
        for _ in range(30):
            report_announced(Announced("east", "k2", "k1"), lambda d, t: fired.append(t), counters, rl)
    assert fired[0] == "redis_syndic/key/east/pending" and "accept east k1" in caplog.records[0].getMessage()
    assert fired[1:] == ["redis_syndic/alarm/key_changed"] * 10  # rate-limited
    assert counters.snapshot() == {"dc_key_changed": 30}
    alarms = [r for r in caplog.records if "changed from k1 to k2" in r.getMessage()]
    assert len(alarms) == 1 and alarms[0].levelno == logging.ERROR


def test_rejected_key_is_refused_and_not_pending_again(tmp_path):
    ring = DcKeyring(str(tmp_path))
    east = signer()
    ring.note_announced("east", east.public_pem)
    ring.accept("east", east.key_id)
    ring.reject("east")
    with pytest.raises(RejectedEntry) as err:
        ring.verify(east.key_id, east.sign(b"x"), b"x")
    assert err.value.reason == "unknown_key"
    assert ring.note_announced("east", east.public_pem) is None
    assert [(k.dc, k.state) for k in ring.list()] == [("east", "rejected")]


def test_a_new_key_for_an_accepted_dc_is_pending_not_trusted(tmp_path):
    ring = DcKeyring(str(tmp_path))
    old, new = signer(), signer()
    ring.note_announced("east", old.public_pem)
    ring.accept("east", old.key_id)
    assert ring.note_announced("east", new.public_pem) == Announced("east", new.key_id)  # no pending key replaced
    with pytest.raises(RejectedEntry):
        ring.verify(new.key_id, new.sign(b"x"), b"x")
    assert ring.verify(old.key_id, old.sign(b"x"), b"x") == "east"


def test_preseeded_keys_and_accepts_from_another_process(tmp_path):
    east, west = signer(), signer()
    ring = DcKeyring(str(tmp_path), {"east": east.public_pem}, reload_interval=0.0)
    assert ring.verify(east.key_id, east.sign(b"x"), b"x") == "east"
    ring.note_announced("west", west.public_pem)
    DcKeyring(str(tmp_path)).accept("west", west.key_id)  # the runner, in another process
    assert ring.verify(west.key_id, west.sign(b"x"), b"x") == "west"


def test_bad_signature_and_bad_config(tmp_path):
    east = signer()
    ring = DcKeyring(str(tmp_path), {"east": east.public_pem})
    with pytest.raises(RejectedEntry) as err:
        ring.verify(east.key_id, signer().sign(b"x"), b"x")
    assert err.value.reason == "bad_signature"
    with pytest.raises(ConfigError) as cfg:
        DcKeyring(str(tmp_path), {"east": "not a key"})
    assert cfg.value.option == "dc_keys"
    with pytest.raises(ConfigError):
        DcKeyring(str(tmp_path), {"../etc": east.public_pem})
    assert ring.note_announced("../etc", east.public_pem) is None
    assert ring.note_announced("west", "garbage") is None


def test_status_records_must_be_signed_by_that_dcs_key(tmp_path):
    east, west = signer(), signer()
    ring = DcKeyring(str(tmp_path), {"east": east.public_pem, "west": west.public_pem})
    status = DcStatus("east", 1.0, "1-0", "1-0", 0.0, 0, 2, "v", "east")
    assert read_status(seal(status.encode(), east), ring, "east") == status
    with pytest.raises(RejectedEntry) as err:
        read_status(seal(status.encode(), west), ring, "east")  # west vouching for east
    assert err.value.reason == "wrong_dc"
    with pytest.raises(RejectedEntry) as err:
        read_status(status.encode(), ring, "east")  # unsigned
    assert err.value.reason in ("unsigned", "malformed")
