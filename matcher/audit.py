"""The audit trail: every change says who made it, when, and what it was before and after."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from matcher.models import AuditEvent


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Record a change in the caller's transaction: it is kept exactly when the change is."""
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            before=before,
            after=after,
        )
    )
