"""`create_head` and `create_vision_model`: a new head on a CNN body, and the parameter groups of that pair.

:func:`create_head` pools the body's feature maps (concatenated max and average pooling) and adds a small MLP sized
for the data; :func:`create_vision_model` puts it on a :func:`~ember.vision.body.create_body` body. The parameter
splitters give ``fine_tune`` its groups: stem and first stages, late stages, head (or body and head).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, expected
from ember.layers import AdaptiveConcatPool2d, Flatten, LinBnDrop, SigmoidRange
from ember.learner.export import register_model_factory
from ember.vision.body import create_body

__all__ = ["create_head", "create_vision_model"]


def create_head(
    nf: int,
    n_out: int,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    first_bn: bool = True,
    bn_final: bool = False,
    lin_first: bool = False,
    y_range: Sequence[float] | None = None,
) -> nn.Sequential:
    """A classification head for a body with `nf` output channels: pool, flatten, then linear blocks.

    Args:
        lin_ftrs: the hidden sizes (default ``[512]``).
        ps: dropout of each linear block; a single value gives the last block `ps` and the others ``ps / 2``.
        concat_pool: max and average pooling concatenated (2 * nf features) instead of average pooling.
        first_bn: batch norm on the pooled features.
        bn_final: a batch norm on the outputs.
        y_range: ``(low, high)``: squash the outputs into this range with a :class:`~ember.layers.SigmoidRange`
            (regression targets such as keypoints in ``(-1, 1)``).
    """
    if not isinstance(n_out, int) or n_out < 1:
        raise ConfigError(expected("a positive number of outputs", "n_out", n_out))
    n_feat = nf * 2 if concat_pool else nf
    sizes = [n_feat, *(lin_ftrs if lin_ftrs is not None else [512]), n_out]
    n_lin = len(sizes) - 1
    if isinstance(ps, (int, float)):
        ps = [ps / 2] * (n_lin - 1) + [ps]
    ps = list(ps)
    if len(ps) != n_lin:
        raise ConfigError(expected(f"one dropout per linear layer ({n_lin})", "ps", ps))
    layers: list[nn.Module] = [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), Flatten()]
    for i in range(n_lin):
        last = i == n_lin - 1
        layers.append(
            LinBnDrop(
                sizes[i],
                sizes[i + 1],
                bn=first_bn or i > 0,
                p=float(ps[i]),
                act=None if last else nn.ReLU(inplace=True),
                lin_first=lin_first,
            )
        )
    if bn_final:
        layers.append(nn.BatchNorm1d(n_out, momentum=0.01))
    if y_range is not None:
        if not (isinstance(y_range, (list, tuple)) and len(y_range) == 2):
            raise ConfigError(expected("a (low, high) pair", "y_range", y_range))
        layers.append(SigmoidRange(float(y_range[0]), float(y_range[1])))
    return nn.Sequential(*layers)


def _num_features(body: nn.Module, n_in: int) -> int:
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros(1, n_in, 64, 64, device=next(body.parameters()).device))
    except (AssertionError, RuntimeError) as e:
        raise ConfigError(
            f"The body of this model cannot run on a 64x64 image ({type(e).__name__}: {e}). vision_learner needs a "
            "CNN body that accepts any image size and gives feature maps (B, C, H, W); models with a fixed input "
            "size (vision transformers) are not supported."
        ) from e
    finally:
        body.train(was_training)
    if out.ndim != 4:
        raise ConfigError(
            f"The body's output has shape {tuple(out.shape)}; a CNN body giving feature maps (B, C, H, W) is needed "
            "(transformer bodies, which give tokens, are not supported)."
        )
    return int(out.shape[1])


@register_model_factory("create_vision_model")
def create_vision_model(
    arch: str | Callable[..., nn.Module],
    n_out: int,
    n_in: int = 3,
    pretrained: bool = True,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    concat_pool: bool = True,
    lin_ftrs: Sequence[int] | None = None,
    ps: float = 0.5,
    bn_final: bool = False,
    init: Callable[[torch.Tensor], Any] | None = nn.init.kaiming_normal_,
    y_range: Sequence[float] | None = None,
) -> nn.Sequential:
    """``nn.Sequential(body, head)``: the body of `arch` and a :func:`create_head` head with `n_out` outputs.

    The head's linear layers are initialized with `init` (their biases at 0); the body keeps its weights.
    `y_range` ends the head with a :class:`~ember.layers.SigmoidRange`.
    """
    body = create_body(arch, n_in=n_in, pretrained=pretrained, cut=cut)
    head = create_head(
        _num_features(body, n_in),
        n_out,
        lin_ftrs=lin_ftrs,
        ps=ps,
        concat_pool=concat_pool,
        bn_final=bn_final,
        y_range=y_range,
    )
    if init is not None:
        for m in head.modules():
            if isinstance(m, nn.Linear):
                init(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return nn.Sequential(body, head)


def _body_head_split(model: nn.Module) -> list[list[nn.Parameter]]:
    return [list(model[0].parameters()), list(model[1].parameters())]


def _n_convs(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in module.modules())


def _early_modules(body: nn.Module) -> list[nn.Module] | None:
    """The modules of the first half of a CNN body: its stem and the first half of its stages (as fastai splits a
    ResNet: stem, layer1 and layer2, then layer3 and layer4). A stage is a child holding several convolutions; a
    body whose stages sit one level down (``features`` of DenseNet/ConvNeXt/EfficientNet, a timm model) is looked
    into. None when no stages are found (a plain stack of convolutions)."""
    prefix: list[nn.Module] = []
    main = body
    for _ in range(4):
        kids = list(main.children())
        stages = [i for i, c in enumerate(kids) if _n_convs(c) > 1]
        if len(stages) >= 2:
            k = stages[len(stages) // 2 - 1] + 1  # after the last stage of the first half
            return prefix + kids[:k]
        if len(stages) != 1:
            return None
        prefix += kids[: stages[0]]
        main = kids[stages[0]]
    return None


def _stages_head_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Three parameter groups for a known architecture: early body (stem and first stages), late body, head.

    ``fine_tune``'s rates then grow from the first group to the head, so the late stages (most of a pretrained
    body, and the most task-specific part) train faster than the stem. Falls back to body and head when the
    body's stages cannot be found.
    """
    body, head = model[0], model[1]
    early_mods = _early_modules(body)
    if early_mods is None:
        return _body_head_split(model)
    early_ids = {id(p) for m in early_mods for p in m.parameters()}
    early = [p for p in body.parameters() if id(p) in early_ids]
    late = [p for p in body.parameters() if id(p) not in early_ids]
    if not early or not late:
        return _body_head_split(model)
    return [early, late, list(head.parameters())]
