"""ember's own vision architectures and the registry that names them.

Names are imported on first use, so ``import ember.vision.models`` stays cheap.

>>> from ember.vision.models import create_model, list_models
>>> model = create_model("xresnet34", n_out=10)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "register_model",
    "create_model",
    "list_models",
    "is_model",
    "XResNet",
    "xresnet18",
    "xresnet34",
    "xresnet50",
    "xresnet101",
    "xresnet152",
    "xresnet18_deep",
    "xresnet34_deep",
    "xresnet50_deep",
    "xresnet18_deeper",
    "xresnet34_deeper",
    "xresnet50_deeper",
    "xresnext18",
    "xresnext34",
    "xresnext50",
    "xresnext101",
    "xse_resnet18",
    "xse_resnet34",
    "xse_resnet50",
    "xse_resnet101",
    "xse_resnet152",
    "xse_resnext18",
    "xse_resnext34",
    "xse_resnext50",
    "xse_resnext101",
    "xse_resnext18_deep",
    "xse_resnext34_deep",
    "xse_resnext50_deep",
    "xse_resnext18_deeper",
    "xse_resnext34_deeper",
    "xse_resnext50_deeper",
    "xsenet154",
    "xresnet_tiny",
]

_REGISTRY_NAMES = ("register_model", "create_model", "list_models", "is_model")
_LAZY: dict[str, str] = {name: "registry" if name in _REGISTRY_NAMES else "xresnet" for name in __all__}

if TYPE_CHECKING:
    from ember.vision.models.registry import create_model, is_model, list_models, register_model
    from ember.vision.models.xresnet import (
        XResNet,
        xresnet18,
        xresnet18_deep,
        xresnet18_deeper,
        xresnet34,
        xresnet34_deep,
        xresnet34_deeper,
        xresnet50,
        xresnet50_deep,
        xresnet50_deeper,
        xresnet101,
        xresnet152,
        xresnet_tiny,
        xresnext18,
        xresnext34,
        xresnext50,
        xresnext101,
        xse_resnet18,
        xse_resnet34,
        xse_resnet50,
        xse_resnet101,
        xse_resnet152,
        xse_resnext18,
        xse_resnext18_deep,
        xse_resnext18_deeper,
        xse_resnext34,
        xse_resnext34_deep,
        xse_resnext34_deeper,
        xse_resnext50,
        xse_resnext50_deep,
        xse_resnext50_deeper,
        xse_resnext101,
        xsenet154,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
