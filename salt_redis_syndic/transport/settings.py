"""How to reach one Redis endpoint (a frozen value built by :mod:`salt_redis_syndic.config`), and URL redaction for logs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def redact_url(url: str | None) -> str | None:
    """Return ``url`` with any password replaced, for logs and reprs.

    Everything up to the last ``@`` is treated as credentials: a raw (not percent-encoded)
    password may hold ``/ ? # @`` that a URL parser would split off.  Only a plain user name
    is kept.  Never raises (it runs inside ``__repr__``).
    """
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<redacted url>" if "@" in url else url
    if "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else userinfo
    shown = f"{user}:***" if user and _USER_RE.match(user) else "***"
    return f"{scheme}://{shown}@{hostpart}"


@dataclass(frozen=True)
class RedisSettings:
    """How to reach one Redis endpoint.  The URL may hold a password: never in repr."""

    url: str = field(repr=False)
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    health_check_interval: float = 15.0
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url) or ""

    def __repr__(self) -> str:  # explicit: the dataclass repr would be too easy to extend wrongly
        return f"RedisSettings(url={self.safe_url!r}, socket_timeout={self.socket_timeout})"
