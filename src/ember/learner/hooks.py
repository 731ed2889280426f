"""Hooks: read what layers compute (activations, gradients) without changing the model, and `ActivationStats`,
which follows the statistics of every layer's output during training.

A :class:`Hook` wraps a PyTorch forward (or backward) hook: on every call it keeps what its function returns in
``hook.stored``. Hooks are removed with ``remove()`` or by leaving a ``with`` block, so a model never keeps a
hook, or a reference to a batch's activations, longer than it is needed.

>>> with hook_output(model[0]) as h:                       # doctest: +SKIP
...     model(x)
...     features = h.stored                                # the first layer's output, detached
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.callback import Callback

__all__ = ["Hook", "Hooks", "hook_output", "hook_outputs", "ActivationStats"]


def _keep_output(module: nn.Module, inputs: Any, output: Any) -> Any:
    return output


def _detached(x: Any, cpu: bool) -> Any:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return x.cpu() if cpu else x
    if isinstance(x, (list, tuple)):
        return type(x)(_detached(v, cpu) for v in x)
    return x


class Hook:
    """Run ``fn(module, inputs, outputs)`` on each forward (or, with ``is_forward=False``, backward) of `module`
    and keep its result in :attr:`stored`.

    Args:
        fn: what to keep; default: the output (for a backward hook, the gradients of the outputs).
        detach: detach tensors (the default), so that keeping them holds no autograd graph.
        cpu: move them to the CPU.
    """

    def __init__(
        self,
        module: nn.Module,
        fn: Callable[[nn.Module, Any, Any], Any] | None = None,
        is_forward: bool = True,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise ConfigError(expected("an nn.Module", "module", type(module).__name__))
        if fn is not None and not callable(fn):
            raise ConfigError(expected("a function (module, inputs, outputs) -> value", "fn", fn))
        self.module, self.fn, self.is_forward = module, fn or _keep_output, is_forward
        self.detach, self.cpu = detach, cpu
        self.stored: Any = None
        if is_forward:
            self._handle = module.register_forward_hook(self._call)
        else:
            self._handle = module.register_full_backward_hook(self._call)
        self.removed = False

    def _call(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        if self.detach:
            inputs, outputs = _detached(inputs, self.cpu), _detached(outputs, self.cpu)
        self.stored = self.fn(module, inputs, outputs)

    def remove(self) -> None:
        """Take the hook off the module (calling it again does nothing)."""
        if not self.removed:
            self._handle.remove()
            self.removed = True

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        kind = "forward" if self.is_forward else "backward"
        return f"Hook({type(self.module).__name__}, {kind}{', removed' if self.removed else ''})"


class Hooks:
    """One :class:`Hook` per module, with the same arguments; ``stored`` lists what each kept."""

    def __init__(
        self,
        modules: Iterable[nn.Module],
        fn: Callable[[nn.Module, Any, Any], Any] | None = None,
        is_forward: bool = True,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        if isinstance(modules, nn.Module):
            modules = [modules]
        self.hooks = [Hook(m, fn, is_forward, detach, cpu) for m in modules]

    @property
    def stored(self) -> list[Any]:
        return [h.stored for h in self.hooks]

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Hooks({len(self.hooks)} modules)"


def hook_output(module: nn.Module, detach: bool = True, cpu: bool = False, grad: bool = False) -> Hook:
    """Keep `module`'s output (``grad=True``: the gradient of its output, after a backward pass)."""
    return Hook(module, _keep_output, is_forward=not grad, detach=detach, cpu=cpu)


def hook_outputs(modules: Iterable[nn.Module], detach: bool = True, cpu: bool = False, grad: bool = False) -> Hooks:
    """Keep every module's output (or, with ``grad=True``, the gradients of their outputs)."""
    return Hooks(modules, _keep_output, is_forward=not grad, detach=detach, cpu=cpu)


def _layers_with_weights(model: nn.Module) -> list[nn.Module]:
    return [
        m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor) and not list(m.children())
    ]


