"""Data: the data block API (blocks, items, splitters, labellers), Datasets, DataLoaders and data sources.

``import ember.data`` imports torch but no image library: image blocks live in ``ember.vision``.
"""

from __future__ import annotations

from ember.core.parallel import parallel
from ember.data.block import CategoryBlock, DataBlock, MultiCategoryBlock, RegressionBlock, TransformBlock
from ember.data.datasets import Datasets
from ember.data.external import URLs, download_images, download_url, resize_images, untar_data, verify_images
from ember.data.items import (
    ColReader,
    ColSplitter,
    EndSplitter,
    FileSplitter,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    MaskSplitter,
    RandomSplitter,
    RandomSubsetSplitter,
    RegexLabeller,
    TrainTestSplitter,
    get_files,
    get_image_files,
    parent_label,
    using_attr,
)
from ember.data.loaders import DataLoaders, DeviceLoader, make_loader
from ember.data.transform import FuncTransform, Transform

__all__ = [
    "DataBlock",
    "TransformBlock",
    "CategoryBlock",
    "MultiCategoryBlock",
    "RegressionBlock",
    "Datasets",
    "DataLoaders",
    "DeviceLoader",
    "make_loader",
    "Transform",
    "FuncTransform",
    "get_files",
    "get_image_files",
    "RandomSplitter",
    "GrandparentSplitter",
    "FuncSplitter",
    "IndexSplitter",
    "ColSplitter",
    "TrainTestSplitter",
    "EndSplitter",
    "MaskSplitter",
    "FileSplitter",
    "RandomSubsetSplitter",
    "parent_label",
    "RegexLabeller",
    "ColReader",
    "using_attr",
    "URLs",
    "untar_data",
    "download_url",
    "download_images",
    "verify_images",
    "resize_images",
    "parallel",
]
