"""Library side of the ``redis_syndic`` runner: settings in, plain data out (Salt outputters render it)."""

from __future__ import annotations

from typing import Any, Mapping

from .config import dc_keys_dir, load_settings
from .errors import ConfigError
from .ops.status import dc_status, job_report
from .security.dckeys import DcKeyring
from .security.signing import load_or_create_signer


def _settings(opts: Mapping[str, Any]):
    settings = load_settings(opts)
    if not settings.is_mom:
        raise ConfigError("role", "the redis_syndic runner runs on the master of masters (role: mom)")
    return settings


def status(opts: Mapping[str, Any]) -> dict[str, Any]:
    return dc_status(_settings(opts))


def job(opts: Mapping[str, Any], jid: str) -> dict[str, Any]:
    return job_report(_settings(opts), jid, utc_jid=bool(opts.get("utc_jid")))


def minions(opts: Mapping[str, Any], dc: str | None = None, state: str | None = None) -> dict[str, Any]:
    from .ops.estate_report import minions_view

    try:
        return minions_view(_settings(opts), dc=dc, state=state)
    except ValueError as err:
        raise ConfigError("state", str(err)) from None


def drift(opts: Mapping[str, Any]) -> dict[str, Any]:
    from .ops.estate_report import drift_view

    return drift_view(_settings(opts))


def _keyring(opts: Mapping[str, Any]) -> DcKeyring:
    settings = _settings(opts)
    return DcKeyring(dc_keys_dir(settings), dict(settings.dc_keys))


def keys(opts: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """DC uplink keys by state: accepted, pending, rejected (like salt-key -L)."""
    out: dict[str, dict[str, str]] = {}
    for info in _keyring(opts).list():
        out.setdefault(info.state, {})[info.dc] = info.key_id
    return out


def accept(opts: Mapping[str, Any], dc: str, key_id: str | None = None) -> dict[str, str]:
    """Trust DC ``dc``'s announced key if its id is ``key_id`` (without it: refused, naming the pending key id)."""
    info = _keyring(opts).accept(dc, key_id)
    return {"dc": info.dc, "state": info.state, "key_id": info.key_id}


def reject(opts: Mapping[str, Any], dc: str) -> dict[str, str]:
    info = _keyring(opts).reject(dc)
    return {"dc": info.dc, "state": info.state, "key_id": info.key_id}


def pubkey(opts: Mapping[str, Any]) -> str:
    signer = load_or_create_signer(_settings(opts).signing_key)
    return signer.public_pem


def key(opts: Mapping[str, Any], dc: str, action: str, minion: str) -> dict[str, Any]:
    """Send a signed accept/reject/delete order for one minion key to DC ``dc`` (key_management)."""
    import getpass
    import os

    from .estate.keycmd import send

    try:  # who ran salt-run, for the audit lines (sudo keeps the real user in SUDO_USER)
        by = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        by = ""
    return send(_settings(opts), dc, action, minion, by)
