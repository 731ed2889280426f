"""Safe export: one ``.ember`` file holding the weights (safetensors) and a JSON recipe, and loading it back
without unpickling anything or running code from the file.

The file is a zip with exactly two members:

- ``model.safetensors``: the model's inference state (parameters and buffers); tensors that share
  storage (tied weights) are stored once and the aliases listed in the recipe.
- ``recipe.json``: the format version, the ember version, how to rebuild the model (an ember factory and its
  arguments, or a user class's import path and constructor arguments), the learner class, the loss (for its
  activation and decoding), and what the data needs at inference (blocks with their vocab, item transforms,
  normalization statistics, tabular processing, tokenizer and vocab), each written by a registered class's
  ``to_recipe`` (see :mod:`ember.core.recipe`).

Loading accepts only that layout: a file with other members (a pickle, a path outside the archive), from a newer
format, truncated, or whose weights do not fit the rebuilt model is refused with an :class:`ExportError` that
says what is wrong.

A recipe names code only by registered names (factories, learners, recipe classes) or, for a model class of the
user's own, by its import path. Loading never imports a module a file names: such a class is built only when its
module is already imported in this process (the user imported it), so a file cannot run the import-time code of
whatever module is installed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember._version import __version__
from ember.core import recipe
from ember.core.errors import ExportError
from ember.data.loaders import DataLoaders
from ember.learner.learner import Learner

__all__ = [
    "export_learner",
    "load_learner",
    "read_recipe",
    "register_model_factory",
    "register_learner",
    "FORMAT_VERSION",
]

FORMAT = "ember-model"
FORMAT_VERSION = 1
_MEMBERS = {"recipe.json", "model.safetensors"}
_MODEL_FACTORIES: dict[str, Any] = {}
_LEARNERS: dict[str, type] = {}
# Modules whose import registers recipe classes; only these may be imported while loading a file.
_APPLICATIONS = ("ember.vision", "ember.tabular", "ember.collab", "ember.text")


def register_model_factory(name: str | None = None) -> Any:
    """Decorator: make a model-building function rebuildable from a recipe ``{"factory": name, "kwargs": {...}}``."""

    def deco(fn: Any) -> Any:
        _MODEL_FACTORIES[name or fn.__name__] = fn
        return fn

    return deco


def register_learner(cls: type) -> type:
    """Class decorator: let `load_learner` rebuild this Learner subclass, as ``cls(dls, model, loss_func=...)``."""
    _LEARNERS[cls.__name__] = cls
    return cls


def _application(*objs: Any) -> str | None:
    for obj in objs:
        module = type(obj).__module__ if not isinstance(obj, str) else obj
        for app in _APPLICATIONS:
            if module == app or module.startswith(app + "."):
                return app
    return None


def _json_value(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def capture_model_recipe(model: nn.Module) -> dict[str, Any] | None:
    """How to rebuild a user's model: its import path and the constructor arguments we can recover.

    An argument is recovered when the instance holds an attribute of the same name with a JSON value (the usual
    ``self.n_in = n_in`` pattern). Returns None when the class cannot be imported by name (defined in
    ``__main__`` or inside a function); such a model is loaded with ``load_learner(path, model=...)``.
    """
    cls = type(model)
    module, qualname = cls.__module__, cls.__qualname__
    if "<locals>" in qualname or module == "__main__":
        return None
    if module.startswith("torch.nn") and cls is nn.Sequential:
        return None
    kwargs: dict[str, Any] = {}
    complete = True
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            complete = False  # positional arguments (an nn.Sequential subclass's layers) cannot be recovered
            continue
        if p.kind == p.VAR_KEYWORD:
            continue
        if hasattr(model, p.name) and _json_value(getattr(model, p.name)):
            kwargs[p.name] = getattr(model, p.name)
        elif p.default is p.empty:
            complete = False
    return {"class": f"{module}:{qualname}", "kwargs": kwargs, "complete": complete}


def _model_recipe(learn: Any) -> dict[str, Any]:
    rec = getattr(learn, "model_recipe", None)
    if rec is not None:
        if rec.get("factory") not in _MODEL_FACTORIES:
            raise ExportError(f"The model recipe names an unknown factory {rec.get('factory')!r}.")
        return {"factory": rec["factory"], "kwargs": rec.get("kwargs", {})}
    rec = capture_model_recipe(learn.model)
    if rec is None:
        return {"class": None}
    return rec


def _loss_recipe(loss_func: Any) -> dict[str, Any] | None:
    if recipe.is_registered(loss_func):
        return recipe.dump(loss_func)
    cls = type(loss_func)
    if cls.__module__.startswith("torch.nn") and isinstance(loss_func, nn.Module):
        return {"torch": cls.__name__}
    return None


def _aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """The names of tensors that share storage with an earlier one (tied weights), each with the name kept."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    aliases: dict[str, str] = {}
    for k, t in state.items():
        if not t.numel():
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            aliases[k] = seen[key]
        else:
            seen[key] = k
    return aliases


