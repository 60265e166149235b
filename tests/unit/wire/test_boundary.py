"""One trust boundary: only ``wire/`` parses msgpack and checks signatures on records from Redis.

Read from the source (AST), like ``tests/unit/test_architecture.py``: a module outside ``wire/``
that imports msgpack, calls ``.verify(...)`` / ``unseal(...)``, or imports a private helper of
``wire`` would be a second place where Redis input is trusted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PKG = "salt_redis_syndic"
ROOT = Path(__file__).resolve().parents[3] / PKG


def _modules() -> dict[str, str]:
    """{path relative to the package: source} for every module of the package."""
    return {str(path.relative_to(ROOT)): path.read_text() for path in sorted(ROOT.rglob("*.py"))}


def _unit(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def msgpack_imports(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            hit = any(a.name.split(".")[0] == "msgpack" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            hit = not node.level and (node.module or "").split(".")[0] == "msgpack"
        else:
            continue
        if hit:
            lines.append(node.lineno)
    return lines


def signature_checks(source: str) -> list[int]:
    """Lines calling ``<anything>.verify(...)``, ``unseal(...)`` or ``<anything>.unseal(...)``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name == "unseal" or (name == "verify" and isinstance(fn, ast.Attribute)):
                lines.append(node.lineno)
    return lines


def private_wire_imports(source: str) -> list[int]:
    """Lines importing an underscore name from a ``wire`` module (its helpers are public on purpose)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.ImportFrom) and "wire" in (node.module or "").split(".")
                and any(a.name.startswith("_") for a in node.names)):
            lines.append(node.lineno)
    return lines


def test_the_scanners_see_what_they_look_for() -> None:
    sample = (
        "import msgpack\nfrom msgpack import packb\n"
        "from ..wire.codec import _require, pack\n"
        "def f(k, raw):\n    k.verify('kid', b's', b'b')\n    unseal(raw, 1)\n    env.unseal(raw, 1)\n"
    )
    assert msgpack_imports(sample) == [1, 2]
    assert signature_checks(sample) == [5, 6, 7]
    assert private_wire_imports(sample) == [3]
    assert msgpack_imports("import msgpackish\n") == []
    assert signature_checks("verify(x)\n") == []  # a bare function named verify is not a keyring call


def test_no_msgpack_outside_wire() -> None:
    outside = [f"{rel}:{line}" for rel, src in _modules().items() if _unit(rel) != "wire"
               for line in msgpack_imports(src)]
    assert not outside, "msgpack is wire's (use wire.codec pack / unpack / unpack_local):\n" + "\n".join(outside)


def test_no_signature_check_outside_wire_and_security() -> None:
    outside = [f"{rel}:{line}" for rel, src in _modules().items() if _unit(rel) not in ("wire", "security")
               for line in signature_checks(src)]
    assert not outside, "records from Redis are verified in wire/ only (add a read_* there):\n" + "\n".join(outside)


def test_no_private_wire_helper_imported() -> None:
    found = [f"{rel}:{line}" for rel, src in _modules().items() for line in private_wire_imports(src)]
    assert not found, "use wire.codec's public checkers:\n" + "\n".join(found)
