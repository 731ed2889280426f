"""More optimizers: RAdam, QHAdam, Lamb, and the Lookahead and LARC wrappers (``ranger`` is Lookahead over RAdam).

Each is an ``opt_func`` (see :mod:`ember.learner.optim`): it takes param-group dicts, ``lr`` and ``wd``, and keeps
its momentum as ``betas[0]`` of every group, so that :func:`~ember.learner.optim.set_hyper` and one-cycle schedules
move it. Weight decay is decoupled from the gradient (``p *= 1 - lr * wd``) unless ``decouple_wd=False`` asks for
L2 decay; as in fastai, it is off by default (``wd=0``) for RAdam, QHAdam and Lamb, and 0.01 for ranger. The
wrappers share their parameter groups and state with the optimizer they wrap, so schedules, grad scalers,
checkpoints and ``lr_find`` treat them as any torch optimizer. They are not opt_funcs themselves: wrap a built
optimizer, as in ``lambda params, **kw: Lookahead(QHAdam(params, **kw))``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ember.core.errors import ConfigError, expected
from ember.learner.optim import _as_groups, _build, _scalar, check_rate

__all__ = ["RAdam", "QHAdam", "Lamb", "Lookahead", "Larc", "ranger"]

_SLOW = "lookahead_slow"  # the key of Lookahead's slow weights in the wrapped optimizer's per-parameter state
_COUNT = "lookahead_count"  # the key of Lookahead's step counter in its state dict


# -------------------------------------------------------------------------------------------------
# argument checks
# -------------------------------------------------------------------------------------------------
def _check_fraction(value: Any, name: str, closed: bool = False, positive: bool = False) -> float:
    """`value` as a float in [0, 1) ([0, 1] when `closed`; the lower end excluded when `positive`)."""
    v = _scalar(value)
    low_ok = v is not None and (v > 0 if positive else v >= 0)
    high_ok = v is not None and (v <= 1 if closed else v < 1)
    if not (low_ok and high_ok):
        interval = ("(0, " if positive else "[0, ") + ("1]" if closed else "1)")
        raise ConfigError(expected(f"a number in {interval}", name, value))
    return float(v)


def _check_adam_args(lr: Any, wd: Any, mom: Any, sqr_mom: Any, eps: Any) -> tuple[float, float, float, float, float]:
    """The hyper-parameters every Adam-like optimizer here takes, checked and as floats."""
    return (
        check_rate(lr, "lr"),
        check_rate(wd, "wd"),
        _check_fraction(mom, "mom"),
        _check_fraction(sqr_mom, "sqr_mom"),
        check_rate(eps, "eps"),
    )


class _Summary:
    """A value shown in an error message by a short description instead of its (possibly huge) repr."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.text}>"


def _summarize(value: Any) -> _Summary:
    """`value` described in a few words: ``a list of 2 tensors``, ``a generator``, ``a Tensor of shape (3, 2)``."""
    if isinstance(value, torch.Tensor):
        return _Summary(f"a Tensor of shape {tuple(value.shape)}")
    if isinstance(value, (list, tuple)):
        kinds = {_kind(v) for v in value}
        what = kinds.pop() if len(kinds) == 1 else "value"
        plural = "" if len(value) == 1 else "s"
        return _Summary(f"a {type(value).__name__} of {len(value)} {what}{plural}")
    return _Summary(f"a {type(value).__name__}")


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, dict):
        return "param-group dict"
    return type(value).__name__


def _check_wrapped(
    opt: Any, extra: dict[str, Any], wrapper: str, inner: str, own: tuple[str, ...]
) -> torch.optim.Optimizer:
    """`opt` when it is a built optimizer and no other argument came (a wrapper passed as an opt_func gets
    parameters and ``lr=``); a ConfigError that shows how to use the wrapper as an opt_func otherwise. `own` are
    the wrapper's other arguments, named when a built optimizer comes with unknown ones (a typo)."""
    hint = (
        f"{wrapper} wraps a built optimizer, e.g. {wrapper}({inner}(model.parameters())); as an opt_func use "
        f"`lambda params, **kw: {wrapper}({inner}(params, **kw))`."
    )
    names = ", ".join(f"`{k}`" for k in extra)
    if extra and isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(f"{wrapper} got unknown arguments {names}; valid: {', '.join(own)}.")
    if extra:
        raise ConfigError(
            f"{wrapper} does not take {names}: it is not an opt_func itself (it was given {_summarize(opt)!r} as "
            f"`opt`). {hint}"
        )
    if not isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(expected("a built torch.optim.Optimizer", "opt", _summarize(opt), hint=hint))
    return opt


