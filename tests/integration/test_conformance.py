"""The MoM answers like a single master: every case of ``bench.conformance.CASES``, side by side.

One single master (``Lab.direct``) and one bridge (MoM + two DC masters) with the same minions
run each command at the same time; the minion sets, the normalized return values and the exit
codes must be equal. The table of outcomes is printed at the end of the run (see conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.conformance import CASES, Case, run_both, started_labs, table_line, verdict
from lab import Lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def labs() -> Iterator[tuple[Lab, Lab]]:
    with started_labs() as pair:
        yield pair


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_as_a_single_master(labs: tuple[Lab, Lab], case: Case, record_property) -> None:
    single, mom = labs
    s, m = run_both(single, mom, case)
    result, diff = verdict(case, s, m)
    shown = result if not diff else "DIFFERENT: " + diff[0][:100]
    record_property("conformance", {"case": case.name, "line": table_line(case.name, s.as_dict(), m.as_dict(), shown),
                                    "result": shown})
    assert not diff, f"{case.cli} {' '.join(case.argv)}:\n" + "\n".join(diff) + \
        f"\n--- single master said:\n{s.raw[-2000:]}\n--- MoM said:\n{m.raw[-2000:]}"
