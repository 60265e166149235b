"""The topologies every benchmark compares, built from the lab primitives, by name.

- ``direct``: ONE master with every minion of every DC on it (the floor);
- ``bridge``: MoM + DC masters + Redis with the redis_syndic engines (recommended settings:
  the lab's defaults, ``syndic_wait: 0`` on the MoM);
- ``syndic``: MoM (``order_masters``) + one ``salt-syndic`` per DC master, Salt's default
  ``syndic_wait: 5``, syndic patched (see ``bench/syndic_launcher.py``);
- ``syndic-w1``: the same with ``syndic_wait: 1``;
- ``syndic-stock``: the stock salt-syndic, ``syndic_wait: 5`` (delivers nothing in this lab).

Every topology uses the same minion ids (``<dc>-m<i>``), so one target works everywhere.  The
target is ``*-m*`` rather than ``*``: on a syndic's MoM ``*`` also matches the syndics' own
keys, which never answer, and the CLI would wait its full timeout for them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Sequence

from lab import DEFAULT_DCS, Lab, LabError

from .syndic_lab import SyndicLab

log = logging.getLogger(__name__)

TARGET = "*-m*"
MINION_OPTS = {"multiprocessing": False}
NAMES = ("direct", "bridge", "syndic", "syndic-w1", "syndic-stock")


def make(name: str, dcs: Sequence[str] = DEFAULT_DCS, minions: int = 3, *, links: bool = False, **kwargs: Any) -> Lab:
    """An unstarted lab for topology ``name``; ``links``: a proxy on every DC link (bridge, syndic).

    Minions run jobs in threads (``multiprocessing: False``) in every topology: on a shared
    2-core host a fork per job made the minions, not the transport, the bottleneck.
    """
    kwargs.setdefault("minion_opts", MINION_OPTS)
    if name == "direct":
        return Lab.direct(dcs, minions, **kwargs)
    if name == "bridge":
        return Lab(dcs, minions, dc_links=links, **kwargs)
    if name == "syndic":
        return SyndicLab(dcs, minions, syndic="patched", syndic_wait=5, links=links, **kwargs)
    if name == "syndic-w1":
        return SyndicLab(dcs, minions, syndic="patched", syndic_wait=1, links=links, **kwargs)
    if name == "syndic-stock":
        return SyndicLab(dcs, minions, syndic="stock", syndic_wait=5, links=links, **kwargs)
    raise ValueError(f"unknown topology {name!r}; known: {', '.join(NAMES)}")


def describe(name: str, lab: Lab) -> dict[str, Any]:
    """What ran, for the result files."""
    out: dict[str, Any] = {"name": name, "dcs": list(lab.dcs), "minions_per_dc": lab.minions_per_dc}
    if isinstance(lab, SyndicLab):
        out.update(lab.describe())
    elif name == "bridge":
        out["config"] = "redis_syndic engines, lab defaults (syndic_wait 0 on the MoM, ack_wait 5)"
    return out


def wait_ready(name: str, lab: Lab, timeout: float = 180.0) -> bool:
    """End-to-end readiness through the top master; the stock syndic never gets there."""
    if name == "syndic-stock":
        return False
    try:
        lab.wait_bridge(timeout=timeout, target=TARGET)
        return True
    except LabError as err:
        log.warning("%s not ready through its top master: %s", name, str(err)[:300])
        return False


def link_delay(name: str, lab: Lab, seconds: float) -> None:
    """Set the one-way delay on every DC link (0: forward at once)."""
    for dc in lab.dcs:
        link = lab.syndic_link(dc) if isinstance(lab, SyndicLab) else lab.link(dc)
        if seconds > 0:
            link.delay(seconds)
        else:
            link.heal()


class Labs(contextlib.ExitStack):
    """Start several topologies together (so runs can be interleaved); stop them all on exit."""

    def __init__(self, names: Sequence[str], dcs: Sequence[str] = DEFAULT_DCS, minions: int = 3, **kwargs: Any) -> None:
        super().__init__()
        self.names = list(names)
        self.labs: dict[str, Lab] = {}
        self.ready: dict[str, bool] = {}
        self._args = (dcs, minions, kwargs)

    def __enter__(self) -> Labs:
        super().__enter__()
        dcs, minions, kwargs = self._args
        try:
            for name in self.names:
                self.labs[name] = self._start(name, dcs, minions, kwargs)
            for name, lab in self.labs.items():
                self.ready[name] = wait_ready(name, lab)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, name: str, dcs: Sequence[str], minions: int, kwargs: dict[str, Any], tries: int = 3) -> Lab:
        """Start one lab; on a saturated host the lab's own readiness CLI calls may time out: retry."""
        for attempt in range(1, tries + 1):
            lab = make(name, dcs, minions, **kwargs)
            try:
                lab.start()
            except LabError as err:
                print(f"  {name}: start attempt {attempt} failed: {str(err).splitlines()[0][:200]}", flush=True)
                if attempt == tries:
                    raise
                continue
            self.callback(lab.stop)
            print(f"  {name}: up in {lab.start_seconds or 0:.0f}s", flush=True)
            return lab
        raise AssertionError("unreachable")
