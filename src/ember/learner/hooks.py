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

import math
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
    """Tensors detached and copied (a later in-place op, such as ``ReLU(inplace=True)``, must not change them)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        return x.cpu() if cpu and x.device.type != "cpu" else x.clone()
    if isinstance(x, (list, tuple)):
        return type(x)(_detached(v, cpu) for v in x)
    return x


class Hook:
    """Run ``fn(module, inputs, outputs)`` on each forward of `module` and keep its result in :attr:`stored`; with
    ``is_forward=False``, ``fn(module, None, grad)`` on the gradient of its output once backward reaches it.

    Args:
        fn: what to keep; default: the output (or its gradient).
        detach: keep a detached copy of what `fn` returns (the default), so that keeping it holds no autograd graph
            and later in-place operations do not change it.
        cpu: move it to the CPU.
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
        # Gradients through a hook on the output tensor: a module backward hook breaks on the in-place
        # operations (ReLU(inplace=True)) that often follow a layer.
        self._handle = module.register_forward_hook(self._call if is_forward else self._watch_grad)
        self.removed = False

    def _keep(self, value: Any) -> None:
        self.stored = _detached(value, self.cpu) if self.detach else value

    def _call(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        if self.detach:
            with torch.no_grad():
                self._keep(self.fn(module, inputs, outputs))
        else:
            self._keep(self.fn(module, inputs, outputs))

    def _watch_grad(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        out = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda grad: self._keep(self.fn(module, None, grad)))

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
    """One :class:`Hook` per module, with the same arguments; ``stored`` lists what each kept.

    A container (``nn.Sequential``, ``nn.ModuleList``) stands for its children: one hook each.
    """

    def __init__(
        self,
        modules: Iterable[nn.Module],
        fn: Callable[[nn.Module, Any, Any], Any] | None = None,
        is_forward: bool = True,
        detach: bool = True,
        cpu: bool = False,
    ) -> None:
        if isinstance(modules, (nn.Sequential, nn.ModuleList)):
            modules = list(modules.children())
        elif isinstance(modules, nn.Module):
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
        every: record every `every` training batches of the fit.

    Attributes:
        stats: a ``(n_recorded, n_layers, 3)`` tensor: mean, std and share near zero; NaN for a layer that did not
            run in that batch.
        steps: the training step (counted over the fit) of each recorded row.
        names: each followed layer's name in the model.
    """

    order = 60
    run_valid = False
    run_in_lr_find = False

    def __init__(self, modules: Sequence[nn.Module] | None = None, near_zero: float = 1e-2, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(expected("a positive int", "every", every))
        self.modules = list(modules) if modules is not None else None
        self.near_zero, self.every = float(near_zero), every
        self.stats = torch.zeros(0, 0, 3)
        self.steps: list[int] = []
        self.names: list[str] = []
        self._hooks: Hooks | None = None
        self._pending: list[torch.Tensor] = []
        self._rows: list[torch.Tensor] = []
        self._recording = False

    def _stat(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor | None:
        if not self._recording:
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
        self.cleanup_fit()  # hooks of an earlier fit, if it could not remove them
        model = self.learn.model
        modules = self.modules if self.modules is not None else _layers_with_weights(model)
        if not modules:
            raise ConfigError("ActivationStats found no layer to follow: pass modules=[...].")
        names = {m: n for n, m in model.named_modules()}
        self.names = [names.get(m, type(m).__name__) for m in modules]
        self._hooks = Hooks(modules, self._stat)
        self._rows: list[torch.Tensor] = []
        self._pending, self.steps, self._step = [], [], 0

    def before_batch(self) -> None:
        self._recording = self._step % self.every == 0
        for h in self._hooks or []:
            h.stored = None

    def after_batch(self) -> None:
        if self._hooks is None or not self.learn.training:
            return
        if self._recording:
            stored = self._hooks.stored
            ref = next((s for s in stored if s is not None), None)
            if ref is not None:  # NaN for a layer that did not run in this batch
                self._pending.append(
                    torch.stack([s if s is not None else torch.full_like(ref, math.nan) for s in stored])
                )
                self.steps.append(self._step)
        self._recording = False
        self._step += 1

    def after_epoch(self) -> None:
        if self._pending:
            self._rows.append(torch.stack(self._pending).cpu())  # the one transfer of the epoch
            self._pending = []
        self.stats = torch.cat(self._rows) if self._rows else torch.zeros(0, len(self.names), 3)

    def after_fit(self) -> None:
        self.after_epoch()

    def cleanup_fit(self) -> None:
        """Take the hooks off, however the fit ended."""
        self._recording = False
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def plot_layer_stats(self, idx: int = -1, fname: str | None = None) -> Any:
        """Plot the mean, standard deviation and share near zero of layer `idx` over the batches."""
        import matplotlib.pyplot as plt

        if not len(self.stats):
            raise DataError("No statistics yet: train with this callback first (learn.fit(..., cbs=stats)).")
        if not -len(self.names) <= idx < len(self.names):
            raise ConfigError(expected(f"a layer index in [-{len(self.names)}, {len(self.names)})", "idx", idx))
        fig, axs = plt.subplots(1, 3, figsize=(12, 3))
        for ax, k, title in zip(axs, range(3), ("mean", "std", f"share |x| <= {self.near_zero:g}")):
            ax.plot(self.steps[: len(self.stats)], self.stats[:, idx, k].numpy())
            ax.set_title(title)
            ax.set_xlabel("training step")
        fig.suptitle(self.names[idx])
        fig.tight_layout()
        if fname is not None:
            fig.savefig(fname, dpi=100)
        return fig
