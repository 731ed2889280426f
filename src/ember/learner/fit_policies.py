"""The learner's training policies: :class:`FitPoliciesMixin`, a base of :class:`~ember.learner.Learner`.

It holds `fit_one_cycle`, `fit_flat_cos`, `fit_sgdr`, `fine_tune` and `lr_find`: each checks its arguments, builds
the hyper-parameter schedules of :mod:`ember.learner.schedule` for the optimizer's parameter groups, and trains with
the learner's own `fit` (or, for `lr_find`, :func:`ember.learner.lr_find.run_lr_find`). They rely on the attributes
and methods that :class:`~ember.learner.Learner` defines (`fit`, `create_opt`, `freeze`, `_check_trainable`, …);
the mixin is not meant to be used without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ember.core.errors import ConfigError, expected
from ember.learner.callback import Callback
from ember.learner.listify import _listify
from ember.learner.optim import check_rate, get_hyper, spread_lr
from ember.learner.schedule import ParamScheduler, flat_cos_scheds, one_cycle_scheds, sgdr_epochs, sgdr_scheds

__all__ = ["FitPoliciesMixin"]


class FitPoliciesMixin:
    """The learner's training policies: `fit_one_cycle`, `fit_flat_cos`, `fit_sgdr`, `fine_tune` and `lr_find`
    (see :class:`~ember.learner.Learner`, which inherits them)."""

    def _group_lrs(self, lr: float | slice | Sequence[float] | None, name: str = "lr") -> Any:
        if self.opt is None:
            self.create_opt()
        lrs = spread_lr(self.lr if lr is None else lr, len(self.opt.param_groups), name=name)
        return lrs[0] if len(lrs) == 1 else lrs

    def fit_one_cycle(
        self,
        n_epoch: int,
        lr_max: float | slice | Sequence[float] | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        wd: float | None = None,
        moms: tuple[float, float, float] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        checkpoint: str | None = None,
        resume: bool = False,
    ) -> None:
        """Train with the one-cycle policy: the learning rate warms up to `lr_max` along a cosine over
        `pct_start` of training, then anneals to ``lr_max / div_final``; momentum moves the opposite way.

        Momentum is scheduled only for parameter groups that have one: an optimizer without momentum, or built
        with a momentum of 0 (``SGD(mom=0)``, ember's ``RMSprop``), keeps it at 0."""
        self._check_trainable()  # before the optimizer is built
        for value, name in ((div, "div"), (div_final, "div_final")):
            if check_rate(value, name) == 0:
                raise ConfigError(expected("a positive number", name, value))
        lrs = self._group_lrs(lr_max, "lr_max")
        scheds = one_cycle_scheds(lrs, float(div), float(div_final), pct_start, moms or self.moms)
        with_mom = [m != 0 for m in get_hyper(self.opt, "mom")]
        if not any(with_mom):
            del scheds["mom"]
        elif not all(with_mom):
            mom_sched = scheds["mom"]
            scheds["mom"] = lambda pct: [float(mom_sched(pct)) if on else 0.0 for on in with_mom]
        self.fit(
            n_epoch,
            lr=lr_max,
            wd=wd,
            cbs=[ParamScheduler(scheds), *_listify(cbs)],
            reset_opt=reset_opt,
            checkpoint=checkpoint,
            resume=resume,
        )

    def fit_flat_cos(
        self,
        n_epoch: int,
        lr: float | slice | Sequence[float] | None = None,
        div_final: float = 1e5,
        pct_start: float = 0.75,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        checkpoint: str | None = None,
        resume: bool = False,
    ) -> None:
        """Train at a flat learning rate for `pct_start` of training, then anneal it along a cosine."""
        self._check_trainable()
        if check_rate(div_final, "div_final") == 0:
            raise ConfigError(expected("a positive number", "div_final", div_final))
        lrs = self._group_lrs(lr)
        self.fit(
            n_epoch,
            lr=lr,
            wd=wd,
            cbs=[ParamScheduler(flat_cos_scheds(lrs, div_final, pct_start)), *_listify(cbs)],
            reset_opt=reset_opt,
            checkpoint=checkpoint,
            resume=resume,
        )

    def fit_sgdr(
        self,
        n_cycles: int,
        cycle_len: int,
        lr_max: float | slice | Sequence[float] | None = None,
        cycle_mult: int = 2,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        wd: float | None = None,
        checkpoint: str | None = None,
        resume: bool = False,
    ) -> None:
        """Train with SGD with warm restarts (SGDR): `n_cycles` cycles, cycle ``i`` lasting
        ``cycle_len * cycle_mult**i`` epochs, in each of which the rate falls along a cosine from `lr_max` to 0.

        With the defaults, ``fit_sgdr(3, 1)`` trains 1 + 2 + 4 = 7 epochs. Checkpoints and ``resume`` work as in
        :meth:`fit`: the schedule follows the fraction of training done, so a resumed run continues its cycle.

        Args:
            lr_max: the rate at the start of every cycle (a rate, ``slice(lo, hi)`` or one per group; default
                ``learn.lr``).
            cycle_mult: how much longer each cycle is than the one before (1: all alike).

        Raises:
            ConfigError: `n_cycles`, `cycle_len` or `cycle_mult` is not a positive int.
        """
        self._check_trainable()
        n_epoch = sgdr_epochs(n_cycles, cycle_len, cycle_mult)  # checks the three counts before anything changes
        lrs = self._group_lrs(lr_max, "lr_max")
        self.fit(
            n_epoch,
            lr=lr_max,
            wd=wd,
            cbs=[ParamScheduler(sgdr_scheds(lrs, n_cycles, cycle_len, cycle_mult)), *_listify(cbs)],
            reset_opt=reset_opt,
            checkpoint=checkpoint,
            resume=resume,
        )

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100,
        pct_start: float = 0.3,
        div: float = 5.0,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> None:
        """Transfer learning: train the head with the body frozen for `freeze_epochs`, then unfreeze and
        train everything for `epochs` with discriminative rates from ``base_lr/2/lr_mult`` to ``base_lr/2``."""
        self._check_trainable()  # before the model is frozen
        base_lr = check_rate(base_lr, "base_lr")
        if check_rate(lr_mult, "lr_mult") == 0:
            raise ConfigError(expected("a positive number", "lr_mult", lr_mult))
        self.freeze()
        self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, wd=wd, cbs=cbs)
        base_lr /= 2
        self.unfreeze()
        self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, wd=wd, cbs=cbs)

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10,
        num_it: int = 100,
        stop_div: bool = True,
        show_plot: bool = True,
        suggest_funcs: Sequence[str] = ("valley", "steep", "minimum", "slide"),
    ) -> Any:
        """Train briefly with an exponentially growing learning rate and suggest good rates.

        The model and optimizer are restored afterwards, however the run ends. Callbacks with
        ``run_in_lr_find = False`` (early stopping, saving the best model, loggers, checkpoints) sit it out.
        Returns a ``SuggestedLRs`` named tuple with the requested suggestions; ``learn.recorder.plot_lr_find()``
        draws the curve with them marked.
        """
        from ember.learner.lr_find import run_lr_find

        self._check_trainable()
        return run_lr_find(self, start_lr, end_lr, num_it, stop_div, show_plot, suggest_funcs)