# -------------------------------------------------------------------------------------------------
# RAdam (torch's) and ranger
# -------------------------------------------------------------------------------------------------
def RAdam(  # noqa: N802 (named like the optimizer users know)
    params: Iterable[Any],
    lr: float = 1e-3,
    wd: float = 0.0,
    mom: float = 0.9,
    sqr_mom: float = 0.99,
    eps: float = 1e-5,
    decouple_wd: bool = True,
) -> torch.optim.Optimizer:
    """Rectified Adam (`torch.optim.RAdam`, foreach): plain momentum SGD while the variance estimate is unreliable.

    The adaptive step is switched on once the length of the approximated moving average, rho_t, passes 5 (after
    about 5 steps with ``sqr_mom=0.99``), with the same fixed threshold as fastai. Two differences from fastai's
    RAdam: torch adds `eps` to the square root of the raw second moment, not of the debiased one (so `eps` weighs
    up to ``1 / sqrt(1 - sqr_mom**step)`` times more; immaterial for eps=1e-5 unless gradients are tiny), and
    fastai's `beta` (SAdam: a softplus on the denominator, off by default) is not offered. The defaults are fastai's
    (no weight decay unless `wd` is given).

    Args:
        decouple_wd: decay the weights as ``p *= 1 - lr * wd`` (RAdamW); False adds ``wd * p`` to the gradient.

    Raises:
        ConfigError: for a negative rate or decay, or a momentum outside [0, 1).

    >>> learn = Learner(dls, model, opt_func=RAdam)  # doctest: +SKIP
    """
    lr, wd, mom, sqr_mom, eps = _check_adam_args(lr, wd, mom, sqr_mom, eps)
    groups = _as_groups(params)
    return _build(
        torch.optim.RAdam,
        groups,
        False,  # torch has no fused RAdam
        lr=lr,
        betas=(mom, sqr_mom),
        eps=eps,
        weight_decay=wd,
        decoupled_weight_decay=bool(decouple_wd),
    )


def ranger(
    params: Iterable[Any],
    lr: float = 1e-3,
    wd: float = 0.01,
    mom: float = 0.95,
    sqr_mom: float = 0.99,
    eps: float = 1e-6,
    k: int = 6,
    alpha: float = 0.5,
) -> Lookahead:
    """Ranger: :class:`Lookahead` over :func:`RAdam`, with fastai's defaults (``mom=0.95``, ``eps=1e-6``).

    The optimizer of flat-then-cosine training (``fit_flat_cos``); `k` and `alpha` are Lookahead's.

    >>> learn = Learner(dls, model, opt_func=ranger)  # doctest: +SKIP
    >>> learn.fit_flat_cos(5, 4e-3)  # doctest: +SKIP
    """
    return Lookahead(RAdam(params, lr=lr, wd=wd, mom=mom, sqr_mom=sqr_mom, eps=eps), k=k, alpha=alpha)


