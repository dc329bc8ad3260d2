"""deploy/'s systemd units as data, for the tests that check them and for the stacks and
the chaos run that serve as they do."""

from __future__ import annotations

import shlex
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def unit(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (systemd lets a key repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def server_options(name: str) -> list[str]:
    """The options the unit ``name`` (momo-web, momo-api) gives its server: its ExecStart
    without the program and the application. Options given after these win (gunicorn
    takes the last of a repeated option)."""
    (start,) = unit(DEPLOY / f"{name}.service")["Service.ExecStart"]
    argv = shlex.split(start)
    return [a for a in argv[1:] if not a.startswith("momo.wsgi:")]
