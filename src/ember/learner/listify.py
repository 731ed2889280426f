"""`_listify`: an argument given as nothing, one value or a list or tuple of values, as a list.

What the learner's ``cbs=`` and ``metrics=`` arguments go through.
"""

from __future__ import annotations

from typing import Any


def _listify(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]
