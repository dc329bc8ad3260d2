"""What schema comparison leaves out (shared by env.py and the schema test)."""

from __future__ import annotations

from typing import Any


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Objects made by hand in migrations for one database only are not the models' business."""
    return not (type_ == "index" and name is not None and name.endswith(PG_ONLY_SUFFIXES))


#: indexes made by hand in migrations for PostgreSQL only
PG_ONLY_SUFFIXES = ("_trgm", "_pattern", "_pg")
