"""Every domain error, in one module. None of them carries HTTP.

Two places turn them into answers: :mod:`bootbrain.api.errors` (problem+json, for the
operator API and the booted OS's document routes) and :mod:`bootbrain.machine.errors`
(an iPXE script, for a booting machine). The CLI prints them (:mod:`bootbrain.cli`).

The inventory's errors (:class:`BootbrainError` and below) are the ones an operator
causes and fixes. The others keep the builtin base their callers have always caught
(``ValueError`` for a value that cannot be used, ``RuntimeError`` for a failure of
the system), so moving them here changed no ``except`` clause.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- the inventory ----------------------------------------------------------------------


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
    """No valid API token."""


class ForbiddenError(BootbrainError):
    """A valid token (or a per-boot token) that does not allow this."""


class BootTokenError(ForbiddenError):
    """A per-boot token that opens nothing; ``reason`` is for the event log only, and
    the holder is told :data:`PUBLIC` whatever the reason."""

    PUBLIC = "this boot token is not valid (unknown, expired or its boot completed)"

    def __init__(
        self, reason: str, boot_id: str | None = None, machine_id: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.boot_id = boot_id
        self.machine_id = machine_id


class DocumentRenderError(BootbrainError):
    """A booted-OS document's template failed for this machine: a misconfiguration,
    recorded and logged; the document is answered 500."""


@dataclass(frozen=True)
class RowProblem:
    """One bad row of an import: where it is, which field, and what is wrong."""

    line: int
    field: str
    message: str


class ImportRowsError(BootbrainError):
    """An import with bad rows: nothing was imported."""

    def __init__(self, problems: list[RowProblem]) -> None:
        super().__init__(f"{len(problems)} bad rows")
        self.problems = problems


class PlanStaleError(BootbrainError):
    """An ``apply`` whose plan was made against objects someone has changed since:
    nothing was applied; ``changed`` names each object."""

    def __init__(self, changed: list[str]) -> None:
        super().__init__("; ".join(changed))
        self.changed = changed


# --- storage ------------------------------------------------------------------------------


class BusyError(RuntimeError):
    """The database did not grant a lock within the short wait an operator API write
    gets (the API answers 503 with ``Retry-After``): nothing was written."""


# --- configuration and identity -----------------------------------------------------------


class MissingSecretError(RuntimeError):
    """No secret is configured: bootbrain refuses to serve (tokens are HMACs keyed with it)."""


class IdentityError(ValueError):
    """A value that cannot be put into canonical form (MAC, UUID, hostname, address)."""


# --- the boot core ------------------------------------------------------------------------


class TemplateProblem(ValueError):  # noqa: N818 - the name is the API layer's contract
    """An operator value or template that cannot be used (the API answers 422)."""

    def __init__(self, field: str, line: int | None, message: str) -> None:
        where = f"{field}, line {line}" if line else field
        super().__init__(f"{where}: {message}")
        self.field = field
        self.line = line
        self.message = message


class RenderLimitError(TemplateProblem):
    """A template exceeded its render time or size bound for this machine."""


class RenderError(RuntimeError):
    """The rendered script would not be exactly what was intended; nothing is emitted."""


class ScriptError(ValueError):
    """A script that iPXE would not read as intended."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class DocumentError(ValueError):
    """A booted-OS configuration value that cannot be used as it is (the API answers 422)."""

    def __init__(self, field: str, message: str, line: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.line = line


# --- DHCP integrations --------------------------------------------------------------------


class ReservationError(ValueError):
    """A reservation that must not reach a DHCP server's configuration."""


class DnsmasqConfigError(ValueError):
    """Settings that cannot make a working dnsmasq configuration."""


class KeaConfigError(ValueError):
    """Settings that cannot make a Kea configuration."""


class KeaError(RuntimeError):
    """Kea could not be reached or refused what it was asked."""


class KeaUnavailableError(KeaError):
    """Nothing answers on the control socket."""


class KeaCommandError(KeaError):
    """Kea answered a command with a non-zero result."""

    def __init__(self, command: str, result: int, text: str) -> None:
        super().__init__(f"kea {command}: {text} (result {result})")
        self.command = command
        self.result = result
        self.text = text


# --- BMC power control --------------------------------------------------------------------


class BmcError(BootbrainError):
    """A BMC did not do what it was asked. ``machine`` and ``bmc`` (``kind://address:port``)
    name both ends; the message never holds a credential."""

    def __init__(self, machine: str, bmc: str, message: str) -> None:
        super().__init__(f"machine {machine}, BMC {bmc}: {message}")
        self.machine = machine
        self.bmc = bmc
        self.message = message


class BmcUnreachableError(BmcError):
    """Nothing answered within the bounded timeout and retries."""


class BmcAuthError(BmcError):
    """The BMC refused the username or password."""


class BmcRejectedError(BmcError):
    """The BMC answered but refused the command, or read back something else."""


class BmcTlsError(BmcUnreachableError):
    """The BMC's TLS certificate did not verify."""


class ReinstallFailedError(BmcError):
    """A reinstall stopped at a BMC step. ``timed_out``: the BMC did not answer (the API
    tells a timeout from a refusal); the message also says what became of the one-shot
    next boot."""

    def __init__(self, cause: BmcError, step: str, after: str) -> None:
        message = f"{cause.message}; reinstall stopped at {step}, {after}"
        super().__init__(cause.machine, cause.bmc, message)
        self.step = step
        self.timed_out = isinstance(cause, BmcUnreachableError) and not isinstance(
            cause, BmcTlsError
        )


class NoBmcError(NotFoundError):
    """The machine has no BMC record."""

    def __init__(self, machine: str) -> None:
        super().__init__("BMC of machine", machine)
