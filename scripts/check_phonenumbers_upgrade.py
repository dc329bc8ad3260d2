"""Would the newest phonenumbers change who matches whom? Run it weekly (README,
Dependencies) before moving the lock's phonenumbers:

    .venv/bin/python scripts/check_phonenumbers_upgrade.py

phonenumbers ships Google's numbering metadata and releases with every change to it: a
range that becomes mobile, a new prefix, a number length that changes. momo reads every
phone through it (matcher/phones.py, the payer's network in ingest/asking.py), so a new
release can change which customer a payment matches. This runs the phone and matching
tests twice in a throwaway virtualenv laid over the project's .venv: once with the locked
phonenumbers, once with the newest on PyPI, and prints every test whose outcome differs.
Exit status 0: no outcome changed (or the lock has the newest already); 1: some changed,
listed; 2: it could not run.

The tests: tests/unit/test_phones.py, test_payment_requests.py, test_airtel.py and
test_mtn.py whole (they read networks and regions through phonenumbers), and every test
in tests/unit whose name says phone, msisdn, match, number, carrier or region; with
--integration, those in tests/integration too (they need PostgreSQL and Redis, README
Tests). `--` then pytest arguments runs those instead.
"""

# It runs this venv's python, pip and pytest, and reads the JUnit report pytest just wrote.
# ruff: noqa: S603, S314

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import sysconfig
import tempfile
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "dev.txt"
WHOLE = [
    "tests/unit/test_phones.py",
    "tests/unit/test_payment_requests.py",
    "tests/unit/test_airtel.py",
    "tests/unit/test_mtn.py",
]
NAMED = "phone or msisdn or match or number or carrier or region"


def locked_pin() -> str:
    """The lock's phonenumbers line, hashes included (pip checks what it downloads)."""
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    for line in text.splitlines():
        if line.startswith("phonenumbers=="):
            return line.split("#", 1)[0].strip()
    raise SystemExit(f"no phonenumbers in {LOCK}")


def selection(python: Path, integration: bool) -> list[str]:
    """The node ids of the phone and matching tests."""
    ids = set()
    folders = ["tests/unit", "tests/integration"] if integration else ["tests/unit"]
    for args in (WHOLE, [*folders, "-k", NAMED]):
        ran = subprocess.run(
            [str(python), "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        ids |= {line for line in ran.stdout.splitlines() if "::" in line}
    return sorted(ids)


def outcomes(python: Path, tests: list[str], report: Path) -> dict[str, str]:
    """Test id -> passed, failed, error or skipped, as pytest's JUnit report gives them."""
    ran = subprocess.run(
        [
            str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header",
            # the same examples in both runs, so a difference is phonenumbers'
            "--hypothesis-seed=0",
            f"--junitxml={report}", *tests,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    print(f"  {ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran.stderr}")
    found = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcome = next(
            (k for k in ("failure", "error", "skipped") if k in kinds), "passed"
        ).replace("failure", "failed")
        found[name] = outcome
    return found


def version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import phonenumbers; print(phonenumbers.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="run even if the lock has the newest")
    parser.add_argument("--integration", action="store_true", help="tests/integration's too")
    parser.add_argument("pytest_args", nargs="*", help="pytest arguments in place of the tests")
    args = parser.parse_args()

    project = Path(sysconfig.get_path("purelib"))
    if not (project / "pytest").exists():
        print(f"run it with the project's .venv python (no pytest in {project})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="momo-phonenumbers-") as scratch:
        where = Path(scratch)
        venv.create(where / "venv", with_pip=True)
        python = where / "venv" / "bin" / "python"
        site = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        # everything else (pytest, momo itself) from the project's venv, after this one's
        # own phonenumbers in the search path
        (site / "momo-project.pth").write_text(f"import site; site.addsitedir({str(project)!r})\n")
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        (where / "locked.txt").write_text(locked_pin() + "\n")
        subprocess.run([*pip, "--require-hashes", "-r", where / "locked.txt"], check=True)
        locked = version(python)
        subprocess.run([*pip, "--upgrade", "--no-deps", "phonenumbers"], check=True)
        newest = version(python)
        print(f"phonenumbers: locked {locked}, newest {newest}")
        if newest == locked and not args.force:
            print("the lock has the newest release: nothing to compare")
            return 0

        tests = args.pytest_args or selection(python, args.integration)
        print(f"running {len(tests)} tests with phonenumbers {newest}")
        after = outcomes(python, tests, where / "newest.xml")
        subprocess.run([*pip, "--require-hashes", "-r", where / "locked.txt"], check=True)
        assert version(python) == locked
        print(f"running them again with phonenumbers {locked} (the lock's)")
        before = outcomes(python, tests, where / "locked.xml")

    changed = {
        name: (before.get(name, "absent"), after.get(name, "absent"))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }
    failing = sorted(name for name, outcome in before.items() if outcome in ("failed", "error"))
    counts = {o: list(after.values()).count(o) for o in ("passed", "failed", "error", "skipped")}
    print(f"\nphonenumbers {locked} -> {newest}: {len(after)} tests, {counts} with {newest}")
    if failing:
        print(f"failing with the lock's {locked} already (not counted as changes):")
        for name in failing:
            print(f"  {name}")
    if changed:
        print(f"OUTCOME CHANGED for {len(changed)} tests ({locked} -> {newest}):")
        for name, (was, now) in changed.items():
            print(f"  {name}: {was} -> {now}")
        print("read them before upgrading: requirements/lock --upgrade-package phonenumbers")
        return 1
    print("no outcome changed: upgrade with requirements/lock --upgrade-package phonenumbers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
