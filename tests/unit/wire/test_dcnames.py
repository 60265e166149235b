"""Names read from Redis: one decoder, which never raises and never lets a non-name through."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salt_redis_syndic.runtime import Counters, RateLimitedLog
from salt_redis_syndic.security.names import NAME_RE
from salt_redis_syndic.transport.keys import Keys
from salt_redis_syndic.wire.dcnames import MAX_NAME_BYTES, read_name, read_names
from salt_redis_syndic.wire.status import registered_dcs

pytestmark = pytest.mark.unit
# database=None: no .hypothesis/ directory in the source tree; failures print their example.
FUZZ = settings(max_examples=300, deadline=None, database=None)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"x" * 10_240, b"east\n", b"../etc", b"", b"-east", "\u00e9ast",
                                 b"e" * (MAX_NAME_BYTES + 1), 42, None, [b"east"]])
def test_what_is_not_a_name_is_refused(raw):
    assert read_name(raw) is None


def test_names_are_returned_sorted_and_unique_with_the_rejected_count():
    assert read_names([b"west", b"\xff", "east", b"east", b"a" * 100]) == (["east", "west"], 2)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=80), st.text(max_size=80)), max_size=20))
def test_any_members_decode_without_raising_into_valid_names(members):
    names, rejected = read_names(members)
    assert all(isinstance(n, str) and NAME_RE.match(n) for n in names)
    assert names == sorted(set(names))
    assert len(names) + rejected <= len(members)
    assert rejected == sum(1 for m in members if read_name(m) is None)


@FUZZ
@given(st.from_regex(NAME_RE, fullmatch=True))
def test_every_valid_name_survives(name):
    assert read_names([name.encode("ascii")]) == ([name], 0)


class SetClient:
    """Only what ``DcSet`` asks of a Redis client."""

    def __init__(self, members):
        self.members = members

    def smembers(self, key):
        assert key == "ns:dcs"
        return set(self.members)


def test_registered_dcs_counts_and_logs_once(caplog):
    counters, rl = Counters(), RateLimitedLog(logging.getLogger("t"))
    client = SetClient([b"east", b"\xff\xfe", b"x" * 10_240])
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert registered_dcs(client, Keys("ns"), counters, rl) == ["east"]
    assert counters.snapshot() == {"rejected_bad_dc_name": 10}
    assert len(caplog.records) == 1 and "xxxx" not in caplog.records[0].getMessage()
