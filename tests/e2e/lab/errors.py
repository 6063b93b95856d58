"""Exceptions raised by the lab harness."""


class LabError(RuntimeError):
    """A lab step failed (command error, missing file, timeout, ...)."""
