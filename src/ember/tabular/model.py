"""The tabular model: an embedding per categorical column, the continuous columns, and a small MLP.

>>> model = TabularModel([(4, 3), (10, 6)], n_cont=5, out_sz=2, layers=[200, 100])
>>> model(torch.zeros(8, 2, dtype=torch.long), torch.randn(8, 5)).shape
torch.Size([8, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, expected
from ember.layers import Embedding, LinBnDrop, SigmoidRange
from ember.learner.export import register_model_factory

__all__ = ["TabularModel", "emb_sz_rule", "get_emb_sz", "tabular_model", "TABULAR_FACTORIES"]


def emb_sz_rule(n_cat: int) -> int:
    """The rule of thumb for an embedding's width: ``min(600, round(1.6 * n_cat ** 0.56))``."""
    return min(600, round(1.6 * n_cat**0.56))


def get_emb_sz(source: Any, sz_dict: dict[str, int] | None = None) -> list[tuple[int, int]]:
    """``(vocabulary size, width)`` for each categorical column of a processed table.

    Args:
        source: a :class:`~ember.tabular.procs.TabularProcessor`, a ``TabularPandas`` or
            ``TabularDataLoaders`` (anything with a ``processor``).
        sz_dict: widths that override the rule for some columns, by name.
    """
    from ember.tabular.procs import Categorify

    proc = getattr(source, "processor", source)
    cat = proc.proc(Categorify)
    sz_dict = sz_dict or {}
    unknown = set(sz_dict) - set(proc.cat_names)
    if unknown:
        raise ConfigError(expected("categorical column names", "sz_dict", sorted(unknown), proc.cat_names))
    out = []
    for c in proc.cat_names:
        n = cat.n_classes(c)
        out.append((n, int(sz_dict.get(c, emb_sz_rule(n)))))
    return out


class TabularModel(nn.Module):
    """Embeddings of the categorical inputs, concatenated with the (batch-normed) continuous ones, then
    ``LinBnDrop`` blocks and a final linear layer.

    Args:
        emb_szs: ``(vocabulary size, width)`` per categorical column (see :func:`get_emb_sz`).
        n_cont: number of continuous columns.
        out_sz: outputs (classes, or regression targets).
        layers: hidden widths.
        ps: dropout of each hidden block (one number for all, or one per block).
        embed_p: dropout on the concatenated embeddings.
        y_range: ``(low, high)``: squash the outputs into that range with a scaled sigmoid.
        use_bn: batch norm in the hidden blocks.
        bn_final: batch norm before the output layer.
        bn_cont: batch norm of the continuous inputs.
    """

    def __init__(
        self,
        emb_szs: Sequence[tuple[int, int]],
        n_cont: int,
        out_sz: int,
        layers: Sequence[int] = (200, 100),
        ps: float | Sequence[float] | None = None,
        embed_p: float = 0.0,
        y_range: tuple[float, float] | None = None,
        use_bn: bool = True,
        bn_final: bool = False,
        bn_cont: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(out_sz, int) or out_sz < 1:
            raise ConfigError(expected("a positive int", "out_sz", out_sz))
        layers = list(layers)
        if ps is None:
            ps = [0.0] * len(layers)
        elif isinstance(ps, (int, float)):
            ps = [float(ps)] * len(layers)
        if len(ps) != len(layers):
            raise ConfigError(expected(f"{len(layers)} dropout values (one per layer)", "ps", ps))
        self.embeds = nn.ModuleList([Embedding(n, w) for n, w in emb_szs])
        self.emb_drop = nn.Dropout(embed_p) if embed_p > 0 else nn.Identity()
        self.bn_cont = nn.BatchNorm1d(n_cont) if (bn_cont and n_cont > 0) else None
        self.n_emb, self.n_cont = sum(w for _, w in emb_szs), n_cont
        sizes = [self.n_emb + n_cont, *layers]
        blocks: list[nn.Module] = [
            LinBnDrop(sizes[i], sizes[i + 1], bn=use_bn, p=p, act=nn.ReLU(inplace=True), lin_first=True)
            for i, p in enumerate(ps)
        ]
        if bn_final:
            blocks.append(nn.BatchNorm1d(sizes[-1]))
        blocks.append(nn.Linear(sizes[-1], out_sz))
        if y_range is not None:
            blocks.append(SigmoidRange(*y_range))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n_cat)`` codes and ``(B, n_cont)`` values -> ``(B, out_sz)``."""
        parts = []
        if self.embeds:
            emb = torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)], dim=1)  # (B, n_emb)
            parts.append(self.emb_drop(emb))
        if self.n_cont:
            parts.append(self.bn_cont(x_cont) if self.bn_cont is not None else x_cont)  # (B, n_cont)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.layers(x)


@register_model_factory()
def tabular_model(
    emb_szs: Sequence[Sequence[int]],
    n_cont: int,
    out_sz: int,
    layers: Sequence[int] = (200, 100),
    **kwargs: Any,
) -> TabularModel:
    """Build a :class:`TabularModel` from JSON-able arguments.

    Registered as the model factory ``"tabular_model"``: ``load_learner`` rebuilds an exported tabular model by
    calling it with the ``kwargs`` of ``learn.model_recipe``.
    """
    if kwargs.get("y_range") is not None:
        kwargs["y_range"] = tuple(kwargs["y_range"])
    return TabularModel([tuple(e) for e in emb_szs], n_cont, out_sz, layers=list(layers), **kwargs)


#: Factories of this package by the name stored in ``learn.model_recipe["factory"]``.
TABULAR_FACTORIES = {"tabular_model": tabular_model}
