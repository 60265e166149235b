"""The package's shape, checked from its source: arrows point down, one home for Redis and Salt.

Each top-level unit of ``salt_redis_syndic`` (a subpackage or a top-level module) has a floor.
A module may import its own subpackage and units on lower floors, never a unit on its own or a
higher floor; and no two modules import each other, even through others. ``docs/development.md``
draws the same floors.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PKG = "salt_redis_syndic"
ROOT = Path(__file__).resolve().parents[2] / PKG

# Floors, top first. Units on one floor may not import each other.
FLOORS: list[set[str]] = [
    {"engine", "returner", "runner", "loader"},  # what the Salt modules call
    {"app"},  # the role factories: each collaborator built once and passed in
    {"ops"},  # operator views over the state and Redis
    {"estate"},  # rosters, drift, key orders
    {"returns"},  # returns going up (uses jobs' outbox reading and re-sends)
    {"jobs"},  # jobs going down
    {"events"},  # events forwarded up and down
    {"state"},  # ledgers, spool, dead letters
    {"wire"},  # every record that crosses Redis
    {"config"},  # settings from the master opts
    {"security"},  # keys, signatures, policy, ACL rules
    {"transport"},  # the Redis client
    {"salt_adapter"},  # the Salt APIs
    {"runtime", "errors"},  # backoff, counters, the exception root
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}

# Third-party libraries with one home each.
HOMES = {
    "redis": {"transport"},
    "salt": {"salt_adapter"},
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``, lazy ones inside functions included."""
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == PKG or node.module is None:
                # ``from . import x``: x may be a module of that package
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PKG or len(parts) < 2:
        return None
    return parts[1]


MODULES = dict(_modules())


def test_every_unit_has_a_floor() -> None:
    units = {_unit(name) for name in MODULES} - {None}
    assert units <= set(FLOOR), f"give these a floor in FLOORS: {sorted(units - set(FLOOR))}"


def test_arrows_point_down() -> None:
    wrong = []
    for name, path in MODULES.items():
        own = _unit(name)
        if own is None:
            continue
        for line, target in _imports(name, path):
            unit = _unit(target)
            if unit is None or unit == own or unit == "__version__":
                continue
            if FLOOR[unit] <= FLOOR[own]:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} {own} (floor {FLOOR[own]}) imports "
                             f"{target} (floor {FLOOR[unit]})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for _, target in _imports(name, path):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and target != PKG:
                graph[name].add(target)
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("library", sorted(HOMES))
def test_third_party_library_has_one_home(library: str) -> None:
    outside = []
    for name, path in MODULES.items():
        for line, target in _imports(name, path):
            if target == library or target.startswith(library + "."):
                if _unit(name) not in HOMES[library]:
                    outside.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not outside, f"only {sorted(HOMES[library])} may import {library}:\n" + "\n".join(outside)


def test_size_limits() -> None:
    """No module over 400 lines and no function over 60: a reader sees one concept at a time."""
    big = []
    for name, path in MODULES.items():
        text = path.read_text()
        lines = text.count("\n")
        if lines > 400:
            big.append(f"{path.relative_to(ROOT.parent)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    big.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}(): {length} lines")
    assert not big, "split these:\n" + "\n".join(big)
