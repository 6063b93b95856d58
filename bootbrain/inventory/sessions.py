"""Dashboard sessions: a login with an API token, held server-side.

The browser's cookie carries a random key; the server stores only its HMAC (like API
tokens, :mod:`bootbrain.security`), the token it was opened with and when it lapses.
Every request re-reads the token, so revoking or expiring it ends its sessions at once,
and logout deletes the row, so a copy of the old cookie opens nothing.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Final

from sqlalchemy import delete, select

from bootbrain import security
from bootbrain.db import Database
from bootbrain.errors import AuthError
from bootbrain.models import ApiToken, UiSession, utcnow

from .tokens import Principal, authenticate

#: A session lapses this long after login, whatever its use (and with its token).
SESSION_LIFETIME: Final = timedelta(hours=12)


def start_session(db: Database, secret: bytes, token: str) -> tuple[str, Principal]:
    """(the session key for the cookie, who logged in). Raises AuthError for a token
    that is unknown, revoked or expired, ForbiddenError for one that may not read (the
    DHCP hooks' lease scope)."""
    principal = authenticate(db, secret, token, need="read")
    key = secrets.token_urlsafe(32)
    now = utcnow()
    with db.write() as s:
        s.execute(delete(UiSession).where(UiSession.expires_at <= now))
        s.add(
            UiSession(
                key_hash=security.token_hash(secret, key),
                token_id=principal.token_id,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return key, principal


def session_principal(db: Database, secret: bytes, key: str) -> Principal:
    """Who holds this session key now; AuthError once it was ended, lapsed, or its
    token was revoked or expired."""
    now = utcnow()
    with db.read() as s:
        row = s.execute(
            select(ApiToken)
            .join(UiSession, UiSession.token_id == ApiToken.id)
            .where(UiSession.key_hash == security.token_hash(secret, key))
            .where(UiSession.expires_at > now)
        ).scalar_one_or_none()
    if row is None:
        raise AuthError("no such session")
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise AuthError("the session's token was revoked or expired")
    return Principal(row.id, row.name, row.scope)


def end_session(db: Database, secret: bytes, key: str) -> None:
    with db.write() as s:
        s.execute(delete(UiSession).where(UiSession.key_hash == security.token_hash(secret, key)))
