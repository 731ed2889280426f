"""A small registry of ember's own architectures: register a factory by name, create a model by name.

>>> model = create_model("xresnet_tiny", n_out=10)
>>> "xresnet18" in list_models("xresnet*")
True

Only ember's architectures live here (xresnet, …); torchvision and timm names are resolved by the vision
learner. The built-in architecture modules are imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from ember.core.errors import ConfigError, expected

__all__ = ["register_model", "create_model", "list_models", "is_model"]

F = TypeVar("F", bound=Callable[..., nn.Module])

# Modules whose import registers ember's built-in architectures (each decorates its factories).
_BUILTIN_MODULES: tuple[str, ...] = ("ember.vision.models.xresnet",)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    # set first: the modules imported below call register_model, which must not re-enter this loop
    _builtins_loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def _origin(fn: Callable[..., object]) -> tuple[str, str]:
    code = getattr(fn, "__code__", None)
    return (code.co_filename if code is not None else fn.__module__, fn.__qualname__)


def register_model(fn: F) -> F:
    """Register a model factory under its function name (use as a decorator).

    Returns:
        ``fn`` unchanged.

    Raises:
        ConfigError: when another factory already holds that name.
    """
    name = fn.__name__
    held = _REGISTRY.get(name)
    # re-running the same definition (a module reloaded, or imported under another name) replaces it;
    # a different one is a clash
    if held is not None and _origin(held) != _origin(fn):
        raise ConfigError(
            f"A model named {name!r} is already registered (by {held.__module__}.{held.__qualname__}); "
            "give the new factory another name."
        )
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """The names of the registered models matching a shell-style ``pattern`` (e.g. ``"xresnet*"``), sorted."""
    _load_builtins()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    _load_builtins()
    return name in _REGISTRY


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model ``name``, passing ``kwargs`` to its factory (e.g. ``n_out``, ``c_in``).

    Raises:
        ConfigError: when ``name`` is not registered (the message lists the closest names).
    """
    _load_builtins()
    factory = _REGISTRY.get(name) if isinstance(name, str) else None
    if factory is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = "Did you mean " + ", ".join(repr(c) for c in close) + "?" if close else None
        hint = (hint + " " if hint else "") + "See `list_models()` for every name."
        raise ConfigError(expected("a registered model name", "name", name, hint=hint))
    return factory(**kwargs)