def _split_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keep one name per storage (safetensors refuses shared tensors); return the aliases to restore."""
    aliases = _aliases(state)
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in state.items() if k not in aliases}
    return tensors, aliases


def _learner_recipe(learn: Any, data: bool = True) -> dict[str, Any]:
    """What :func:`export_learner` writes as ``recipe.json`` for `learn` (``ember info`` shows it in words).

    Args:
        data: write the data's recipe; False leaves it out (``"data": None``), for a learner whose loaders cannot
            be written but whose recipe is wanted all the same (``ember serve`` of a learner in memory).

    Raises:
        ExportError: a part of the learner cannot be written (an unknown factory, a transform of your own).
    """
    dls = learn.dls
    data_rec = recipe.dump(dls) if data and recipe.is_registered(dls) else None
    learner_cls = type(learn).__name__
    if _LEARNERS.get(learner_cls, Learner) is not type(learn) and type(learn) is not Learner:
        learner_cls = "Learner"  # an unregistered subclass: plain Learner behaviour at inference
    model_rec = _model_recipe(learn)
    state = learn.model.state_dict()
    aliases = _aliases(state)
    factory = _MODEL_FACTORIES.get(model_rec.get("factory")) if model_rec.get("factory") else None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ember_version": __version__,
        "application": _application(learn, dls, factory.__module__ if factory is not None else ""),
        "learner": learner_cls,
        "model": model_rec,
        "loss": _loss_recipe(learn.loss_func),
        "data": data_rec,
        "aliases": aliases,
        "n_params": sum(int(t.numel()) for k, t in state.items() if k not in aliases),
    }


def export_path(learn: Any, fname: str | os.PathLike) -> Path:
    """Where ``export(fname)`` writes: a bare file name goes under ``learn.path``."""
    path = Path(fname)
    if not path.is_absolute() and not path.parent.parts:
        path = Path(learn.path) / path
    return path


def export_learner(learn: Any, fname: str | os.PathLike = "export.ember", verbose: bool = True) -> Path:
    """Write `learn` for inference to one safe file (see the module docstring); returns its path."""
    from safetensors.torch import save as st_save

    path = export_path(learn, fname)
    rec = _learner_recipe(learn)
    tensors, _ = _split_shared(learn.model.state_dict())
    try:
        text = json.dumps(rec, indent=1)
    except (TypeError, ValueError) as e:
        raise ExportError(f"Part of the recipe is not plain data and cannot be exported: {e}") from e
    weights = st_save(tensors, metadata={"format": FORMAT})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("recipe.json", text)
        z.writestr("model.safetensors", weights)
    os.replace(tmp, path)
    if verbose:
        size = path.stat().st_size
        mb, kb = len(weights) / 1e6, len(text) / 1e3
        print(f"Exported to {path} ({size / 1e6:.2f} MB: weights {mb:.2f} MB + recipe {kb:.1f} KB)")
    return path


def _open(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.exists():
        raise ExportError(f"No model file at {path}.")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            bad = [n for n in names if n not in _MEMBERS]
            if bad:
                raise ExportError(
                    f"{path} holds unexpected members {bad}; an ember file holds only {sorted(_MEMBERS)}. "
                    "Refusing to load it (it may have been tampered with)."
                )
            if set(names) != _MEMBERS:
                raise ExportError(f"{path} lacks {sorted(_MEMBERS - set(names))}: it is incomplete.")
            text = z.read("recipe.json")
            weights = z.read("model.safetensors")
    except zipfile.BadZipFile as e:
        raise ExportError(f"{path} is not a valid ember file (truncated or corrupt): {e}") from e
    try:
        rec = json.loads(text)
    except ValueError as e:
        raise ExportError(f"{path}: recipe.json is not valid JSON: {e}") from e
    if rec.get("format") != FORMAT:
        raise ExportError(f"{path} is not an ember model file (format {rec.get('format')!r}).")
    if int(rec.get("format_version", 0)) > FORMAT_VERSION:
        raise ExportError(
            f"{path} was written by ember {rec.get('ember_version')} in format {rec['format_version']}; this ember "
            f"({__version__}) reads formats up to {FORMAT_VERSION}. Upgrade ember to load it."
        )
    return rec, weights


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON recipe of an ``.ember`` file (what `ember info` shows), after the file's checks."""
    if isinstance(path, str) and path.startswith("hf://"):  # a model on the Hugging Face Hub (see ember.hub)
        from ember.hub import resolve_model_path

        path = resolve_model_path(path)
    return _open(Path(path))[0]


