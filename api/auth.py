"""Operator tokens: bearer secrets stored only as SHA-256, each with a role."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.runtime import Runtime
from core.web import dropped_connection, problem
from matcher.audit import audit
from matcher.db import utcnow
from matcher.errors import InvalidInput
from matcher.models import ApiToken

ROLES = ("viewer", "operator", "admin")
#: "token:<name>" must fit the 100-character actor columns of the audit trail
MAX_TOKEN_NAME = 64
TOKEN_PREFIX = "momo_"  # noqa: S105 - a label, not a secret
#: last_used_at is written at most this often per token, so reads stay reads
LAST_USED_RESOLUTION = timedelta(minutes=1)

F = TypeVar("F", bound=Callable[..., Any])


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(session: Session, *, name: object, role: object, actor: str = "cli") -> str:
    """Store a new token's hash and return the token itself: it is shown this once only."""
    return issue_token(session, name=name, role=role, actor=actor)[1]


def issue_token(
    session: Session, *, name: object, role: object, actor: str = "cli"
) -> tuple[ApiToken, str]:
    """The stored token row and the secret, which exists nowhere else after this call."""
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_TOKEN_NAME:
        raise InvalidInput(
            f"a token needs a name of 1 to {MAX_TOKEN_NAME} characters, e.g. --name alice",
            "invalid_name",
        )
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}", "invalid_role")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, role=role, token_hash=hash_token(raw))
    session.add(token)
    session.flush()
    audit(
        session,
        actor=actor,
        action="token.create",
        subject_type="token",
        subject_id=str(token.id),
        before=None,
        after={"name": name, "role": role},
    )
    return token, raw


def revoke_token(session: Session, token_id: int, *, actor: str) -> ApiToken | None:
    """Revoke a token by id; None when there is none. A revoked token stays revoked."""
    token = session.get(ApiToken, token_id, with_for_update=True)
    if token is None:
        return None
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit(
            session,
            actor=actor,
            action="token.revoke",
            subject_type="token",
            subject_id=str(token.id),
            before={"name": token.name, "role": token.role, "revoked": False},
            after={"name": token.name, "role": token.role, "revoked": True},
        )
    return token


@dataclass(frozen=True)
class Bearer:
    """Who sent a request: the token's id, name and role."""

    id: int
    name: str
    role: str


def authenticate(session: Session, raw: str) -> Bearer | None:
    """The live token whose secret is ``raw``, read in ``session``'s transaction: a token
    revoked by a committed transaction is refused by the next request."""
    digest = hash_token(raw)
    # table columns: the statement runs as plain SQL, without the ORM's steps
    tokens = ApiToken.__table__.c
    token = session.execute(
        select(
            tokens.id,
            tokens.name,
            tokens.role,
            tokens.token_hash,
            tokens.revoked_at,
            tokens.last_used_at,
        ).where(tokens.token_hash == digest)
    ).first()
    # The lookup is by hash; comparing again in constant time costs nothing and
    # keeps the check honest if the lookup ever changes.
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    if token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        _note_use(session, token.id, now)
    return Bearer(token.id, token.name, token.role)


def _note_use(session: Session, token_id: int, now: datetime) -> None:
    """Set ``last_used_at``, at most once per ``LAST_USED_RESOLUTION``. A request that
    finds the row locked (another request of the same token is noting it, or it is being
    revoked) skips it rather than wait: it is a hint for people, not a record."""
    due = (
        select(ApiToken.id)
        .where(
            ApiToken.id == token_id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at < now - LAST_USED_RESOLUTION,
            ),
        )
        .with_for_update(skip_locked=True)
    )
    session.execute(
        update(ApiToken).where(ApiToken.id.in_(due.scalar_subquery())).values(last_used_at=now),
        execution_options={"synchronize_session": False},
    )


def _unauthorized(detail: str) -> Any:
    response = problem(401, "unauthorized", "Unauthorized", detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="momo"'
    return response


def _authenticated(runtime: Runtime, raw: str) -> tuple[Session, Bearer | None]:
    """The request's session, its transaction begun by the token check, and the token.

    A pooled connection the database dropped (it restarted, or a failover ended it) is
    found by the check, the first statement of the request: nothing has been done yet,
    so the check runs once more, on a new connection. A database that does not answer
    is not asked twice.
    """
    for attempt in (1, 2):
        session = runtime.sessions()
        try:
            return session, authenticate(session, raw)
        except DBAPIError as exc:
            session.close()
            if attempt == 2 or not dropped_connection(exc):
                raise
    raise AssertionError("unreachable")


def require(role: str) -> Callable[[F], F]:
    """Only tokens with ``role`` or a higher one may call the view; sets ``g.actor``.

    The token check and the view run in one session and one transaction (``g.db``),
    committed when the view answers and rolled back when it raises.
    """
    needed = ROLES.index(role)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, raw = header.partition(" ")
            if scheme.lower() != "bearer" or not raw.strip():
                return _unauthorized(
                    "Send an operator token as 'Authorization: Bearer <token>' "
                    "(create one with `momo token create --name NAME --role operator`)."
                )
            runtime: Runtime = current_app.extensions["momo"]
            session, token = _authenticated(runtime, raw.strip())
            try:
                if token is None:
                    return _unauthorized("The token is unknown or revoked.")
                if ROLES.index(token.role) < needed:
                    session.commit()
                    return problem(
                        403,
                        "forbidden",
                        "Forbidden",
                        f"This needs the {role} role; the token '{token.name}' has {token.role}.",
                    )
                g.actor = f"token:{token.name}"
                g.role = token.role
                g.bearer = token
                # Idempotency keys belong to one token, even where two tokens share a name.
                g.token_scope = f"token-id:{token.id}"
                g.db = session
                answer = view(*args, **kwargs)
                session.commit()
                return answer
            except BaseException:
                session.rollback()
                raise
            finally:
                g.pop("db", None)
                session.close()

        wrapper.required_role = role  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
