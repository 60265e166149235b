"""returns/confirm: how a DC names the uplink batches it pushes again (the planner: tests/unit/jobs/test_reconcile.py)."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.confirm import ranges

pytestmark = pytest.mark.unit


def test_resent_batches_are_logged_as_ranges():
    assert ranges([7, 1, 3, 2]) == "1-3,7"
    assert ranges([4]) == "4" and ranges([]) == ""
