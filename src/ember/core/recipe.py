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

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ember.core.errors import ExportError

__all__ = ["register_recipe", "recipe_from_init", "dump", "load", "is_registered", "registered_names"]

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
    name = getattr(type(obj), "_recipe_name", None)
    return name is not None and _REGISTRY.get(name) is type(obj)


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


def _to_json(v: Any) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        return {"__tensor__": v.detach().cpu().tolist(), "dtype": str(v.dtype).removeprefix("torch.")}
    if isinstance(v, tuple):
        return {"__tuple__": [_to_json(x) for x in v]}
    if isinstance(v, list):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _to_json(x) for k, x in v.items()}
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    raise ExportError(f"Cannot write a {type(v).__name__} ({v!r:.60}) to a recipe: only plain values and tensors.")


def _from_json(v: Any) -> Any:
    import torch

    if isinstance(v, dict):
        if "__tensor__" in v:
            return torch.tensor(v["__tensor__"], dtype=getattr(torch, v["dtype"]))
        if "__tuple__" in v:
            return tuple(_from_json(x) for x in v["__tuple__"])
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def recipe_from_init(name: str | None = None) -> Callable[[T], T]:
    """Class decorator: register a class whose recipe is simply its constructor arguments.

    The arguments a constructor received (plain values, tuples, lists, dicts and tensors) are recorded on
    the instance; ``to_recipe`` writes them and ``from_recipe`` calls the constructor with them again.
    """

    def deco(cls: T) -> T:
        original = cls.__init__
        params = list(inspect.signature(original).parameters.values())[1:]
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            raise ExportError(f"{cls.__name__}: recipe_from_init needs a constructor without *args/**kwargs.")
        sig = inspect.signature(original)

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            original(self, *args, **kwargs)
            if type(self) is cls:  # the most derived class records its own arguments
                self._init_args = dict(list(bound.arguments.items())[1:])

        def to_recipe(self: Any) -> dict[str, Any]:
            return {k: _to_json(v) for k, v in self._init_args.items()}

        def from_recipe(klass: type, data: dict[str, Any]) -> Any:
            return klass(**{k: _from_json(v) for k, v in data.items()})

        cls.__init__ = __init__
        cls.to_recipe = to_recipe
        cls.from_recipe = classmethod(from_recipe)
        return register_recipe(name)(cls)

    return deco
