"""Frozen settings built once from the master opts.

The ``redis_syndic`` block in the master config is shared by the engine, the returner and
the runner; engine kwargs override it.  Everything is validated here so that a bad option
produces one clear :class:`ConfigError` naming the option, never a traceback loop.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .errors import ConfigError
from .security.names import NAME_RE
from .transport.settings import RedisSettings, redact_url

ROLES = ("mom", "dc")
_NS_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


def _opt(default: Any, minimum: float | None = None, **kw: Any) -> Any:
    """A field that is read from the option of the same name by its type alone (number, whole
    number, flag, glob list): the default here is the option's only default, ``minimum`` the
    smallest number it takes."""
    return field(default=default, metadata={"plain": True, "minimum": minimum}, **kw)


@dataclass(frozen=True)
class Settings:
    """Validated ``redis_syndic`` options (see docs/reference.md)."""

    role: str
    master_id: str
    redis: RedisSettings
    redis_read: RedisSettings | None
    dc: str | None = None
    namespace: str = "redis_syndic"
    job_ttl: float = _opt(900.0, 1.0)
    clock_skew: float = _opt(60.0, 0.0)
    stream_maxlen: int = _opt(100_000, 100)
    block_ms: int = _opt(1000, 10)
    heartbeat_interval: float = _opt(2.0, 0.1)
    dc_timeout: float = _opt(10.0, 0.5)
    ack_wait: float = _opt(5.0, 0.0)
    hold_max: float = _opt(600.0, 1.0)
    startup_grace: float = _opt(15.0, 0.0)
    publish_timeout: float = _opt(15.0, 1.0)
    batch_max_messages: int = _opt(500, 1)
    batch_max_bytes: int = _opt(8 * 1024 * 1024, 1024)
    spool_poll_interval: float = _opt(0.02, 0.001)
    # Reconciliation (salt_redis_syndic.reconcile / .confirm): re-send what Redis lost.
    reconcile_interval: float = _opt(15.0, 0.5)
    resend_window: float = _opt(6 * 3600.0, 60.0)
    state_dir: str = ""
    spool_dir: str = ""
    signing_key: str = ""
    trusted_keys: tuple[str, ...] = ()
    dc_keys: tuple[tuple[str, str], ...] = ()
    # Shared keys for payload encryption (base64 or file paths): never in repr.
    payload_key: str | None = field(default=None, repr=False)
    dc_payload_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    max_entry_bytes: int = _opt(64 * 1024 * 1024, 1024)
    deadletter_max: int = _opt(10_000, 1)
    spool_warn_depth: int = _opt(1000, 1)
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    # DC policy for bridged jobs (salt_redis_syndic.policy): None allow lists mean no restriction.
    allow_functions: tuple[str, ...] | None = _opt(None)
    deny_functions: tuple[str, ...] = _opt(())
    allow_targets: tuple[str, ...] | None = _opt(None)
    deny_targets: tuple[str, ...] = _opt(())
    allow_target_types: tuple[str, ...] | None = None
    # Topologies (salt_redis_syndic.forwarding): MoMs a DC sends events / mirrored returns to.
    moms: tuple[str, ...] = ()
    mirror_returns: bool = _opt(False)
    forward_events: tuple[str, ...] = _opt(())
    forward_events_rate: float = _opt(100.0, 0.1)
    forward_events_max_bytes: int = _opt(64 * 1024, 256)
    forward_events_original_tag: bool = _opt(False)
    forward_events_down: tuple[str, ...] = _opt(())
    relay: bool = _opt(False)
    # The estate (salt_redis_syndic.estate.dc_estate, .mom_estate): each DC's minion roster and what its master serves.
    estate: bool = _opt(True)
    estate_interval: float = _opt(10.0, 0.1)
    roster_seen_resolution: float = _opt(60.0, 0.0)
    roster_grains: tuple[str, ...] = _opt(())
    roster_stream_maxlen: int = _opt(1000, 10)
    # gitfs / git_pillar are fingerprinted only on a master configured for them (see drift.py).
    drift_roots: tuple[str, ...] = ("file_roots", "pillar_roots", "gitfs", "git_pillar")
    drift_interval: float = _opt(60.0, 0.1)
    key_management: bool = _opt(False)  # minion keys changed on a DC by signed MoM orders (salt_redis_syndic.keycmd)
    # DC minions listed (never authenticating) in the MoM key store, for long jobs (estate.keymirror)
    mirror_minion_keys: bool = _opt(True)

    @property
    def is_mom(self) -> bool:
        return self.role == "mom"


# The options of a Redis connection: option -> (RedisSettings field, whose default is the option's; minimum).
REDIS_OPTIONS: dict[str, tuple[str, float | None]] = {
    "socket_timeout": ("socket_timeout", 0.1), "connect_timeout": ("connect_timeout", 0.1),
    "health_check_interval": ("health_check_interval", 0.0), "ssl_ca_certs": ("ssl_ca_certs", None),
    "ssl_certfile": ("ssl_certfile", None), "ssl_keyfile": ("ssl_keyfile", None),
    "ssl_check_hostname": ("ssl_check_hostname", None), "redis_username": ("username", None),
    "redis_password": ("password", None), "sentinel_username": ("sentinel_username", None),
    "sentinel_password": ("sentinel_password", None),
}
# Every option: each Settings field is one (but the built connections), plus the connections' options.
KNOWN_OPTIONS = frozenset({f.name for f in fields(Settings)} - {"redis", "redis_read"}
                          | {"redis_url", "redis_read_url"} | set(REDIS_OPTIONS))


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
    values: dict[str, Any] = {}
    for option, (name, minimum) in REDIS_OPTIONS.items():
        default: Any = RedisSettings.__dataclass_fields__[name].default
        if isinstance(default, bool):
            values[name] = _bool(block, option, default)
        elif minimum is not None:
            values[name] = _num(block, option, default, minimum)
        else:
            value = block.get(option)
            if value is not None and not isinstance(value, str):
                raise ConfigError(option, "must be a string")
            values[name] = value or None
    return RedisSettings(url=url, **values)


def _dc_keys(block: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """``dc_keys: {east: <path or PEM>}``: DC uplink keys the MoM accepts without salt-run accept."""
    value = block.get("dc_keys") or {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and NAME_RE.match(k) and isinstance(v, str) and v for k, v in value.items()
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
    if not isinstance(keys, Mapping) or not all(isinstance(k, str) and NAME_RE.match(k) and isinstance(v, str)
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
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and NAME_RE.match(v) for v in value):
        raise ConfigError("moms", f"must be a list of MoM master ids, got {value!r}")
    moms = tuple(dict.fromkeys(value))
    if role == "dc" and not moms:
        for needs in ("forward_events", "mirror_returns"):
            if block.get(needs):
                raise ConfigError("moms", f"is required with {needs}: the master ids of the MoMs to send to")
    return moms
def _drift_roots(block: Mapping[str, Any]) -> tuple[str, ...]:
    kinds = Settings.drift_roots  # every kind, the default
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
    value = block.get("metrics_address", Settings.metrics_address)
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
    values = _identity(block, opts)
    values.update(_plain(block))
    values.update(_keyed(block, values["role"]))
    return Settings(**values)


def _identity(block: Mapping[str, Any], opts: Mapping[str, Any]) -> dict[str, Any]:
    """Who this master is, where Redis is and where its files go."""
    role = block.get("role")
    if role not in ROLES:
        raise ConfigError("role", f"must be one of {', '.join(ROLES)} (got {role!r})")
    dc = block.get("dc")
    if role == "dc":
        if not isinstance(dc, str) or not NAME_RE.match(dc):
            raise ConfigError("dc", "is required for role dc: a short name of letters, digits, '.', '_' or '-'")
    namespace = block.get("namespace", Settings.namespace)
    if not isinstance(namespace, str) or not _NS_RE.match(namespace):
        raise ConfigError("namespace", "must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    master_id = str(block.get("master_id") or opts.get("id") or "")
    if not NAME_RE.match(master_id):
        raise ConfigError("master_id", f"the master id {master_id!r} is not usable as a name; set redis_syndic:master_id")
    url = _url(block, "redis_url", required=True)
    assert url is not None
    read_url = _url(block, "redis_read_url", required=False)
    cachedir = str(opts.get("cachedir") or "/var/cache/salt/master")
    pki_dir = str(opts.get("pki_dir") or "/etc/salt/pki/master")
    state_dir = str(block.get("state_dir") or os.path.join(cachedir, "redis_syndic"))
    return {
        "role": role, "dc": dc if role == "dc" else None, "namespace": namespace, "master_id": master_id,
        "state_dir": state_dir, "spool_dir": str(block.get("spool_dir") or os.path.join(state_dir, "spool")),
        "signing_key": str(block.get("signing_key") or os.path.join(pki_dir, "redis_syndic.pem")),
    } | _trust(block, role) | {"redis": _redis(block, url), "redis_read": _redis(block, read_url) if read_url else None}


def _trust(block: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The keys: the MoM keys a DC trusts, payload keys."""
    trusted = _keys(block)
    if role == "dc" and not trusted:
        raise ConfigError("trusted_keys", "a DC must trust at least one MoM public key (print it with salt-run redis_syndic.pubkey on the MoM)")
    payload_key, dc_payload_keys = _payload_keys(block)
    return {"trusted_keys": trusted, "payload_key": payload_key, "dc_payload_keys": dc_payload_keys}


