"""Which DCs a job is for: ``metadata: {redis_syndic: {dcs: [east]}}`` on the MoM CLI.

``salt --metadata='{"redis_syndic": {"dcs": ["east"]}}' '*' test.ping`` puts the mapping in the
publish load (Salt 3008: ``ClearFuncs.publish`` copies ``kwargs.metadata`` to ``load.metadata``).
The MoM turns it into the signed ``dcs`` field of the job envelope, so a DC not addressed never
runs the job and the MoM never waits for it.  Names are not checked against known DCs here
(a DC may be down or not yet seen); the MoM warns about unknown names when it publishes.

A job relayed by a middle master (its load carries the ``master_id`` of the master above)
addressed the middle tier, not this one: it goes to every DC below (see docs/topologies.md, three tiers).
This module is pure: no I/O, no Salt.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..security.names import NAME_RE

METADATA_KEY = "redis_syndic"
MAX_DCS = 1000


class BadTarget(ValueError):
    """The job's ``redis_syndic`` metadata names its DCs in a way that cannot be honoured."""


def dcs_from_load(load: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The DCs ``load`` is addressed to, sorted; None when it names none (every DC).

    Raises :class:`BadTarget` for a value that is present but unusable: the MoM must not
    widen a job meant for some DCs to all of them.
    """
    meta = load.get("metadata")
    if not isinstance(meta, Mapping) or METADATA_KEY not in meta:
        return None
    block = meta[METADATA_KEY]
    if not isinstance(block, Mapping):
        raise BadTarget(f"metadata {METADATA_KEY} must be a mapping like {{dcs: [east]}}")
    if "dcs" not in block:
        return None
    value = block["dcs"]
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value or len(value) > MAX_DCS:
        raise BadTarget(f"metadata {METADATA_KEY}.dcs must be a non-empty list of DC names")
    bad = [v for v in value if not isinstance(v, str) or not NAME_RE.match(v)]
    if bad:
        raise BadTarget(f"metadata {METADATA_KEY}.dcs holds invalid DC name(s) {', '.join(map(repr, bad[:5]))}")
    return tuple(sorted(set(value)))


def is_relayed(load: Mapping[str, Any], own_id: str) -> bool:
    """True when this master published ``load`` for a master above it (a middle tier)."""
    master_id = load.get("master_id")
    return isinstance(master_id, str) and bool(master_id) and master_id != own_id