# -------------------------------------------------------------------------------------------------
# QHAdam and Lamb
# -------------------------------------------------------------------------------------------------
def _closure_loss(closure: Callable[[], Any] | None) -> Any:
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _adam_state(
    opt: torch.optim.Optimizer, group: dict[str, Any]
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[int]]:
    """The parameters of `group` that have a gradient, their gradients, moments and step numbers (after this step)."""
    params, grads, avgs, sqr_avgs, steps = [], [], [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise ConfigError(
                f"{type(opt).__name__} does not support sparse gradients (an nn.Embedding with sparse=True); "
                "use torch.optim.SparseAdam for those parameters."
            )
        state = opt.state[p]
        if len(state) == 0:
            state["step"] = torch.tensor(0.0)  # a float32 CPU scalar, as torch's own optimizers keep it
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        params.append(p)
        grads.append(p.grad)
        avgs.append(state["exp_avg"])
        sqr_avgs.append(state["exp_avg_sq"])
        steps.append(int(state["step"].item()))  # a CPU tensor: no device sync
    return params, grads, avgs, sqr_avgs, steps


def _update_moments(
    avgs: list[torch.Tensor], sqr_avgs: list[torch.Tensor], grads: list[torch.Tensor], mom: float, sqr_mom: float
) -> None:
    """m = mom * m + (1 - mom) * g;  v = sqr_mom * v + (1 - sqr_mom) * g**2 (in place)."""
    torch._foreach_lerp_(avgs, grads, 1 - mom)
    torch._foreach_mul_(sqr_avgs, sqr_mom)
    torch._foreach_addcmul_(sqr_avgs, grads, grads, value=1 - sqr_mom)


class _AdamLike(torch.optim.Optimizer):
    """An Adam-like optimizer written here: each step walks the groups, updates their moments' state
    (:func:`_adam_state`) and hands the group's tensors to :meth:`_update`, the rule of the subclass."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss when given one."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            params, grads, avgs, sqr_avgs, steps = _adam_state(self, group)
            if params:
                self._update(group, params, grads, avgs, sqr_avgs, steps)
        return loss

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        avgs: list[torch.Tensor],
        sqr_avgs: list[torch.Tensor],
        steps: list[int],
    ) -> None:
        """Update `params` (the group's parameters with a gradient) and their moments, in place."""
        raise NotImplementedError


class QHAdam(_AdamLike):
    """Quasi-hyperbolic Adam (Ma & Yarats, 2019): Adam whose step mixes the raw gradient into both moments.

    With m, v Adam's moving averages of g and g**2 and m_hat, v_hat their bias-corrected values, a step is::

        p -= lr * ((1 - nu_1) * g + nu_1 * m_hat) / (sqrt((1 - nu_2) * g**2 + nu_2 * v_hat) + eps)

    ``nu_1 = nu_2 = 1`` is Adam (AdamW with decoupled decay); ``mom=sqr_mom=0.999``, ``nu_1=0.7`` and ``nu_2=1``
    are the paper's recommended values. The arguments, their names and their defaults are fastai's (no weight decay
    unless `wd` is given). Momentum (`mom`) is ``betas[0]`` of every group; ``nu_1`` and ``nu_2`` are hyper-parameters
    of every group, so ``set_hyper(opt, "nu_1", 0.8)`` moves them.

    Args:
        nu_1: the weight of the moving average of g against the current gradient in the numerator, in [0, 1].
        nu_2: the weight of the moving average of g**2 against the current g**2 in the denominator, in [0, 1].
        decouple_wd: decay the weights as ``p *= 1 - lr * wd``; False adds ``wd * p`` to the gradient (L2).

    Raises:
        ConfigError: for a negative rate or decay, a momentum outside [0, 1) or a nu outside [0, 1].
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        wd: float = 0.0,
        mom: float = 0.999,
        sqr_mom: float = 0.999,
        nu_1: float = 0.7,
        nu_2: float = 1.0,
        eps: float = 1e-8,
        decouple_wd: bool = True,
    ) -> None:
        lr, wd, mom, sqr_mom, eps = _check_adam_args(lr, wd, mom, sqr_mom, eps)
        defaults = {
            "lr": lr,
            "betas": (mom, sqr_mom),
            "nu_1": _check_fraction(nu_1, "nu_1", closed=True),
            "nu_2": _check_fraction(nu_2, "nu_2", closed=True),
            "eps": eps,
            "weight_decay": wd,
            "decoupled_weight_decay": bool(decouple_wd),
        }
        super().__init__(_as_groups(params), defaults)

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        avgs: list[torch.Tensor],
        sqr_avgs: list[torch.Tensor],
        steps: list[int],
    ) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        mom, sqr_mom = group["betas"]
        nu1, nu2 = group["nu_1"], group["nu_2"]
        if wd != 0:
            if group["decoupled_weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)
        _update_moments(avgs, sqr_avgs, grads, mom, sqr_mom)
        # numerator: nu1 * m / (1 - mom**t) + (1 - nu1) * g
        num = torch._foreach_mul(avgs, [nu1 / (1 - mom**t) for t in steps])
        torch._foreach_add_(num, grads, alpha=1 - nu1)
        # denominator: sqrt(nu2 * v / (1 - sqr_mom**t) + (1 - nu2) * g**2) + eps
        den = torch._foreach_mul(sqr_avgs, [nu2 / (1 - sqr_mom**t) for t in steps])
        torch._foreach_addcmul_(den, grads, grads, value=1 - nu2)
        torch._foreach_sqrt_(den)
        torch._foreach_add_(den, eps)
        torch._foreach_addcdiv_(params, num, den, value=-lr)


def _trust_ratios(w_norms: list[torch.Tensor], u_norms: list[torch.Tensor], clip: float) -> list[torch.Tensor]:
    """min(||w|| / ||u||, clip) per tensor, or 1 where either norm is 0; on the device, without a sync."""
    if len({t.device for t in w_norms}) == 1:
        w, u = torch.stack(w_norms), torch.stack(u_norms)  # (n_params,)
        return list(torch.where((w > 0) & (u > 0), (w / u).clamp(max=clip), 1.0).unbind())
    return [torch.where((w > 0) & (u > 0), (w / u).clamp(max=clip), 1.0) for w, u in zip(w_norms, u_norms)]


class Lamb(_AdamLike):
    """LAMB (You et al., 2019): Adam whose step is rescaled per tensor by the trust ratio ``||w|| / ||step||``.

    The variant of fastai, whose numbers it matches: weight decay is decoupled and applied first
    (``p *= 1 - lr * wd``), the step is Adam's debiased ``m_hat / (sqrt(v_hat) + eps)``, and the trust ratio
    (computed on the decayed weights) is clipped at 10 and is 1 when either norm is 0 (a tensor initialised to
    zeros, such as a bias, moves at the plain rate). For large-batch training, where one learning rate does not
    suit every layer. Momentum (`mom`) is ``betas[0]`` of every group. The defaults are fastai's (no weight decay
    unless `wd` is given).

    Raises:
        ConfigError: for a negative rate or decay, or a momentum outside [0, 1).
    """

    max_trust_ratio = 10.0

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        wd: float = 0.0,
        mom: float = 0.9,
        sqr_mom: float = 0.99,
        eps: float = 1e-5,
    ) -> None:
        lr, wd, mom, sqr_mom, eps = _check_adam_args(lr, wd, mom, sqr_mom, eps)
        defaults = {"lr": lr, "betas": (mom, sqr_mom), "eps": eps, "weight_decay": wd}
        super().__init__(_as_groups(params), defaults)

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        avgs: list[torch.Tensor],
        sqr_avgs: list[torch.Tensor],
        steps: list[int],
    ) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        mom, sqr_mom = group["betas"]
        if wd != 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        _update_moments(avgs, sqr_avgs, grads, mom, sqr_mom)
        # the Adam step u = m_hat / (sqrt(v_hat) + eps)
        upd = torch._foreach_div(avgs, [1 - mom**t for t in steps])
        den = torch._foreach_div(sqr_avgs, [1 - sqr_mom**t for t in steps])
        torch._foreach_sqrt_(den)
        torch._foreach_add_(den, eps)
        torch._foreach_div_(upd, den)
        ratios = _trust_ratios(torch._foreach_norm(params), torch._foreach_norm(upd), self.max_trust_ratio)
        torch._foreach_mul_(upd, ratios)
        torch._foreach_add_(params, upd, alpha=-lr)


# -------------------------------------------------------------------------------------------------
# wrappers: Lookahead and Larc
# -------------------------------------------------------------------------------------------------
class _Wrapper(torch.optim.Optimizer):
    """An optimizer that adds a rule around another one and shares its parameter groups and state.

    `param_groups` and `state` are the wrapped optimizer's (so ``set_hyper``, schedules, ``GradScaler.unscale_``
    and callbacks that walk the state see and move the real ones). ``torch.optim.Optimizer.__init__`` is not called:
    it would build groups of its own; the attributes torch's base methods read are set here instead. The wrapper
    does not claim ``_step_supports_amp_scaling``: ``GradScaler.step`` unscales the gradients itself, skips the
    step on an overflow and otherwise calls :meth:`step` plainly.
    """

    def __init__(self, opt: torch.optim.Optimizer) -> None:
        self.opt = opt
        self.defaults = opt.defaults
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        self._patch_step_function()  # step pre/post hooks and profiler names, as for any torch optimizer

    # The wrapped optimizer replaces its `param_groups` and `state` objects in `load_state_dict`: read them through.
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.opt.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.opt.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.opt.state

    @state.setter
    def state(self, value: Any) -> None:
        self.opt.state = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.opt.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        return self.opt.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.opt.load_state_dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()  # not the base class's (defaults, state, param_groups): those are the inner's

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.opt.param_groups for p in g["params"]]


class Lookahead(_Wrapper):
    """Lookahead (Zhang et al., 2019): `opt` takes `k` fast steps, then the weights move back toward where the
    cycle started, to ``slow + alpha * (fast - slow)``, and the next cycle starts there.

    A torch optimizer everywhere ember uses one: it shares `param_groups` and `state` with `opt` (schedules and
    ``set_hyper`` move the inner optimizer's rates and momentum), works with ``GradScaler.step`` (a step skipped
    for an overflow does not count toward `k`), and its ``state_dict`` holds the inner optimizer's state, the slow
    weights and the step counter, so a checkpoint resumes exactly. The slow weights are kept in `opt`'s
    per-parameter state (under ``"lookahead_slow"``), so callbacks that move or convert that state move them too.

    The slow weights are taken from the weights at the start of every cycle (for fastai they are kept from the last
    sync): the same updates. Weights loaded mid-cycle would be pulled back toward the slow weights they replaced at
    the end of the cycle, so :meth:`restart_cycle` starts a new cycle from the weights as they are: ``learn.load``
    calls it whenever it loads weights without the optimizer's state (``SaveModelCallback`` reloading the best
    model, say); after loading weights yourself (``model.load_state_dict``), call ``learn.opt.restart_cycle()``.
    A parameter first trained mid-cycle (unfrozen) joins at the next cycle.

    Args:
        opt: the optimizer to wrap (built over the parameters).
        k: fast steps per cycle, an int >= 1.
        alpha: how far the weights move from the slow ones toward the fast ones at the end of a cycle, in (0, 1];
            1 is `opt` alone.

    Raises:
        ConfigError: for an `opt` that is not a torch optimizer (it is not an opt_func itself: use
            ``lambda params, **kw: Lookahead(RAdam(params, **kw))``), `k` < 1 or `alpha` outside (0, 1].

    >>> opt = Lookahead(RAdam(model.parameters()), k=6, alpha=0.5)  # doctest: +SKIP
    """

    def __init__(self, opt: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5, **kwargs: Any) -> None:
        opt = _check_wrapped(opt, kwargs, "Lookahead", "RAdam", ("opt", "k", "alpha"))
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(expected("an int >= 1", "k", k, hint="For example k=6."))
        self.k = k
        self.alpha = _check_fraction(alpha, "alpha", closed=True, positive=True)
        self.count = 0  # steps taken (skipped ones excluded); a cycle ends when it is a multiple of k
        super().__init__(opt)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the wrapped optimizer; every `k`-th also pulls the weights toward the slow ones."""
        new_slow = self._start_cycle() if self.count % self.k == 0 else []
        loss = self.opt.step() if closure is None else self.opt.step(closure)
        state = self.opt.state
        for p, slow in new_slow:  # after the step: the inner optimizer initialises a parameter's state when empty
            state[p][_SLOW] = slow
        self.count += 1
        if self.count % self.k == 0:
            self._sync()
        return loss

    def restart_cycle(self) -> None:
        """Start a new cycle at the next step: the slow weights are taken again from the weights as they are then.

        Call it after changing the weights other than by a step (loading them): otherwise the end of the current
        cycle pulls them back toward the slow weights of the old ones. ``Learner.load`` calls it for you.
        """
        self.count = 0

    @torch.no_grad()
    def _start_cycle(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Copy the weights into their slow copies; new copies (for parameters without one) are returned."""
        slows, fasts, new = [], [], []
        state = self.opt.state
        for p in self._params():
            st = state.get(p)  # .get: no empty entry for a parameter the inner optimizer has not seen
            if st is not None and _SLOW in st:
                slows.append(st[_SLOW])
                fasts.append(p)
            elif p.grad is not None:
                new.append((p, p.detach().clone(memory_format=torch.preserve_format)))
        if slows:
            torch._foreach_copy_(slows, fasts)
        return new

    @torch.no_grad()
    def _sync(self) -> None:
        """fast = slow + alpha * (fast - slow), for every parameter with a slow copy."""
        slows, fasts = [], []
        state = self.opt.state
        for p in self._params():
            st = state.get(p)
            if st is not None and _SLOW in st:
                slows.append(st[_SLOW])
                fasts.append(p)
        if fasts and self.alpha != 1:
            torch._foreach_lerp_(fasts, slows, 1 - self.alpha)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict (slow weights in its per-parameter state) and the step counter."""
        sd = self.opt.state_dict()
        sd[_COUNT] = self.count
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (a state without a counter starts a new cycle)."""
        state_dict = dict(state_dict)
        count = state_dict.pop(_COUNT, 0)
        self.opt.load_state_dict(state_dict)
        self.count = int(count)

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}) over {self.opt!r}"


class Larc(_Wrapper):
    """LARS (You et al., 2017) and its clipped form LARC: scale each tensor's gradient by a layer-wise rate.

    The factor is ``trust_coeff * ||w|| / (||g|| + wd * ||w|| + eps)`` (`wd` the group's weight decay), capped at
    1 when `clip` (LARC; without the cap it is LARS), and 1 for a tensor whose weights or gradient are all zero
    (fastai gives those a rate of 0, so zero-initialised biases would never move). As fastai's, the factor
    multiplies the group's rate; unlike fastai's, which scales the momentum buffer at each step, the gradient is
    scaled before `opt` sees it (so momentum averages scaled gradients), and `opt` applies its own weight decay.
    Use it over :func:`~ember.learner.optim.SGD` for large-batch training.

    Raises:
        ConfigError: for an `opt` that is not a torch optimizer (it is not an opt_func itself: use
            ``lambda params, **kw: Larc(SGD(params, **kw))``) or a `trust_coeff` that is not positive.

    >>> opt = Larc(SGD(model.parameters(), lr=0.1), trust_coeff=0.02)  # doctest: +SKIP
    """

    def __init__(
        self,
        opt: torch.optim.Optimizer,
        trust_coeff: float = 0.02,
        clip: bool = True,
        eps: float = 1e-8,
        **kwargs: Any,
    ) -> None:
        opt = _check_wrapped(opt, kwargs, "Larc", "SGD", ("opt", "trust_coeff", "clip", "eps"))
        trust = _scalar(trust_coeff)
        if trust is None or not trust > 0 or trust == float("inf"):
            raise ConfigError(expected("a positive number", "trust_coeff", trust_coeff, hint="For example 0.02."))
        self.trust_coeff, self.clip, self.eps = trust, bool(clip), check_rate(eps, "eps")
        super().__init__(opt)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Scale the gradients by their layer-wise factors, then step the wrapped optimizer."""
        loss = _closure_loss(closure)
        with torch.no_grad():
            for group in self.opt.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                grads = [p.grad for p in params]
                w_norms, g_norms = torch._foreach_norm(params), torch._foreach_norm(grads)
                wd = group.get("weight_decay", 0.0)
                torch._foreach_mul_(grads, self._factors(w_norms, g_norms, wd))
        self.opt.step()
        return loss

    def _factors(self, w_norms: list[torch.Tensor], g_norms: list[torch.Tensor], wd: float) -> list[torch.Tensor]:
        """The factor of every tensor; on one device, all at once (a handful of kernels, not a few per tensor)."""
        if len({t.device for t in w_norms}) == 1:
            w, g = torch.stack(w_norms), torch.stack(g_norms)  # (n_params,)
            return list(self._factor(w, g, wd).unbind())
        return [self._factor(w, g, wd) for w, g in zip(w_norms, g_norms)]

    def _factor(self, w: torch.Tensor, g: torch.Tensor, wd: float) -> torch.Tensor:
        """trust_coeff * ||w|| / (||g|| + wd * ||w|| + eps), capped at 1 with `clip`; 1 where either norm is 0."""
        f = self.trust_coeff * w / (g + wd * w + self.eps)
        if self.clip:
            f = f.clamp(max=1.0)
        return torch.where((w > 0) & (g > 0), f, 1.0)

    def __repr__(self) -> str:
        return f"Larc(trust_coeff={self.trust_coeff}, clip={self.clip}) over {self.opt!r}"
