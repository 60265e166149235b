"""Settings: defaults, one ConfigError naming the option for each mistake, no secret in any repr."""

from __future__ import annotations

import pytest

from salt_redis_syndic.config import (
    KNOWN_OPTIONS,
    RedisSettings,
    load_settings,
    redact_url,
)
from salt_redis_syndic.errors import ConfigError

pytestmark = pytest.mark.unit

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + "A" * 43 + "=\n-----END PUBLIC KEY-----\n"
SECRET = "s3cr3t-Pa55word"


def opts(block=None, **top):
    base = {"id": "mom1", "cachedir": "/var/cache/salt/master", "pki_dir": "/etc/salt/pki/master"}
    base.update(top)
    base["redis_syndic"] = block if block is not None else {}
    return base


def mom(**extra):
    return {"role": "mom", "redis_url": "redis://127.0.0.1:6379/0", **extra}


def dc(**extra):
    return {"role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:6379/0", "trusted_keys": [PEM], **extra}


def config_error(block, overrides=None, **top) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(opts(block, **top), overrides)
    return info.value


# ------------------------------------------------------------------------------- defaults


def test_mom_defaults():
    s = load_settings(opts(mom()))
    assert s.role == "mom" and s.is_mom
    assert s.master_id == "mom1"
    assert s.dc is None
    assert s.namespace == "redis_syndic"
    assert s.redis.url == "redis://127.0.0.1:6379/0"
    assert s.redis_read is None
    assert (s.job_ttl, s.clock_skew, s.ack_wait, s.dc_timeout) == (900.0, 60.0, 5.0, 10.0)
    assert (s.stream_maxlen, s.block_ms, s.batch_max_messages) == (100_000, 1000, 500)
    assert s.max_entry_bytes == 64 * 1024 * 1024 and s.deadletter_max == 10_000
    assert s.state_dir == "/var/cache/salt/master/redis_syndic"
    assert s.spool_dir == "/var/cache/salt/master/redis_syndic/spool"
    assert s.signing_key == "/etc/salt/pki/master/redis_syndic.pem"
    assert s.trusted_keys == ()
    assert (s.redis.socket_timeout, s.redis.connect_timeout, s.redis.health_check_interval) == (5.0, 5.0, 15.0)
    assert s.redis.ssl_check_hostname is True
    assert s.redis.username is None and s.redis.password is None


def test_dc_settings_and_paths_follow_cachedir():
    s = load_settings(opts(dc(), cachedir="/srv/cache"))
    assert s.role == "dc" and not s.is_mom
    assert s.dc == "east"
    assert s.trusted_keys == (PEM,)
    assert s.state_dir == "/srv/cache/redis_syndic"
    assert s.spool_dir == "/srv/cache/redis_syndic/spool"


def test_dc_option_ignored_for_mom():
    assert load_settings(opts(mom(dc="east"))).dc is None


def test_single_trusted_key_string_becomes_tuple():
    assert load_settings(opts(dc(trusted_keys="/etc/salt/mom.pub"))).trusted_keys == ("/etc/salt/mom.pub",)


def test_master_id_option_wins_over_opts_id():
    assert load_settings(opts(mom(master_id="top"))).master_id == "top"


def test_explicit_values_are_used():
    s = load_settings(opts(mom(job_ttl=60, stream_maxlen=500, socket_timeout=1.5, redis_username="u",
                               redis_password=SECRET, redis_read_url="redis://replica:6379/0",
                               ssl_check_hostname=False, state_dir="/st", namespace="ns:1")))
    assert s.job_ttl == 60.0 and isinstance(s.job_ttl, float)
    assert s.stream_maxlen == 500 and isinstance(s.stream_maxlen, int)
    assert s.redis.socket_timeout == 1.5
    assert s.redis.username == "u" and s.redis.password == SECRET
    assert s.redis_read is not None and s.redis_read.url == "redis://replica:6379/0"
    assert s.redis.ssl_check_hostname is False
    assert s.state_dir == "/st" and s.spool_dir == "/st/spool"
    assert s.namespace == "ns:1"


def test_settings_are_frozen():
    s = load_settings(opts(mom()))
    with pytest.raises(AttributeError):
        s.role = "dc"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.redis.url = "redis://other"  # type: ignore[misc]


# --------------------------------------------------------------------- engine kwargs override


def test_engine_kwargs_override_the_block():
    s = load_settings(opts(mom(job_ttl=100)), {"job_ttl": 5, "redis_url": "redis://other:6380/1"})
    assert s.job_ttl == 5.0
    assert s.redis.url == "redis://other:6380/1"


def test_engine_kwargs_can_supply_the_whole_config():
    s = load_settings(opts(None), dc())
    assert s.role == "dc" and s.dc == "east"


def test_engine_kwargs_dunder_keys_are_ignored():
    # Salt injects __pub_* style keys into some kwargs; they are not options (and no typo).
    s = load_settings(opts(mom()), {"__id__": "x", "__pub_fun": "y"})
    assert s.role == "mom"


