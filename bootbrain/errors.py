"""Domain errors. They carry no HTTP: :mod:`bootbrain.api.errors` maps them, once."""

from __future__ import annotations


class BootbrainError(Exception):
    """Base of every error an operator can cause and fix."""


class NotFoundError(BootbrainError):
    def __init__(self, resource: str, key: object) -> None:
        super().__init__(f"{resource} {key!s} does not exist")
        self.resource = resource
        self.key = key


class FieldError(BootbrainError):
    """A value is well-formed but not acceptable here (address outside its network…)."""

    def __init__(self, field: str, message: str, line: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.line = line


class ConflictError(BootbrainError):
    """The write collides with existing state (a MAC or address another machine holds)."""

    def __init__(self, field: str, message: str, holder: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.holder = holder


class StaleError(BootbrainError):
    """The client wrote against a version that is no longer current."""

    def __init__(self, resource: str, expected: str, current: str) -> None:
        super().__init__(f"{resource} changed: you sent If-Match {expected}, it is now {current}")
        self.expected = expected
        self.current = current


class AuthError(BootbrainError):
    pass


class ForbiddenError(BootbrainError):
    pass
