"""BMC records: a machine's BMC address and credentials. The password is encrypted at
rest with Fernet (``cryptography``), keyed by HKDF-SHA256 from the brain's secret with
its own ``info`` label, so the key opens nothing else and the token HMACs never see it.

Changing the secret makes stored BMC passwords unreadable: set each BMC again
(``bootbrain machine bmc set``) after a re-key; :func:`bmc_credentials` says so by name.
"""

from __future__ import annotations

import base64
from typing import NamedTuple

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from bootbrain import schemas
from bootbrain.db import Database
from bootbrain.errors import FieldError, NoBmcError
from bootbrain.models import Bmc, Machine

from .base import add_event, get_by_id

DEFAULT_PORTS = {"ipmi": 623, "redfish": 443}


def _fernet(secret: bytes) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bootbrain bmc password v1"
    ).derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


def _name(m: Machine) -> str:
    return m.hostname or f"#{m.id}"


def _out(b: Bmc) -> schemas.BmcOut:
    return schemas.BmcOut(
        machine_id=b.machine_id,
        kind=b.kind,
        address=b.address,
        port=b.port,
        username=b.username,
        system_id=b.system_id,
        verify_tls=b.verify_tls,
        updated_at=b.updated_at,
    )


class BmcCredentials(NamedTuple):
    """A BMC record with its password decrypted, in memory only (for bootbrain.bmc)."""

    machine: str
    record: schemas.BmcOut
    password: str


def set_bmc(
    db: Database, secret: bytes, machine_id: int, data: schemas.BmcIn, actor: str
) -> schemas.BmcOut:
    """Create or replace the machine's BMC record (the event names no credential)."""
    with db.write() as s:
        m = get_by_id(s, Machine, machine_id)
        b = s.scalar(select(Bmc).where(Bmc.machine_id == m.id))
        if b is None:
            b = Bmc(machine_id=m.id)
            s.add(b)
        b.kind = data.kind
        b.address = data.address
        b.port = data.port or DEFAULT_PORTS[data.kind]
        b.username = data.username
        b.password_enc = _fernet(secret).encrypt(data.password.encode()).decode()
        b.system_id = data.system_id
        b.verify_tls = data.verify_tls
        add_event(
            s, "bmc.set", f"BMC of {_name(m)} set by {actor}", machine_id=m.id,
            bmc_kind=data.kind, address=data.address, port=b.port, actor=actor,
        )
        s.flush()
        return _out(b)


def get_bmc(db: Database, machine_id: int) -> schemas.BmcOut:
    with db.read() as s:
        m = get_by_id(s, Machine, machine_id)
        b = s.scalar(select(Bmc).where(Bmc.machine_id == m.id))
        if b is None:
            raise NoBmcError(_name(m))
        return _out(b)


def bmc_credentials(db: Database, secret: bytes, machine_id: int) -> BmcCredentials:
    """The machine's BMC with its password decrypted, for a driver (in memory only)."""
    with db.read() as s:
        m = get_by_id(s, Machine, machine_id)
        b = s.scalar(select(Bmc).where(Bmc.machine_id == m.id))
        if b is None:
            raise NoBmcError(_name(m))
        try:
            password = _fernet(secret).decrypt(b.password_enc.encode()).decode()
        except InvalidToken:
            raise FieldError(
                "password",
                f"the BMC password of {_name(m)} was stored under another secret: set it again",
            ) from None
        return BmcCredentials(_name(m), _out(b), password)


def record_event(db: Database, kind: str, message: str, machine_id: int, **data: str) -> None:
    """A BMC operation's outcome, in its own transaction (the BMC already acted)."""
    with db.write() as s:
        add_event(s, kind, message, machine_id=machine_id, **data)
