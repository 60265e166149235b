"""How many subscribers are connected to the local master's publisher (Linux /proc).

ZeroMQ PUB sockets drop messages for subscribers that have not (re)connected yet, so a job
published the moment a restarted DC master comes up misses minions still reconnecting (their
backoff reaches ``recon_max``, 10 s by default).  The DC engine therefore waits, bounded by
``startup_grace``, until as many established connections reach the publish port as the
master has accepted minions, before it publishes the stream's backlog.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

_ESTABLISHED = "01"


def _ipv4(hex_addr: str) -> str | None:
    """``0100007F`` (as /proc/net/tcp prints it, little-endian) -> ``127.0.0.1``."""
    if len(hex_addr) != 8:
        return None
    try:
        return socket.inet_ntoa(bytes.fromhex(hex_addr)[::-1])
    except (ValueError, OSError):
        return None


def publish_connections(port: int, address: str | None = None,
                        tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")) -> int | None:
    """Established TCP connections to local ``address:port`` (any address if None or a wildcard).

    None where /proc is unavailable.  Several masters on one host share the default port on
    different addresses, hence the address filter.
    """
    if address in ("0.0.0.0", "::", ""):
        address = None
    found = False
    count = 0
    for table in tables:
        try:
            with open(table, encoding="ascii") as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != _ESTABLISHED:
                continue
            try:
                local_hex, port_hex = fields[1].rsplit(":", 1)
                local_port = int(port_hex, 16)
            except (IndexError, ValueError):
                continue
            if local_port != port:
                continue
            if address is not None and _ipv4(local_hex) != address:
                continue
            count += 1
    return count if found else None


def wait_for_subscribers(port: int, address: str | None, expected: Callable[[], int], grace: float,
                         stop: threading.Event, poll: float = 0.2) -> bool:
    """Wait until ``expected()`` subscribers are connected or ``grace`` seconds passed."""
    deadline = time.monotonic() + grace
    connected = None
    while not stop.is_set():
        connected = publish_connections(port, address)
        want = expected()
        if connected is None or connected >= want:
            return True
        if time.monotonic() >= deadline:
            log.warning("redis_syndic: only %d of %d minions are connected to the publisher after %.0fs; "
                        "publishing anyway (the others miss jobs published now, as with any Salt master)",
                        connected, want, grace)
            return False
        stop.wait(poll)
    return False
