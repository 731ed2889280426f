"""The errors ember raises: one base class, a few kinds, and a helper for the house wording.

Every error a user can cause is an :class:`EmberError` (or a subclass) whose message says what was
expected, what was received, and what to do, e.g.::

    EmberError: Expected `precision` to be one of "32", "16-mixed", "bf16-mixed"; received `precision='fp16'`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "EmberError",
    "ConfigError",
    "DataError",
    "CallbackError",
    "ExportError",
    "DownloadError",
    "expected",
]


class EmberError(Exception):
    """Base class of every error ember raises on purpose."""


class ConfigError(EmberError, ValueError):
    """An argument or a combination of arguments is not valid."""


class DataError(EmberError, ValueError):
    """The data (a file, a row, a column, a batch) is not what the step that reads it needs."""


class CallbackError(EmberError):
    """A callback failed; the message names the callback and the event."""


class ExportError(EmberError):
    """A model file cannot be written or read safely."""


class DownloadError(EmberError, OSError):
    """A download failed (no network, a bad checksum, an unsafe archive)."""


def expected(what: str, name: str, value: Any, valid: Iterable[Any] | None = None, hint: str | None = None) -> str:
    """Build the house error message: "Expected …; received `name=value`; valid: …. hint".

    >>> expected("a positive int", "bs", -1)
    'Expected `bs` to be a positive int; received `bs=-1`.'
    """
    msg = f"Expected `{name}` to be {what}; received `{name}={value!r}`"
    if valid is not None:
        msg += "; valid: " + ", ".join(repr(v) for v in valid)
    msg += "."
    if hint:
        msg += " " + hint
    return msg