class ActivationStats(Callback):
    """Follow, for every training batch, the mean, the standard deviation and the share of values near zero
    (``|x| <= near_zero``) of the outputs of some layers.

    A healthy network keeps its activations' means near 0 and their spread steady, layer after layer; means and
    standard deviations that grow, collapse or oscillate batch after batch, and layers whose outputs are almost all
    zero (dead ReLUs), show a training that the learning rate or the initialization is hurting.

    The statistics stay on the device and come to the CPU once per epoch.

    Args:
        modules: the layers to follow (default: every leaf layer with a weight: convolutions, linear layers,
            normalizations, embeddings).
        near_zero: what counts as zero in the third statistic.
        every: record every `every` training batches.

    Attributes:
        stats: a ``(n_batches, n_layers, 3)`` tensor: mean, std and share near zero.
        names: each followed layer's name in the model.
    """

    order = 60
    run_valid = False

    def __init__(self, modules: Sequence[nn.Module] | None = None, near_zero: float = 1e-2, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(expected("a positive int", "every", every))
        self.modules, self.near_zero, self.every = modules, float(near_zero), every
        self.stats = torch.zeros(0, 0, 3)
        self.names: list[str] = []
        self._hooks: Hooks | None = None
        self._pending: list[torch.Tensor] = []

    def _stat(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor | None:
        if not (self.learn.training and self.learn.iter % self.every == 0):
            return None
        if isinstance(output, (tuple, list)):
            output = output[0]
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return None
        x = output.float()
        return torch.stack(
            [x.mean(), x.std() if x.numel() > 1 else x.new_zeros(()), (x.abs() <= self.near_zero).float().mean()]
        )

    def before_fit(self) -> None:
        model = self.learn.model
        modules = list(self.modules) if self.modules is not None else _layers_with_weights(model)
        if not modules:
            raise ConfigError("ActivationStats found no layer to follow: pass modules=[...].")
        names = {m: n for n, m in model.named_modules()}
        self.names = [names.get(m, type(m).__name__) for m in modules]
        self._hooks = Hooks(modules, self._stat)
        self._rows: list[torch.Tensor] = []
        self._pending = []

    def after_batch(self) -> None:
        if self._hooks is None or not self.learn.training or self.learn.iter % self.every:
            return
        stored = self._hooks.stored
        if any(s is None for s in stored):
            return  # a layer did not run this batch (or gave no float output)
        self._pending.append(torch.stack(stored))
        for h in self._hooks:
            h.stored = None

    def after_epoch(self) -> None:
        if self._pending:
            self._rows.append(torch.stack(self._pending).cpu())  # the one transfer of the epoch
            self._pending = []
        self.stats = torch.cat(self._rows) if self._rows else torch.zeros(0, len(self.names), 3)

    def after_fit(self) -> None:
        self.after_epoch()
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def after_cancel_fit(self) -> None:
        self.after_fit()

    def plot_layer_stats(self, idx: int = -1, fname: str | None = None) -> Any:
        """Plot the mean, standard deviation and share near zero of layer `idx` over the batches."""
        import matplotlib.pyplot as plt

        if not len(self.stats):
            raise DataError("No statistics yet: train with this callback first (learn.fit(..., cbs=stats)).")
        if not -len(self.names) <= idx < len(self.names):
            raise ConfigError(expected(f"a layer index in [-{len(self.names)}, {len(self.names)})", "idx", idx))
        fig, axs = plt.subplots(1, 3, figsize=(12, 3))
        for ax, k, title in zip(axs, range(3), ("mean", "std", f"share |x| <= {self.near_zero:g}")):
            ax.plot(self.stats[:, idx, k].numpy())
            ax.set_title(title)
            ax.set_xlabel("batch")
        fig.suptitle(self.names[idx])
        fig.tight_layout()
        if fname is not None:
            fig.savefig(fname, dpi=100)
        return fig
