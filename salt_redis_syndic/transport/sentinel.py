"""Redis Sentinel URLs: ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``.

The credentials are those of the Redis data nodes (Sentinels are reached without auth);
``rediss+sentinel://`` uses TLS to the data nodes and the Sentinels alike.  The client that
:func:`~salt_redis_syndic.transport.connection.make_client` builds asks the Sentinels for the
current primary on every new connection, so it follows a failover by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote


class SentinelURLError(ValueError):
    """The Sentinel URL cannot be used; the message never contains the password."""


@dataclass(frozen=True)
class SentinelTarget:
    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_sentinel_url(url: str) -> SentinelTarget:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise SentinelURLError("not a redis+sentinel:// URL")
    creds, at, hostpart = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, pwd = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pwd) if colon else None
    netloc, _, path = hostpart.partition("/")
    hosts: list[tuple[str, int]] = []
    for item in filter(None, netloc.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
        try:
            hosts.append((host.strip("[]"), int(port)))
        except ValueError:
            raise SentinelURLError(f"bad sentinel address {item!r}") from None
    if not hosts:
        raise SentinelURLError("no sentinel host:port given")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise SentinelURLError("the Sentinel service name is missing (…/service/db)")
    try:
        db = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise SentinelURLError(f"bad database number {parts[1]!r}") from None
    return SentinelTarget(tuple(hosts), unquote(parts[0]), db, scheme.startswith("rediss"), username, password)
