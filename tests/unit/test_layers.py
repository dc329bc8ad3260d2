"""The packages stack in layers: each imports only the ones below it, so none forms a cycle.

From the bottom: ``matcher`` (the domain), ``core`` (settings, runtime, the shared web
surface and the provider protocol), ``ingest`` (the webhook edge and the adapters),
``tasks`` and ``api`` (side by side: neither imports the other), and ``momo``, the
composition root that wires them into processes. Every import counts: at module level,
inside a function, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> its layer; a package may import only packages of a lower layer
LAYERS = {"matcher": 0, "core": 1, "ingest": 2, "tasks": 3, "api": 3, "momo": 4}


def imported_modules(tree: ast.AST, module: str) -> Iterator[str]:
    """Every module ``tree`` (the source of ``module``) imports, wherever the import sits."""
    package = module.split(".")[:-1]  # a package's __init__ counts as a module in it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            yield ".".join([*base, *([node.module] if node.module else [])])


def package_imports(package: str) -> dict[str, set[str]]:
    """Module of ``package`` -> the other layered packages it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {name.split(".")[0] for name in imported_modules(tree, module)}
        found[module] = {t for t in targets if t in LAYERS and t != package}
    return found


def test_every_layered_package_is_there() -> None:
    assert [p for p in LAYERS if not package_imports(p)] == []


def test_each_package_imports_only_packages_below_it() -> None:
    upward = [
        f"{module} imports {target}"
        for package, layer in LAYERS.items()
        for module, targets in package_imports(package).items()
        for target in sorted(targets)
        if LAYERS[target] >= layer
    ]
    assert upward == [], "imports that are not of a lower layer:\n" + "\n".join(upward)


def test_no_packages_import_each_other_in_a_cycle() -> None:
    graph = {package: set().union(*package_imports(package).values(), set()) for package in LAYERS}
    cycles: list[str] = []

    def visit(package: str, path: list[str]) -> None:
        for target in sorted(graph[package]):
            if target in path:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            else:
                visit(target, [*path, target])

    for package in LAYERS:
        visit(package, [package])
    assert cycles == [], "import cycles between packages:\n" + "\n".join(sorted(set(cycles)))


@pytest.mark.parametrize(
    "source",
    [
        "import momo.cli",
        "from momo import cli",
        "def f():\n    from momo.cli import main",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from momo.cli import main",
    ],
    ids=["import", "from", "in-a-function", "type-checking"],
)
def test_the_scan_sees_every_way_of_importing(source: str) -> None:
    # the layering checks are only worth something if each of these would trip them
    modules = set(imported_modules(ast.parse(source), "ingest.views"))
    assert any(m.split(".")[0] == "momo" for m in modules), modules


def test_a_relative_import_is_read_as_the_package_it_names() -> None:
    source = "from . import spool\nfrom .. import views\nfrom ..store import x"
    modules = set(imported_modules(ast.parse(source), "ingest.providers.mpesa"))
    assert modules == {"ingest.providers", "ingest", "ingest.store"}