def test_override_is_validated_too():
    assert config_error(mom(), {"job_ttl": "soon"}).option == "job_ttl"


# ------------------------------------------------------------------- every error names the option


@pytest.mark.parametrize(
    ("block", "option"),
    [
        ({"role": "mom"}, "redis_url"),
        (mom(redis_url=""), "redis_url"),
        (mom(redis_url=None), "redis_url"),
        (mom(redis_url="http://127.0.0.1:6379"), "redis_url"),
        (mom(redis_url="127.0.0.1:6379"), "redis_url"),
        (mom(redis_url=6379), "redis_url"),
        (mom(redis_read_url="tcp://replica"), "redis_read_url"),
        ({"redis_url": "redis://h"}, "role"),
        (mom(role="syndic"), "role"),
        (mom(role=None), "role"),
        (dc(dc=None), "dc"),
        (dc(dc=""), "dc"),
        (dc(dc="east/1"), "dc"),
        (dc(dc="-east"), "dc"),
        (dc(dc="x" * 65), "dc"),
        (dc(dc=3), "dc"),
        (dc(trusted_keys=[]), "trusted_keys"),
        (dc(trusted_keys=None), "trusted_keys"),
        (dc(trusted_keys=[""]), "trusted_keys"),
        (dc(trusted_keys=[3]), "trusted_keys"),
        (dc(trusted_keys={"a": 1}), "trusted_keys"),
        (mom(redis_ulr="redis://h"), "redis_ulr"),
        (mom(Role="mom"), "Role"),
        (mom(namespace="has space"), "namespace"),
        (mom(namespace=""), "namespace"),
        (mom(namespace=5), "namespace"),
        (mom(master_id="bad/id"), "master_id"),
        (mom(job_ttl="15m"), "job_ttl"),
        (mom(job_ttl=True), "job_ttl"),
        (mom(job_ttl=0.5), "job_ttl"),
        (mom(clock_skew=-1), "clock_skew"),
        (mom(stream_maxlen=99), "stream_maxlen"),
        (mom(stream_maxlen=1000.5), "stream_maxlen"),
        (mom(block_ms="1000"), "block_ms"),
        (mom(socket_timeout=None), "socket_timeout"),
        (mom(socket_timeout=0), "socket_timeout"),
        (mom(connect_timeout=[1]), "connect_timeout"),
        (mom(health_check_interval=-1), "health_check_interval"),
        (mom(heartbeat_interval=0), "heartbeat_interval"),
        (mom(dc_timeout=0.1), "dc_timeout"),
        (mom(ack_wait=-0.1), "ack_wait"),
        (mom(publish_timeout=0), "publish_timeout"),
        (mom(batch_max_messages=0), "batch_max_messages"),
        (mom(batch_max_bytes=10), "batch_max_bytes"),
        (mom(spool_poll_interval=0), "spool_poll_interval"),
        (mom(max_entry_bytes=100), "max_entry_bytes"),
        (mom(deadletter_max=0), "deadletter_max"),
        (mom(redis_password=12345), "redis_password"),
        (mom(redis_username=["u"]), "redis_username"),
        (mom(ssl_keyfile=1), "ssl_keyfile"),
        (mom(ssl_certfile=True), "ssl_certfile"),
        (mom(ssl_ca_certs=1.0), "ssl_ca_certs"),
        (mom(ssl_check_hostname="false"), "ssl_check_hostname"),
    ],
)
def test_error_names_the_option(block, option):
    err = config_error(block)
    assert err.option == option
    assert repr(option) in str(err)
    assert option in KNOWN_OPTIONS or option in ("redis_ulr", "Role")


def test_master_id_from_opts_must_be_usable():
    assert config_error(mom(), id="").option == "master_id"
    assert config_error(mom(), id="a b").option == "master_id"


def test_block_that_is_not_a_mapping():
    assert config_error(["role", "mom"]).option == "redis_syndic"


def test_unknown_option_is_reported_even_when_everything_else_is_fine():
    err = config_error(dc(heartbeat_intervall=1))
    assert err.option == "heartbeat_intervall"
    assert "typo" in str(err)


def test_first_unknown_option_is_named_deterministically():
    assert config_error(mom(zzz=1, aaa=2)).option == "aaa"


# --------------------------------------------------------------------------------- secrets


def _all_text(obj) -> str:
    return repr(obj) + str(obj)


def test_password_in_url_not_in_any_repr():
    s = load_settings(opts(mom(redis_url=f"redis://admin:{SECRET}@db.example:6380/2",
                               redis_read_url=f"rediss://:{SECRET}@replica:6379/0")))
    assert s.redis.url == f"redis://admin:{SECRET}@db.example:6380/2"  # the client still gets it
    for text in (_all_text(s), _all_text(s.redis), _all_text(s.redis_read), s.redis.safe_url):
        assert SECRET not in text
    assert "db.example:6380" in repr(s.redis)  # the repr is still useful


