"""Redis clients with explicit timeouts and retry, never library defaults.

redis-py changed its default retry policy three times between 5.x and 8.x; a blocking read on
a dead WAN link must time out when *we* say so.  Clients are created inside the process that
uses them (engines fork), never at module level.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..errors import TransportError
from .sentinel import parse_sentinel_url
from .settings import RedisSettings

Client = redis.Redis  # the client type, for annotations outside transport (which never import redis)

# Errors that mean "Redis is away or the link is broken": retry later, spool meanwhile.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError, OSError)


def make_client(settings: RedisSettings, extra_timeout: float = 0.0) -> redis.Redis:
    """A client for one endpoint.  ``extra_timeout`` covers server-side blocking (BLMOVE, XREAD BLOCK)."""
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout + extra_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "health_check_interval": settings.health_check_interval,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 1),
        "retry_on_timeout": False,
        "decode_responses": False,
        "client_name": "redis_syndic",
    }
    if settings.username:
        kwargs["username"] = settings.username
    if settings.password:
        kwargs["password"] = settings.password
    if settings.url.startswith(("rediss://", "rediss+sentinel://")):
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
        if settings.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = settings.ssl_ca_certs
        if settings.ssl_certfile:
            kwargs["ssl_certfile"] = settings.ssl_certfile
        if settings.ssl_keyfile:
            kwargs["ssl_keyfile"] = settings.ssl_keyfile
    try:
        if "+sentinel://" in settings.url:
            return _sentinel_client(settings, kwargs)
        return redis.Redis.from_url(settings.url, **kwargs)
    except (ValueError, redis.RedisError) as err:
        raise TransportError(f"cannot build a client for {settings.safe_url}: {err.__class__.__name__}") from None


def _sentinel_client(settings: RedisSettings, kwargs: dict[str, Any]) -> redis.Redis:
    """A client for the primary that the Sentinels name now (re-asked on every reconnect)."""
    target = parse_sentinel_url(settings.url)
    kwargs = dict(kwargs)
    if target.username and "username" not in kwargs:
        kwargs["username"] = target.username
    if target.password and "password" not in kwargs:
        kwargs["password"] = target.password
    if target.tls:
        kwargs["ssl"] = True
    sentinel_kwargs = {k: v for k, v in kwargs.items()
                       if k in ("socket_timeout", "socket_connect_timeout", "ssl", "ssl_ca_certs",
                                "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")}
    # Sentinels have their own credentials (requirepass / ACL users in sentinel.conf).
    if settings.sentinel_username:
        sentinel_kwargs["username"] = settings.sentinel_username
    if settings.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel_password
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs, **kwargs)
    return sentinel.master_for(target.service, redis_class=redis.Redis, db=target.db, **kwargs)


def describe_error(err: BaseException) -> str:
    """One-line reason for a transport failure, without any secret (redis-py messages hold none)."""
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{err.__class__.__name__}: {text}"[:200]
