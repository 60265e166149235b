"""One exception root per layer; each layer translates the one below at its boundary."""

from __future__ import annotations


class RedisSyndicError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(RedisSyndicError):
    """The ``redis_syndic`` configuration is missing or wrong.

    ``option`` names the offending key so the one log line tells the operator what to fix.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"redis_syndic: option {option!r}: {message}")
        self.option = option


class TransportError(RedisSyndicError):
    """Redis could not be reached or answered with an error (retryable)."""


class RejectedEntry(RedisSyndicError):
    """An entry read from Redis failed decoding, validation or verification.

    ``reason`` is a short machine-friendly token (``bad_signature``, ``expired``, ...)
    used for counters, dead-letter records and event tags; ``detail`` is cut to ``MAX_DETAIL``.
    """

    MAX_DETAIL = 300  # a detail may quote hostile input: it goes to logs, events and dead letters

    def __init__(self, reason: str, detail: str = "") -> None:
        if len(detail) > self.MAX_DETAIL:
            detail = detail[: self.MAX_DETAIL] + "..."
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SpoolError(RedisSyndicError):
    """The local durable spool could not be written or read."""


class StoreFailed(RedisSyndicError):
    """The master's job cache did not keep a return (a write that failed or half happened, a
    returner that raised: Salt's ``store_job`` logs those and goes on).

    ``retryable`` is False when Salt refused the load itself (storing it again cannot help).
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class UnsupportedSalt(RedisSyndicError):
    """The running Salt release is not one this package supports (the engine idles)."""
