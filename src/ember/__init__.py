"""ember: a practical deep-learning library on PyTorch.

``import ember`` is cheap: the names below are imported on first use, so the command line and
``ember --version`` start fast. The applications live in ``ember.vision``, ``ember.tabular``,
``ember.collab`` and ``ember.text``; the training engine in ``ember.learner``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ember._version import __version__

if TYPE_CHECKING:
    from ember.core.errors import EmberError
    from ember.core.seed import set_seed
    from ember.data.loaders import DataLoaders
    from ember.hub import from_hub, push_to_hub
    from ember.learner.learner import Learner

__all__ = ["__version__", "EmberError", "set_seed", "DataLoaders", "Learner", "load_learner", "push_to_hub", "from_hub"]

_LAZY = {
    "EmberError": "ember.core.errors",
    "set_seed": "ember.core.seed",
    "DataLoaders": "ember.data.loaders",
    "Learner": "ember.learner.learner",
    "load_learner": "ember.learner.export",
    "push_to_hub": "ember.hub",
    "from_hub": "ember.hub",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
