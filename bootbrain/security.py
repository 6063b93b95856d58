"""Tokens: random, shown once, stored only as an HMAC keyed with the server secret.

API tokens look like ``bbt_<8 id chars>_<secret>``; the ``bbt_<id>`` prefix is stored
in clear so operators can recognise a token in listings and the lookup is by prefix,
followed by a constant-time comparison of the HMAC. Per-boot tokens are opaque random
strings that only ever appear in the script the brain sent to that one machine.

Also the owner-only files and directories that hold them (and the database that
holds everything else): created 0600 / 0700 whatever the process's umask.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

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


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents for the owner alone (0700).

    A directory that exists is left as it is: an operator's 0711 data directory (so
    that the DHCP server may reach a spool inside it) is a choice, not an accident.
    """
    missing: list[Path] = []
    at = path
    while not at.exists():
        missing.append(at)
        at = at.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it meanwhile: theirs, left alone
        directory.chmod(0o700)  # mkdir's mode is masked by the umask


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and owner-only (0600, whatever the umask); False if it
    exists already (left as it is). A symlink in its place is refused, not followed."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return True
