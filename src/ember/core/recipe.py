"""Recipes: how ember objects are written to JSON and rebuilt, without pickle and without running code.

An exportable class declares itself with :func:`register_recipe` and implements two methods:

- ``to_recipe(self) -> dict``: its constructor arguments and learned state as JSON values (str,
  int, float, bool, None, lists and dicts of those). Tensors become lists; small arrays too.
- ``from_recipe(cls, data: dict) -> instance`` (a classmethod): the inverse.

:func:`dump` wraps the dict as ``{"type": <registered name>, "data": {...}}`` and :func:`load` looks
the name up in the registry: only registered ember classes can be rebuilt from a file, so a file
can never name an arbitrary callable to run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ember.core.errors import ExportError

__all__ = ["register_recipe", "dump", "load", "is_registered", "registered_names"]

T = TypeVar("T", bound=type)
_REGISTRY: dict[str, type] = {}


def register_recipe(name: str | None = None) -> Callable[[T], T]:
    """Class decorator: make a class exportable under `name` (default: the class name)."""

    def deco(cls: T) -> T:
        key = name or cls.__name__
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ExportError(f"Two classes claim the recipe name {key!r}: {_REGISTRY[key]} and {cls}.")
        for meth in ("to_recipe", "from_recipe"):
            if not hasattr(cls, meth):
                raise ExportError(f"{cls.__name__} is registered for export but has no `{meth}` method.")
        _REGISTRY[key] = cls
        cls._recipe_name = key
        return cls

    return deco


def is_registered(obj: Any) -> bool:
    """Whether `obj` (an instance) can be written as a recipe."""
    return type(obj).__dict__.get("_recipe_name") is not None or getattr(type(obj), "_recipe_name", None) in _REGISTRY


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def dump(obj: Any) -> dict[str, Any]:
    """``{"type": name, "data": obj.to_recipe()}`` for a registered object; ExportError otherwise."""
    name = getattr(type(obj), "_recipe_name", None)
    if name is None or _REGISTRY.get(name) is not type(obj):
        raise ExportError(
            f"Cannot export a {type(obj).__name__}: it is not an ember class with a recipe. "
            "Register it with @register_recipe and give it to_recipe/from_recipe."
        )
    return {"type": name, "data": obj.to_recipe()}


def load(entry: dict[str, Any]) -> Any:
    """Rebuild what :func:`dump` wrote; only registered names are accepted."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise ExportError(f"Expected a recipe entry with a 'type'; received {entry!r:.80}.")
    cls = _REGISTRY.get(entry["type"])
    if cls is None:
        raise ExportError(
            f"The recipe names {entry['type']!r}, which is not an ember exportable class "
            "(the file may come from a newer ember, or need an application module imported first)."
        )
    return cls.from_recipe(entry.get("data", {}))
