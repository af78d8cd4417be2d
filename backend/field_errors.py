"""Refusals of bad input that name the field at fault, raised by services and mapped to an HTTP
status by the API from their type alone (never by reading their text)."""

from __future__ import annotations


class FieldError(ValueError):
    """A value the caller gave is wrong; `field` names it as the service knows it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Taken(FieldError):
    """An id already in use: a conflict with what exists (409), not malformed input."""