def _plain(block: Mapping[str, Any]) -> dict[str, Any]:
    """Every option declared with :func:`_opt`, read by its type: numbers, flags, glob lists."""
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if not f.metadata.get("plain"):
            continue
        minimum: Any = f.metadata["minimum"]
        default: Any = f.default
        if f.type == "bool":
            values[f.name] = _bool(block, f.name, default)
        elif f.type == "int":
            values[f.name] = _int(block, f.name, default, minimum)
        elif f.type == "float":
            values[f.name] = _num(block, f.name, default, minimum)
        else:  # a glob list; unset is the default (None: no restriction; an empty list restricts)
            globs = _globs(block, f.name)
            values[f.name] = default if globs is None else globs
    return values


def _keyed(block: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The options with a rule of their own."""
    return {
        "dc_keys": _dc_keys(block),
        "metrics_port": _metrics_port(block),
        "metrics_address": _metrics_address(block),
        "allow_target_types": _target_types(block),
        "moms": _moms(block, role),
        "drift_roots": _drift_roots(block),
    }


def destinations(settings: Settings, origin: str) -> list[str]:
    """Where a job's acks and returns go: its origin MoM, plus every MoM in ``moms`` with ``mirror_returns``."""
    if not settings.mirror_returns:
        return [origin]
    return [origin] + [mom for mom in settings.moms if mom != origin]


def dc_keys_dir(settings: Settings) -> str:
    """Where the MoM keeps DC uplink keys (pending, accepted, rejected)."""
    return os.path.join(settings.state_dir, "dc_keys")
