"""Frozen settings built once from the master opts.

The ``redis_syndic`` block in the master config is shared by the engine, the returner and
the runner; engine kwargs override it.  Everything is validated here so that a bad option
produces one clear :class:`ConfigError` naming the option, never a traceback loop.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError
from .transport.settings import RedisSettings, redact_url

ROLES = ("mom", "dc")
KNOWN_OPTIONS = frozenset(
    """role dc master_id namespace redis_url redis_read_url redis_username redis_password
    socket_timeout connect_timeout health_check_interval ssl_ca_certs ssl_certfile ssl_keyfile
    ssl_check_hostname job_ttl clock_skew stream_maxlen block_ms heartbeat_interval dc_timeout
    ack_wait hold_max startup_grace publish_timeout batch_max_messages batch_max_bytes spool_poll_interval state_dir
    spool_dir signing_key trusted_keys dc_keys sentinel_username sentinel_password payload_key dc_payload_keys max_entry_bytes deadletter_max spool_warn_depth metrics_port
    metrics_address reconcile_interval resend_window allow_functions deny_functions allow_targets deny_targets allow_target_types
    moms mirror_returns forward_events forward_events_rate forward_events_max_bytes forward_events_original_tag
    forward_events_down relay
    estate estate_interval roster_seen_resolution roster_grains roster_stream_maxlen drift_roots drift_interval
    key_management""".split()
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NS_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


@dataclass(frozen=True)
class Settings:
    """Validated ``redis_syndic`` options (see docs/reference.md)."""

    role: str
    master_id: str
    redis: RedisSettings
    redis_read: RedisSettings | None
    dc: str | None = None
    namespace: str = "redis_syndic"
    job_ttl: float = 900.0
    clock_skew: float = 60.0
    stream_maxlen: int = 100_000
    block_ms: int = 1000
    heartbeat_interval: float = 2.0
    dc_timeout: float = 10.0
    ack_wait: float = 5.0
    hold_max: float = 600.0
    startup_grace: float = 15.0
    publish_timeout: float = 15.0
    batch_max_messages: int = 500
    batch_max_bytes: int = 8 * 1024 * 1024
    spool_poll_interval: float = 0.02
    # Reconciliation (salt_redis_syndic.reconcile / .confirm): re-send what Redis lost.
    reconcile_interval: float = 15.0
    resend_window: float = 6 * 3600.0
    state_dir: str = ""
    spool_dir: str = ""
    signing_key: str = ""
    trusted_keys: tuple[str, ...] = ()
    dc_keys: tuple[tuple[str, str], ...] = ()
    # Shared keys for payload encryption (base64 or file paths): never in repr.
    payload_key: str | None = field(default=None, repr=False)
    dc_payload_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    max_entry_bytes: int = 64 * 1024 * 1024
    deadletter_max: int = 10_000
    spool_warn_depth: int = 1000
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    # DC policy for bridged jobs (salt_redis_syndic.policy): None allow lists mean no restriction.
    allow_functions: tuple[str, ...] | None = None
    deny_functions: tuple[str, ...] = ()
    allow_targets: tuple[str, ...] | None = None
    deny_targets: tuple[str, ...] = ()
    allow_target_types: tuple[str, ...] | None = None
    # Topologies (salt_redis_syndic.forwarding): MoMs a DC sends events / mirrored returns to.
    moms: tuple[str, ...] = ()
    mirror_returns: bool = False
    forward_events: tuple[str, ...] = ()
    forward_events_rate: float = 100.0
    forward_events_max_bytes: int = 64 * 1024
    forward_events_original_tag: bool = False
    forward_events_down: tuple[str, ...] = ()
    relay: bool = False
    # The estate (salt_redis_syndic.estate.loops): each DC's minion roster and what its master serves.
    estate: bool = True
    estate_interval: float = 10.0
    roster_seen_resolution: float = 60.0
    roster_grains: tuple[str, ...] = ()
    roster_stream_maxlen: int = 1000
    # gitfs / git_pillar are fingerprinted only on a master configured for them (see drift.py).
    drift_roots: tuple[str, ...] = ("file_roots", "pillar_roots", "gitfs", "git_pillar")
    drift_interval: float = 60.0
    key_management: bool = False  # minion keys changed on a DC by signed MoM orders (salt_redis_syndic.keycmd)

    @property
    def is_mom(self) -> bool:
        return self.role == "mom"


def _block(opts: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    raw = opts.get("redis_syndic") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("redis_syndic", "must be a mapping of options")
    merged = dict(raw)
    for key, value in (overrides or {}).items():
        if not str(key).startswith("__"):
            merged[key] = value
    return merged


def _num(block: Mapping[str, Any], key: str, default: float, minimum: float = 0.0) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")
    return float(value)


def _int(block: Mapping[str, Any], key: str, default: int, minimum: int = 1) -> int:
    value = _num(block, key, default, minimum)
    if int(value) != value:
        raise ConfigError(key, f"must be a whole number, got {value}")
    return int(value)


def _bool(block: Mapping[str, Any], key: str, default: bool) -> bool:
    value = block.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {type(value).__name__}")
    return value


def _url(block: Mapping[str, Any], key: str, required: bool) -> str | None:
    value = block.get(key)
    if value in (None, ""):
        if required:
            raise ConfigError(key, "is required (e.g. redis://127.0.0.1:6379/0)")
        return None
    if not isinstance(value, str):
        raise ConfigError(key, "must be a string URL")
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
        raise ConfigError(key, "must start with redis://, rediss://, unix://, redis+sentinel:// or "
                               f"rediss+sentinel:// (got {redact_url(value)!r})")
    if scheme.endswith("+sentinel"):
        from .transport.sentinel import SentinelURLError, parse_sentinel_url

        try:
            parse_sentinel_url(value)
        except SentinelURLError as err:
            raise ConfigError(key, str(err)) from None
    return value


def _redis(block: Mapping[str, Any], url: str) -> RedisSettings:
    def opt_str(name: str) -> str | None:
        value = block.get(name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(name, "must be a string")
        return value or None

    return RedisSettings(
        url=url,
        socket_timeout=_num(block, "socket_timeout", 5.0, 0.1),
        connect_timeout=_num(block, "connect_timeout", 5.0, 0.1),
        health_check_interval=_num(block, "health_check_interval", 15.0, 0.0),
        ssl_ca_certs=opt_str("ssl_ca_certs"),
        ssl_certfile=opt_str("ssl_certfile"),
        ssl_keyfile=opt_str("ssl_keyfile"),
        ssl_check_hostname=_bool(block, "ssl_check_hostname", True),
        username=opt_str("redis_username"),
        password=opt_str("redis_password"),
        sentinel_username=opt_str("sentinel_username"),
        sentinel_password=opt_str("sentinel_password"),
    )


def _dc_keys(block: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """``dc_keys: {east: <path or PEM>}``: DC uplink keys the MoM accepts without salt-run accept."""
    value = block.get("dc_keys") or {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and _NAME_RE.match(k) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ConfigError("dc_keys", "must map DC names to public key file paths or PEM strings")
    return tuple(sorted(value.items()))


def _payload_keys(block: Mapping[str, Any]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """``payload_key`` (a DC's) and ``dc_payload_keys`` (the MoM's {dc: key}), validated."""
    from .security.confidential import load_payload_key

    own = block.get("payload_key")
    if own is not None:
        if not isinstance(own, str):
            raise ConfigError("payload_key", "must be base64 text or a file path")
        load_payload_key(own, "payload_key")
    keys = block.get("dc_payload_keys") or {}
    if not isinstance(keys, Mapping) or not all(isinstance(k, str) and _NAME_RE.match(k) and isinstance(v, str)
                                                for k, v in keys.items()):
        raise ConfigError("dc_payload_keys", "must map DC names to base64 keys or key file paths")
    for spec in keys.values():
        load_payload_key(spec, "dc_payload_keys")
    return own, tuple(sorted(keys.items()))


def _keys(block: Mapping[str, Any]) -> tuple[str, ...]:
    value = block.get("trusted_keys", ())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("trusted_keys", "must be a list of public key file paths or PEM strings")
    return tuple(value)


def _globs(block: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    """A list of glob patterns (a single string is a one-item list); None when unset."""
    value = block.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(key, f"must be a list of glob patterns (non-empty strings), got {value!r}")
    return tuple(value)


def _target_types(block: Mapping[str, Any]) -> tuple[str, ...] | None:
    from .security.policy import TARGET_TYPES

    value = _globs(block, "allow_target_types")
    if value is not None:
        unknown = sorted(set(value) - TARGET_TYPES)
        if unknown:
            raise ConfigError("allow_target_types", f"unknown target type(s) {', '.join(map(repr, unknown))}; "
                                                    f"known: {', '.join(sorted(TARGET_TYPES))}")
    return value


def _moms(block: Mapping[str, Any], role: str) -> tuple[str, ...]:
    """``moms``: the MoM ids a DC sends forwarded events and mirrored returns to."""
    value = block.get("moms") or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and _NAME_RE.match(v) for v in value):
        raise ConfigError("moms", f"must be a list of MoM master ids, got {value!r}")
    moms = tuple(dict.fromkeys(value))
    if role == "dc" and not moms:
        for needs in ("forward_events", "mirror_returns"):
            if block.get(needs):
                raise ConfigError("moms", f"is required with {needs}: the master ids of the MoMs to send to")
    return moms
def _drift_roots(block: Mapping[str, Any]) -> tuple[str, ...]:
    kinds = Settings.drift_roots
    value = block.get("drift_roots", list(kinds))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not set(value) <= set(kinds):
        raise ConfigError("drift_roots", f"must be a list of {', '.join(kinds)} (or []), got {value!r}")
    return tuple(dict.fromkeys(value))


def _metrics_port(block: Mapping[str, Any]) -> int | None:
    value = block.get("metrics_port")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError("metrics_port", f"must be a TCP port number 1-65535 (or unset to turn metrics off), got {value!r}")
    return value


def _metrics_address(block: Mapping[str, Any]) -> str:
    value = block.get("metrics_address", "127.0.0.1")
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            if _HOST_RE.match(value):
                return value
    raise ConfigError("metrics_address", f"must be an IP address or host name to listen on, got {value!r}")


def load_settings(opts: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build :class:`Settings` from master ``opts`` and optional engine kwargs.

    Raises :class:`ConfigError` naming the first wrong option.
    """
    block = _block(opts, overrides)
    unknown = sorted(set(block) - KNOWN_OPTIONS)
    if unknown:
        raise ConfigError(str(unknown[0]), "is not a known redis_syndic option (typo?)")
    role = block.get("role")
    if role not in ROLES:
        raise ConfigError("role", f"must be one of {', '.join(ROLES)} (got {role!r})")
    dc = block.get("dc")
    if role == "dc":
        if not isinstance(dc, str) or not _NAME_RE.match(dc):
            raise ConfigError("dc", "is required for role dc: a short name of letters, digits, '.', '_' or '-'")
    namespace = block.get("namespace", "redis_syndic")
    if not isinstance(namespace, str) or not _NS_RE.match(namespace):
        raise ConfigError("namespace", "must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    master_id = str(block.get("master_id") or opts.get("id") or "")
    if not _NAME_RE.match(master_id):
        raise ConfigError("master_id", f"the master id {master_id!r} is not usable as a name; set redis_syndic:master_id")
    url = _url(block, "redis_url", required=True)
    assert url is not None
    read_url = _url(block, "redis_read_url", required=False)
    cachedir = str(opts.get("cachedir") or "/var/cache/salt/master")
    pki_dir = str(opts.get("pki_dir") or "/etc/salt/pki/master")
    state_dir = str(block.get("state_dir") or os.path.join(cachedir, "redis_syndic"))
    spool_dir = str(block.get("spool_dir") or os.path.join(state_dir, "spool"))
    signing_key = str(block.get("signing_key") or os.path.join(pki_dir, "redis_syndic.pem"))
    trusted = _keys(block)
    if role == "dc" and not trusted:
        raise ConfigError("trusted_keys", "a DC must trust at least one MoM public key (print it with salt-run redis_syndic.pubkey on the MoM)")
    payload_key, dc_payload_keys = _payload_keys(block)
    settings = Settings(
        role=role,
        master_id=master_id,
        dc=dc if role == "dc" else None,
        redis=_redis(block, url),
        redis_read=_redis(block, read_url) if read_url else None,
        namespace=namespace,
        job_ttl=_num(block, "job_ttl", 900.0, 1.0),
        clock_skew=_num(block, "clock_skew", 60.0, 0.0),
        stream_maxlen=_int(block, "stream_maxlen", 100_000, 100),
        block_ms=_int(block, "block_ms", 1000, 10),
        heartbeat_interval=_num(block, "heartbeat_interval", 2.0, 0.1),
        dc_timeout=_num(block, "dc_timeout", 10.0, 0.5),
        ack_wait=_num(block, "ack_wait", 5.0, 0.0),
        hold_max=_num(block, "hold_max", 600.0, 1.0),
        startup_grace=_num(block, "startup_grace", 15.0, 0.0),
        publish_timeout=_num(block, "publish_timeout", 15.0, 1.0),
        batch_max_messages=_int(block, "batch_max_messages", 500, 1),
        batch_max_bytes=_int(block, "batch_max_bytes", 8 * 1024 * 1024, 1024),
        spool_poll_interval=_num(block, "spool_poll_interval", 0.02, 0.001),
        reconcile_interval=_num(block, "reconcile_interval", 15.0, 0.5),
        resend_window=_num(block, "resend_window", 6 * 3600.0, 60.0),
        state_dir=state_dir,
        spool_dir=spool_dir,
        signing_key=signing_key,
        trusted_keys=trusted,
        dc_keys=_dc_keys(block),
        payload_key=payload_key,
        dc_payload_keys=dc_payload_keys,
        max_entry_bytes=_int(block, "max_entry_bytes", 64 * 1024 * 1024, 1024),
        deadletter_max=_int(block, "deadletter_max", 10_000, 1),
        spool_warn_depth=_int(block, "spool_warn_depth", 1000, 1),
        metrics_port=_metrics_port(block),
        metrics_address=_metrics_address(block),
        allow_functions=_globs(block, "allow_functions"),
        deny_functions=_globs(block, "deny_functions") or (),
        allow_targets=_globs(block, "allow_targets"),
        deny_targets=_globs(block, "deny_targets") or (),
        allow_target_types=_target_types(block),
        moms=_moms(block, role),
        mirror_returns=_bool(block, "mirror_returns", False),
        forward_events=_globs(block, "forward_events") or (),
        forward_events_rate=_num(block, "forward_events_rate", 100.0, 0.1),
        forward_events_max_bytes=_int(block, "forward_events_max_bytes", 64 * 1024, 256),
        forward_events_original_tag=_bool(block, "forward_events_original_tag", False),
        forward_events_down=_globs(block, "forward_events_down") or (),
        relay=_bool(block, "relay", False),
        estate=_bool(block, "estate", True),
        estate_interval=_num(block, "estate_interval", 10.0, 0.1),
        roster_seen_resolution=_num(block, "roster_seen_resolution", 60.0, 0.0),
        roster_grains=_globs(block, "roster_grains") or (),
        roster_stream_maxlen=_int(block, "roster_stream_maxlen", 1000, 10),
        drift_roots=_drift_roots(block),
        drift_interval=_num(block, "drift_interval", 60.0, 0.1),
        key_management=_bool(block, "key_management", False),
    )
    return settings

def destinations(settings: Settings, origin: str) -> list[str]:
    """Where a job's acks and returns go: its origin MoM, plus every MoM in ``moms`` with ``mirror_returns``."""
    if not settings.mirror_returns:
        return [origin]
    return [origin] + [mom for mom in settings.moms if mom != origin]


def dc_keys_dir(settings: Settings) -> str:
    """Where the MoM keeps DC uplink keys (pending, accepted, rejected)."""
    return os.path.join(settings.state_dir, "dc_keys")
