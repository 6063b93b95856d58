"""Tokens: random, shown once, stored only as an HMAC keyed with the server secret.

API tokens look like ``bbt_<8 id chars>_<secret>``; the ``bbt_<id>`` prefix is stored
in clear so operators can recognise a token in listings and the lookup is by prefix,
followed by a constant-time comparison of the HMAC. Per-boot tokens are opaque random
strings that only ever appear in the script the brain sent to that one machine.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_TOKEN_PREFIX = "bbt_"  # noqa: S105 (a prefix, not a secret)


def token_hash(secret: bytes, token: str) -> str:
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def new_api_token() -> tuple[str, str]:
    """(token, prefix)."""
    ident = secrets.token_hex(4)
    token = f"{API_TOKEN_PREFIX}{ident}_{secrets.token_urlsafe(32)}"
    return token, f"{API_TOKEN_PREFIX}{ident}"


def api_token_prefix(token: str) -> str | None:
    if not token.startswith(API_TOKEN_PREFIX) or len(token) < 14 or token[12:13] != "_":
        return None
    return token[:12]


def new_boot_token() -> str:
    # URL-safe alphabet only: it travels in a URL inside an iPXE script and a kernel
    # cmdline, where whitespace, '$', '#' or '&' would change the meaning.
    return secrets.token_urlsafe(24)


def new_boot_id() -> str:
    return secrets.token_hex(8)


def new_action_ref() -> str:
    return secrets.token_hex(16)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
