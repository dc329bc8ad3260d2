"""Operator tokens: bearer secrets stored only as SHA-256, each with a role."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.runtime import Runtime
from core.web import problem
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


def authenticate(session: Session, raw: str) -> ApiToken | None:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(raw)))
    # The lookup is by hash; comparing again in constant time costs nothing and
    # keeps the check honest if the lookup ever changes.
    if token is None or not hmac.compare_digest(token.token_hash, hash_token(raw)):
        return None
    if token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


def _unauthorized(detail: str) -> Any:
    response = problem(401, "unauthorized", "Unauthorized", detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="momo"'
    return response


def require(role: str) -> Callable[[F], F]:
    """Only tokens with ``role`` or a higher one may call the view; sets ``g.actor``."""
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
            with runtime.sessions.begin() as session:
                token = authenticate(session, raw.strip())
                if token is None:
                    return _unauthorized("The token is unknown or revoked.")
                name, token_role, token_id = token.name, token.role, token.id
            if ROLES.index(token_role) < needed:
                return problem(
                    403,
                    "forbidden",
                    "Forbidden",
                    f"This needs the {role} role; the token '{name}' has {token_role}.",
                )
            g.actor = f"token:{name}"
            g.role = token_role
            # Idempotency keys belong to one token, even where two tokens share a name.
            g.token_scope = f"token-id:{token_id}"
            return view(*args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
