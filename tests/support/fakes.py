"""In-memory stand-ins for the Salt side of a role (event bus, job cache, publisher) and the uplink queue.

One definition of each, shared by the unit and functional tests, so a test builds a role's loop
from the same fakes instead of writing its own. Each records what the loop did to it, for the
test to assert on; none decides anything.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from salt_redis_syndic.errors import StoreFailed
from salt_redis_syndic.salt_adapter import PublishFailed


class FakeBus:
    """Salt's event bus: every fired event as ``(tag, data)``; as a listening bus, it hears what a test
    puts in ``incoming`` (``(tag, data)``, oldest first), else nothing.

    ``log``, when given, also receives ``("event", tag, data)`` so a test can check the order of
    events against another fake's calls (see :class:`FakeCache`). ``listen`` and ``open`` stand in
    for a bus the role factory opens lazily in its loop's thread.
    """

    def __init__(self, listen: bool = False, log: list[tuple[Any, ...]] | None = None) -> None:
        self.listen = listen
        self.opened = 0
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.incoming: list[tuple[str, Any]] = []
        self.log = log

    def open(self) -> FakeBus:
        self.opened += 1
        return self

    def get(self, wait: float) -> tuple[str, Any] | None:
        """The next of ``incoming``; None: no event arrived within ``wait``."""
        return self.incoming.pop(0) if self.incoming else None

    def fire(self, data: Mapping[str, Any], tag: str) -> bool:
        self.events.append((tag, dict(data)))
        if self.log is not None:
            self.log.append(("event", tag, dict(data)))
        return True

    def tags(self) -> list[str]:
        return [t for t, _ in self.events]


class FakeCache:
    """Salt's job cache: loads and returns to look up, and every store recorded.

    ``stored`` holds ``(jid, minion)`` per ``store_job`` that kept the return; ``attempts`` every
    ``store_job`` call as ``(jid, minion, fired)`` (``fired``: a bus was passed, so the real job
    cache would have fired the return's event). A ``StoreFailed`` put in ``failures`` is raised by
    the next ``store_job`` instead of storing (once each). ``log`` (optional) receives every write
    (``store_job``, ``store_minions``, ``note_dc_minions``) in order, shared with a bus.
    """

    def __init__(self, loads: Mapping[str, dict[str, Any]] | None = None,
                 recent: Iterable[tuple[str, float, dict[str, Any]]] = (),
                 log: list[tuple[Any, ...]] | None = None) -> None:
        self.loads: dict[str, dict[str, Any]] = dict(loads or {})
        self.returns: dict[tuple[str, str], dict[str, Any]] = {}
        self.recent = list(recent)
        self.asked_since: list[float] = []
        self.stored: list[tuple[str, str]] = []
        self.attempts: list[tuple[str, str, bool]] = []
        self.failures: list[StoreFailed] = []
        self.log = log

    def get_load(self, jid: str) -> dict[str, Any]:
        return self.loads.get(jid, {})

    def get_return(self, jid: str, minion: str) -> dict[str, Any] | None:
        return self.returns.get((jid, minion))

    def recent_loads(self, since: float) -> list[tuple[str, float, dict[str, Any]]]:
        """Every load in ``recent``, whatever ``since`` (kept in ``asked_since`` for the test to check)."""
        self.asked_since.append(since)
        return list(self.recent)

    def stored_ids(self) -> list[str]:
        """The minion of each stored return, in order."""
        return [minion for _, minion in self.stored]

    def store_job(self, load: dict[str, Any], bus: Any) -> None:
        self.attempts.append((load["jid"], load["id"], bus is not None))
        if self.failures:
            raise self.failures.pop(0)
        self.stored.append((load["jid"], load["id"]))
        self._note(("store_job", load["jid"], load["id"], dict(load)))

    def store_minions(self, jid: str, minions: list[str], dc: str) -> None:
        self._note(("store_minions", jid, list(minions), dc))

    def note_dc_minions(self, jid: str, dc: str, minions: list[str]) -> None:
        self._note(("note_dc_minions", jid, dc, list(minions)))

    def _note(self, entry: tuple[Any, ...]) -> None:
        if self.log is not None:
            self.log.append(entry)


class FakePublisher:
    """Salt's LocalClient publish: each call as ``(load, origin, timeout)``; answers ``minions``.

    A ``PublishFailed`` put in ``failures`` is raised by the next call instead (once each).
    """

    def __init__(self, minions: Iterable[str] = ("m1", "m2")) -> None:
        self.minions = list(minions)
        self.calls: list[tuple[dict[str, Any], str, float]] = []
        self.failures: list[PublishFailed] = []

    def publish(self, load: Mapping[str, Any], origin: str, timeout: float) -> list[str]:
        self.calls.append((dict(load), origin, timeout))
        if self.failures:
            raise self.failures.pop(0)
        return list(self.minions)

    def loads(self) -> list[dict[str, Any]]:
        return [load for load, _, _ in self.calls]

    def jids(self) -> list[str]:
        return [load["jid"] for load, _, _ in self.calls]


class FakeQueue:
    """The MoM's uplink queue as ``Collector`` acknowledges batches: ``done_calls`` in order."""

    def __init__(self) -> None:
        self.done_calls: list[bytes] = []

    def done(self, items: list[bytes]) -> None:
        self.done_calls.extend(items)