def _build_model(rec: dict[str, Any], path: Path) -> nn.Module:
    m = rec["model"]
    if "factory" in m:
        fn = _MODEL_FACTORIES.get(m["factory"])
        if fn is None:
            raise ExportError(f"{path} needs the model factory {m['factory']!r}, which this ember does not have.")
        return fn(**m.get("kwargs", {}))
    target = m.get("class")
    if not target:
        raise ExportError(
            f"{path} holds the weights of a model ember cannot rebuild by itself (a class defined in a script). "
            "Build the model yourself and pass it: load_learner(path, model=MyNet(...))."
        )
    if not isinstance(target, str) or ":" not in target:
        raise ExportError(f"{path} names the model class {target!r}; expected an import path 'module:Class'.")
    module_name, _, qualname = target.partition(":")
    short = qualname.rsplit(".", 1)[-1]
    if not m.get("complete", False):
        raise ExportError(
            f"{path} holds a {target} whose constructor arguments were not all recorded. "
            f"Pass the model: load_learner(path, model={short}(...))."
        )
    # never import what a file names: a module's import runs its code, and the file may come from anyone
    module = sys.modules.get(module_name)
    if module is None:
        raise ExportError(
            f"{path} needs the model class {target}, from the module {module_name!r}, which is not imported. "
            f"Loading never imports a module a file names: import {module_name} first, or pass the model: "
            f"load_learner(path, model={short}(...))."
        )
    try:
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError as e:
        raise ExportError(
            f"{path} needs the class {target}, which the module {module_name!r} does not define ({e}). "
            "Import the version of your code that defines it, or pass load_learner(path, model=...)."
        ) from e
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ExportError(f"{path} names {target}, which is not an nn.Module class; refusing to call it.")
    kwargs = m.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ExportError(f"{path}: the arguments of {target} are {type(kwargs).__name__}, not an object of names.")
    try:
        return obj(**kwargs)
    except TypeError as e:
        raise ExportError(
            f"{path}: {target} refused the arguments the file records ({e}). Pass the model: "
            f"load_learner(path, model={short}(...))."
        ) from e


def _load_weights(model: nn.Module, weights: bytes, aliases: dict[str, str], path: Path) -> None:
    from safetensors.torch import load as st_load

    try:
        tensors = st_load(weights)
    except Exception as e:
        raise ExportError(f"{path}: the weights cannot be read ({type(e).__name__}: {e}).") from e
    for alias, source in aliases.items():
        tensors[alias] = tensors[source]
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in tensors and tensors[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shapes differ: " + "; ".join(wrong[:5]))
        if missing:
            parts.append(f"missing: {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected: {unexpected[:5]}")
        raise ExportError(f"{path}: the weights do not fit the model its recipe builds ({', '.join(parts)}).")
    model.load_state_dict(tensors)


def load_learner(path: str | os.PathLike, device: str | torch.device = "cpu", model: nn.Module | None = None) -> Any:
    """Rebuild an inference learner from an ``.ember`` file, without unpickling or running code from it.

    Args:
        path: the file `learn.export` wrote, or a model on the Hugging Face Hub, ``"hf://user/name"`` or
            ``"hf://user/name@revision"`` (downloaded once into the Hugging Face cache; see :mod:`ember.hub`).
        device: where the model runs.
        model: the model to load the weights into, when the file's model is a class of yours that ember cannot
            rebuild by itself.

    A file whose model is a class of yours (``"module:Class"`` in its recipe) is rebuilt only when that module is
    already imported here: ``import mymodels`` before loading, or pass `model`. Loading never imports a module a
    file names, so that a file from someone else cannot run code on import.

    Raises:
        ExportError: the file is missing, corrupt, tampered with or from a newer ember; its model class is not
            imported or not an ``nn.Module``; or its weights do not fit the model.
    """
    from ember.core.device import default_device

    device = default_device(device)  # a device this machine lacks is a clear error before the file is read
    if isinstance(path, str) and path.startswith("hf://"):
        from ember.hub import resolve_model_path

        path = resolve_model_path(path)
    path = Path(path)
    rec, weights = _open(path)
    app = rec.get("application")
    if app is not None:
        if app not in _APPLICATIONS:
            raise ExportError(f"{path} names an unknown application {app!r}.")
        importlib.import_module(app)  # registers the application's recipe classes
    net = model if model is not None else _build_model(rec, path)
    _load_weights(net, weights, rec.get("aliases", {}), path)
    net.eval()
    loss = _rebuild_loss(rec.get("loss"))
    dls = recipe.load(rec["data"]) if rec.get("data") else DataLoaders.from_recipe({})
    cls = _LEARNERS.get(rec.get("learner", "Learner"), Learner)
    learn = cls(dls.to(device), net, loss_func=loss if loss is not None else nn.Identity())
    learn.silent = True
    if "factory" in rec["model"]:
        learn.model_recipe = {"factory": rec["model"]["factory"], "kwargs": rec["model"].get("kwargs", {})}
    return learn


def _rebuild_loss(entry: dict[str, Any] | None) -> Any:
    if entry is None:
        return None
    if "torch" in entry:
        cls = getattr(nn, entry["torch"], None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__name__.endswith("Loss")):
            raise ExportError(f"Unknown torch loss {entry['torch']!r} in the recipe.")
        return cls()
    return recipe.load(entry)
