"""Modules meet through public names: a leading underscore is a promise that only its own module
relies on it, which is what lets that module change without a test or a neighbour breaking."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in _python_files("libs", "services", "tests", "benchmarks"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name} from {node.module}"
                              for a in node.names if _private(a.name)]
    assert offenders == []


def test_tests_use_no_private_attributes_of_what_they_test():
    """`obj._field` in a test reaches past the interface; a test's own classes use `self._x` freely."""
    offenders = []
    for path in _python_files("tests"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []
