"""`create_body`: the convolutional body of an architecture, cut before its pooling and taking any number of channels.

The architecture comes from torchvision (``"resnet18"``, ``"convnext_tiny"`` …), timm (``"resnet18.a1_in1k"``, any
:func:`timm.list_models` name) or ember's registry (``"xresnet18"``), or from a callable returning a module.
Pretrained weights are read only from the local caches (``torch.hub.get_dir()`` for torchvision, the Hugging Face
cache for timm): nothing is downloaded, and a missing file gets an error saying where to put it. Also here: the
normalization statistics those weights expect.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, EmberError, expected
from ember.layers import AdaptiveConcatPool2d
from ember.vision.augment import imagenet_stats

__all__ = ["create_body", "adapt_first_conv", "arch_name", "pretrained_path"]

_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, AdaptiveConcatPool2d)


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    """The first Conv2d of `model` with its parent module and attribute name (to replace it)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            return model.get_submodule(parent_name) if parent_name else model, attr, m
    return None


def adapt_first_conv(model: nn.Module, n_in: int) -> nn.Module:
    """Make the first convolution of `model` take `n_in` channels, keeping pretrained kernels meaningful.

    New channel ``i`` takes the kernel of old channel ``i % c_old``, divided among the copies of that kernel;
    an old kernel left without a copy (fewer channels) is spread evenly over the new ones. So one channel
    gets the RGB kernels summed (a grey pixel acts as equal R, G and B), and with any count an image equal in
    every channel gives the same activations as before. Changes `model` in place and returns it.
    """
    found = _first_conv(model)
    if found is None:
        raise ConfigError(expected("a model with a Conv2d", "model", type(model).__name__))
    parent, attr, conv = found
    if conv.in_channels == n_in:
        return model
    if conv.groups != 1:
        raise ConfigError(f"Cannot adapt the first convolution of {type(model).__name__} (it is grouped).")
    w = conv.weight.detach()  # (out, c_old, kh, kw)
    c_old = w.shape[1]
    src = torch.arange(n_in) % c_old  # new channel i copies old channel i % c_old ...
    counts = torch.bincount(src, minlength=c_old).to(w.dtype)
    new_w = w[:, src] / counts[src].view(1, -1, 1, 1)  # ... sharing that kernel among its copies
    for j in torch.nonzero(counts == 0).flatten().tolist():  # old channels with no copy: spread over all
        new_w = new_w + w[:, j : j + 1] / n_in
    new = nn.Conv2d(
        n_in,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(new_w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, attr, new)
    return model


def _cut_model(model: nn.Module, cut: int | Callable[[nn.Module], nn.Module] | None) -> nn.Module:
    """The body of a classifier: everything before its (last) pooling layer, or as `cut` says."""
    if callable(cut):
        return cut(model)
    body = getattr(model, "body", None)
    if cut is None and callable(body):
        return body()  # ember's XResNet knows its own body
    children = list(model.children())
    if cut is None:
        pools = [i for i, c in enumerate(children) if isinstance(c, _POOLS)]
        if pools:
            cut = pools[-1]
        elif hasattr(model, "features"):  # densenet-style: features, then pooling inside forward
            return nn.Sequential(model.features, nn.ReLU(inplace=True))
        else:
            raise ConfigError(
                f"Cannot find where to cut {type(model).__name__} (no pooling layer among its children). "
                "Pass `cut=<index of the first head layer>` or a function model -> body."
            )
    return nn.Sequential(*children[:cut])


def pretrained_path(arch: str) -> Path:
    """Where the torchvision weights of `arch` are expected in the local cache (``<torch hub>/checkpoints``)."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def _torchvision_model(arch: str, pretrained: bool) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(arch, weights=None)
    if pretrained:
        path = pretrained_path(arch)
        if not path.is_file():
            url = torchvision.models.get_model_weights(arch).DEFAULT.url
            raise EmberError(
                f"The pretrained weights of {arch!r} are not in the local cache: expected {path}. "
                f"Download {url} to that path (it is torchvision's cache, set by TORCH_HOME), "
                "or pass pretrained=False to train from scratch."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as e:
            raise EmberError(f"Cannot load the weights in {path} into {arch!r}: {e}. Delete the file and retry.") from e
    return model


def _timm_weights_file(arch: str) -> str | None:
    """A local file with timm's pretrained weights for `arch` (HF cache or torch hub cache), or None."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id.split("@")[0], fname)
            if isinstance(found, str):
                return found
    url = getattr(cfg, "url", None)
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if path.is_file():
            return str(path)
    return None


def _timm_body(arch: str, pretrained: bool, n_in: int) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0, "global_pool": "", "in_chans": n_in}
    if pretrained:
        path = _timm_weights_file(arch)
        if path is None:
            cfg = timm.models.get_pretrained_cfg(arch)
            where = f"the Hugging Face cache (repo {cfg.hf_hub_id})" if cfg and cfg.hf_hub_id else "torch hub's cache"
            raise EmberError(
                f"The pretrained weights of timm model {arch!r} are not in the local cache ({where}). "
                f"Fetch them once with network (`timm.create_model({arch!r}, pretrained=True)`), "
                "or pass pretrained=False to train from scratch."
            )
        kwargs["pretrained_cfg_overlay"] = {"file": path}
    model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    return _TimmBody(model)


_TRANSFORMER_PREFIXES = tuple("vit_ deit beit eva swin cait xcit levit flexivit samvit crossvit twins_ volo".split())


def _refuse_transformer(arch: str) -> None:
    """timm's vision transformers give tokens (or need a fixed input size): the CNN head cannot pool them."""
    base = arch.split(".")[0].lower()
    if base.startswith(_TRANSFORMER_PREFIXES):
        raise ConfigError(
            f"{arch!r} is a transformer (or token-mixing) model: vision_learner and unet_learner need a CNN body "
            "that gives feature maps (B, C, H, W), and transformer bodies are not supported. Use a CNN "
            "(resnet, convnext, efficientnet, regnet …), or build the model yourself and pass it to Learner."
        )


class _TimmBody(nn.Module):
    """A timm model used as a body: its unpooled features ``(B, C, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def _is_torchvision(arch: str) -> bool:
    import torchvision

    return arch in torchvision.models.list_models(module=torchvision.models)


def arch_name(arch: Any) -> Any:
    """A torchvision builder function (``torchvision.models.resnet18``) as its name (``"resnet18"``).

    The name goes through ember's offline weight cache (nothing is downloaded), gives a clear error when the
    weights are missing, and can be written to an export file. Other callables are returned as they are.
    """
    if callable(arch) and not isinstance(arch, (str, nn.Module, type)):
        module, name = getattr(arch, "__module__", "") or "", getattr(arch, "__name__", None)
        if module.startswith("torchvision.models") and isinstance(name, str) and _is_torchvision(name):
            return name
    return arch


def create_body(
    arch: str | Callable[..., nn.Module],
    n_in: int = 3,
    pretrained: bool = True,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
) -> nn.Module:
    """The convolutional body of `arch` (cut before the pooling), taking `n_in` channels.

    Args:
        arch: an ember registry name (``"xresnet18"``), a torchvision name (``"resnet34"``) or builder
            (``torchvision.models.resnet34``, used as its name: weights from the local cache only), a timm name
            (``"convnext_nano"``) or a callable returning a model (called with ``pretrained=`` when it
            accepts it).
        cut: where to cut: the index of the first head child, or a function ``model -> body``.

    Raises:
        ConfigError: an unknown name, or a model that cannot be cut.
        EmberError: pretrained weights missing from the local cache.
    """
    if not isinstance(n_in, int) or n_in < 1:
        raise ConfigError(expected("a positive number of channels", "n_in", n_in))
    arch = arch_name(arch)
    if callable(arch):
        params = inspect.signature(arch).parameters
        takes_pretrained = "pretrained" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
        model = arch(pretrained=pretrained) if takes_pretrained else arch()
        return adapt_first_conv(_cut_model(model, cut), n_in)
    if not isinstance(arch, str):
        raise ConfigError(expected("a model name or a callable", "arch", arch))
    from ember.vision.models import create_model, is_model

    if is_model(arch):
        return _cut_model(create_model(arch, pretrained=pretrained, c_in=n_in), cut)
    if _is_torchvision(arch):
        return adapt_first_conv(_cut_model(_torchvision_model(arch, pretrained), cut), n_in)
    import timm

    if timm.is_model(arch) or timm.list_models(arch.split(".")[0]):
        _refuse_transformer(arch)
        return _timm_body(arch, pretrained, n_in)
    raise ConfigError(
        expected(
            "an ember, torchvision or timm model name",
            "arch",
            arch,
            hint="See ember.vision.models.list_models(), torchvision.models.list_models() or timm.list_models().",
        )
    )


def _pretrained_stats(arch: Any) -> tuple[list[float], list[float]]:
    """The normalization the pretrained weights of `arch` expect: timm's own statistics, else ImageNet's."""
    if isinstance(arch, str) and not _is_torchvision(arch):
        from ember.vision.models import is_model

        if not is_model(arch):
            import timm

            cfg = timm.models.get_pretrained_cfg(arch)
            if cfg is not None and cfg.mean is not None:
                return list(cfg.mean), list(cfg.std)
    return list(imagenet_stats[0]), list(imagenet_stats[1])
