"""API tokens: created (shown once), listed, revoked, and checked on every request.

A token is stored as an HMAC keyed with the server secret (:mod:`bootbrain.security`),
found by its visible prefix and compared in constant time. Its last use is written at
most once a minute, so API reads stay reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update

from bootbrain import schemas, security
from bootbrain.db import Database
from bootbrain.errors import AuthError, ForbiddenError
from bootbrain.models import ApiToken, utcnow
from bootbrain.vocabulary import SCOPE_GRANTS, TokenNeed

from .base import add_event, flush_or_conflict, get_by_id, named_conflict, page_of


def create_token(
    db: Database, secret: bytes, data: schemas.TokenIn, actor: str
) -> tuple[ApiToken, str]:
    token, prefix = security.new_api_token()
    expires = utcnow() + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    with db.write() as s:
        t = ApiToken(
            name=data.name,
            prefix=prefix,
            token_hash=security.token_hash(secret, token),
            scope=data.scope,
            expires_at=expires,
        )
        s.add(t)
        flush_or_conflict(s, named_conflict("token", data.name))
        add_event(
            s,
            "change",
            f"API token {data.name} ({prefix}, {data.scope}) created by {actor}",
            actor=actor,
        )
        return t, token


def list_tokens(db: Database, q: schemas.PageQuery) -> tuple[list[ApiToken], int | None]:
    with db.read() as s:
        return page_of(s, select(ApiToken), ApiToken.id, q)


def revoke_token(db: Database, token_id: int, actor: str) -> ApiToken:
    with db.write() as s:
        t = get_by_id(s, ApiToken, token_id)
        if t.revoked_at is None:
            t.revoked_at = utcnow()
            add_event(
                s, "change", f"API token {t.name} ({t.prefix}) revoked by {actor}", actor=actor
            )
        return t


def token_count(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(ApiToken)) or 0


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    scope: str


def authenticate(
    db: Database, secret: bytes, token: str, *, need: TokenNeed | None
) -> Principal:
    """The token's principal if it is valid and its scope grants ``need``
    (:data:`bootbrain.vocabulary.SCOPE_GRANTS`); ``need=None`` checks validity only."""
    prefix = security.api_token_prefix(token)
    if prefix is None:
        raise AuthError("malformed token")
    now = utcnow()
    with db.read() as s:
        t = s.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
    if t is None or not security.same(t.token_hash, security.token_hash(secret, token)):
        raise AuthError("unknown token")
    if t.revoked_at is not None:
        raise AuthError("token revoked")
    if t.expires_at is not None and t.expires_at <= now:
        raise AuthError("token expired")
    if need is not None and t.scope not in SCOPE_GRANTS[need]:
        raise ForbiddenError(f"token {t.name} has scope {t.scope}; this needs {need}")
    if t.last_used_at is None or now - t.last_used_at > timedelta(minutes=1):
        # At most one write a minute per token, so API reads stay reads.
        with db.write() as s:
            s.execute(update(ApiToken).where(ApiToken.id == t.id).values(last_used_at=now))
    return Principal(t.id, t.name, t.scope)
