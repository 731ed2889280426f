"""Core helpers shared by every part of ember: errors, devices, seeding, parallel map."""

from __future__ import annotations

from ember.core.device import default_device, to_cpu, to_detach, to_device
from ember.core.errors import (
    CallbackError,
    ConfigError,
    DataError,
    DownloadError,
    EmberError,
    ExportError,
    expected,
)
from ember.core.seed import set_seed

__all__ = [
    "EmberError",
    "ConfigError",
    "DataError",
    "CallbackError",
    "ExportError",
    "DownloadError",
    "expected",
    "default_device",
    "to_device",
    "to_cpu",
    "to_detach",
    "set_seed",
]
