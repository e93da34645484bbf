"""Errors a user can cause and fix: shown as one line, never as a traceback."""

from __future__ import annotations


class NuclabError(Exception):
    """A user-facing error. The message names the field, the value and what is allowed."""

    exit_code = 2


class ValidationError(NuclabError):
    """Input (a spec, an inventory, a flag) that is not allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not allowed; {allowed}")


class NotFoundError(NuclabError):
    """Something the user named does not exist (an experiment, a dataset)."""

    exit_code = 3