def test_password_option_and_keyfile_not_in_any_repr():
    keyfile = "/etc/salt/pki/redis/" + SECRET + ".key"
    s = load_settings(opts(mom(redis_password=SECRET, redis_url="rediss://db:6379/0", ssl_keyfile=keyfile)))
    assert s.redis.password == SECRET and s.redis.ssl_keyfile == keyfile
    for text in (_all_text(s), _all_text(s.redis)):
        assert SECRET not in text


def test_redis_settings_repr_direct():
    rs = RedisSettings(url=f"redis://u:{SECRET}@h:1/0", password=SECRET, ssl_keyfile=f"/k/{SECRET}")
    assert SECRET not in repr(rs) and SECRET not in str(rs)


def test_config_error_for_bad_url_hides_password():
    err = config_error(mom(redis_url=f"http://user:{SECRET}@h:6379/0"))
    assert err.option == "redis_url"
    assert SECRET not in str(err) and SECRET not in repr(err)
    assert "h:6379" in str(err)


def test_config_error_for_wrong_type_password_hides_it():
    err = config_error(mom(redis_password=12345678987))
    assert "12345678987" not in str(err)


def test_typo_in_password_option_does_not_print_the_value():
    err = config_error(mom(redis_passwd=SECRET))
    assert err.option == "redis_passwd"
    assert SECRET not in str(err)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, None),
        ("", ""),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("redis://u:pw@h/0", "redis://u:***@h/0"),
        ("rediss://u:pw@h:6380/1?ssl_cert_reqs=required", "rediss://u:***@h:6380/1?ssl_cert_reqs=required"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@h:6379/0",
        f"redis://user:{SECRET}@h/0",
        f"redis://user:{SECRET}@@h/0",
        # raw (not percent-encoded) passwords holding URL delimiters: a URL parser splits them
        # off the credentials, the redaction must still hide every character of them
        "redis://:pa#" + SECRET + "@h:6379/0",
        "redis://:pa/" + SECRET + "@h:6379/0",
        "redis://u:pa?" + SECRET + "@h/0",
        "redis://u:" + SECRET + "@pa@h/0",
        # a port redis-py would refuse: redaction must not crash (it runs inside __repr__)
        f"redis://:{SECRET}@h:notaport/0",
        f"redis://:{SECRET}@h:99999/0",
        f":{SECRET}@h:6379",
    ],
)
def test_redact_url_never_shows_or_crashes_on_a_password(url):
    out = redact_url(url)
    assert isinstance(out, str)
    assert SECRET not in out
    assert "pa" + "#" not in out and "pa/" not in out


def test_repr_of_settings_with_unusual_url_does_not_crash_or_leak():
    s = load_settings(opts(mom(redis_url=f"redis://:{SECRET}@h:notaport/0")))
    assert SECRET not in repr(s)
    assert SECRET not in repr(s.redis)



# ------------------------------------------------------------- one table of options, checked by it

def _plain_options():
    from dataclasses import fields

    from salt_redis_syndic.config import Settings

    return [f for f in fields(Settings) if f.metadata.get("plain")]


@pytest.mark.parametrize("f", [f for f in _plain_options() if f.type in ("int", "float")], ids=lambda f: f.name)
def test_each_number_option_takes_its_default_and_refuses_less_than_its_minimum(f):
    assert getattr(load_settings(opts(mom())), f.name) == f.default
    minimum = f.metadata["minimum"]
    assert getattr(load_settings(opts(mom(**{f.name: minimum}))), f.name) == minimum
    below = minimum - 1 if f.type == "int" else minimum - 0.0005
    err = config_error(mom(**{f.name: below}))
    assert err.option == f.name and f"must be >= {minimum}" in str(err)


@pytest.mark.parametrize("f", [f for f in _plain_options() if f.type == "bool"], ids=lambda f: f.name)
def test_each_flag_option_takes_its_default_and_refuses_a_string(f):
    assert getattr(load_settings(opts(mom())), f.name) is f.default
    assert getattr(load_settings(opts(mom(**{f.name: not f.default}))), f.name) is (not f.default)
    assert config_error(mom(**{f.name: "yes"})).option == f.name


def test_an_empty_allow_list_allows_nothing_while_unset_allows_everything():
    assert load_settings(opts(dc(allow_functions=[]))).allow_functions == ()
    assert load_settings(opts(dc())).allow_functions is None
    assert load_settings(opts(dc(deny_functions="test.*"))).deny_functions == ("test.*",)


PATHS = {"state_dir", "spool_dir", "signing_key"}  # any value is taken as a path (str())


@pytest.mark.parametrize("option", sorted(KNOWN_OPTIONS - PATHS))
def test_every_known_option_is_read_and_checked_by_its_own_rule(option):
    """A value of no usable type is refused naming the option: no option is known but never read."""
    err = config_error(dc(**{option: object()}))
    assert err.option == option and "typo" not in str(err)


def test_known_options_include_the_connection_options_not_the_built_connections():
    assert {"job_ttl", "redis_url", "redis_read_url", "redis_password", "socket_timeout", "key_management"} <= KNOWN_OPTIONS
    assert "redis" not in KNOWN_OPTIONS and "redis_read" not in KNOWN_OPTIONS
