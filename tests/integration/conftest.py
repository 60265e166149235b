"""Lab fixtures for integration tests: real salt-masters, minions and Redis on loopback.

``lab`` is module-scoped (a lab takes ~10-20 s to build on two cores): tests in one module
share it and must leave it as they found it (heal proxies, restart what they stopped).
Tests that need their own topology or break things for good use ``make_lab(**kwargs)``.

When a test fails, the tails of the MoM and DC master logs (and Redis's) of every lab it
used are attached to its report, so CI output shows the daemons' side of the story.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab import Lab

LOG_TAIL_LINES = 60


def _labs_of(item: pytest.Item) -> list[Lab]:
    """Every started lab a test used, through ``lab``, ``make_lab`` or a Lab-valued fixture."""
    labs: list[Lab] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Lab):
            labs.append(value)
        elif isinstance(value, LabFactory):
            labs.extend(value.labs)
    return [lab for lab in labs if lab.started]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for lab in _labs_of(item):
        names = [*lab.masters] + (["redis"] if lab.redis is not None else [])
        report.sections.append(
            (f"lab logs ({lab.root})", lab.log_tails(names, lines=LOG_TAIL_LINES))
        )


class LabFactory:
    """Builds, starts and remembers labs so the fixture can tear every one of them down."""

    def __init__(self) -> None:
        self.labs: list[Lab] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Lab:
        lab = Lab(*args, **kwargs)
        self.labs.append(lab)
        return lab.start()

    def stop_all(self) -> None:
        for lab in self.labs:
            lab.stop()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """The default bridged lab: MoM + DCs east and west with 2 minions each, and Redis.

    Ready means every minion answers its own DC master; whether the bridge is through is
    up to the test (``lab.wait_bridge()``).
    """
    the_lab = Lab()
    try:
        the_lab.start()
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """``make_lab(**kwargs)`` builds and starts a :class:`Lab` for this test only."""
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The conformance table: one line per case run, single master vs MoM (works under xdist)."""
    rows = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "conformance":
                    rows.append(value)
    if not rows:
        return
    from bench.conformance import HEADER

    terminalreporter.section("conformance: single master vs MoM (seconds shown, never compared)")
    terminalreporter.write_line(HEADER)
    for row in sorted(rows, key=lambda r: r["case"]):
        terminalreporter.write_line(row["line"])
    failing = sum(1 for r in rows if r["result"].startswith("DIFFERENT"))
    known = sum(1 for r in rows if r["result"].startswith("known difference"))
    terminalreporter.write_line(f"{len(rows) - failing - known} of {len(rows)} cases the same as a single master, "
                                f"{known} known difference(s), {failing} failing")
