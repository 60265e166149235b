"""The running Salt release, and the one place that says which releases are supported.

What differs between the supported releases is behind functions of this package, each chosen
by :func:`running` (``salt.version.__saltstack_version__``): the publish event
(:mod:`.publish`), the minion data cache bank (:class:`MinionDataCache`), the gitfs providers
(:mod:`.gitfs`) and ``start_event`` (:func:`passes_start_event`).
"""

from __future__ import annotations

import salt.version

from ..errors import UnsupportedSalt

Release = tuple[int, int]  # (major, minor): (3006, 29)

OLDEST = 3006
NEWEST_TESTED = 3008
SUPPORTED_TEXT = "Salt 3006 LTS, 3007 and 3008 LTS"


def running() -> Release:
    """The release of the Salt this process runs (``3006.29`` → ``(3006, 29)``)."""
    info = salt.version.__saltstack_version__
    return int(info.major), int(info.minor or 0)


def check_supported(release: Release) -> str | None:
    """Raise :class:`UnsupportedSalt` below 3006; a warning text above the newest tested release."""
    major, minor = release
    if major < OLDEST:
        raise UnsupportedSalt(f"redis_syndic: Salt {major}.{minor} is not supported (supported: {SUPPORTED_TEXT})")
    if major > NEWEST_TESTED:
        return (f"redis_syndic: Salt {major}.{minor} is newer than the releases this version was tested "
                f"on ({SUPPORTED_TEXT}); running anyway")
    return None


def fires_publish_event(release: Release) -> bool:
    """Whether the master fires ``salt/job/<jid>/publish`` (3007+); 3006 fires only ``new``."""
    return release[0] >= 3007


def passes_start_event(release: Release) -> bool:
    """Whether ``LocalClient.pub`` takes ``start_event`` and puts it in the load (3008+)."""
    return release[0] >= 3008


def grains_bank(release: Release) -> tuple[str, str | None]:
    """``(bank, key)`` of a minion's grains in the minion data cache: 3008 ``grains/<id>``,
    3006 and 3007 ``minions/<id>`` key ``data`` (a dict with ``grains`` and ``pillar``)."""
    return ("grains", None) if release[0] >= 3008 else ("minions/{minion}", "data")
