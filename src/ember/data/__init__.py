"""Data: DataLoaders now; blocks, transforms, splitters and datasets arrive with the data-block API."""

from __future__ import annotations

from ember.data.loaders import DataLoaders, DeviceLoader

__all__ = ["DataLoaders", "DeviceLoader"]
