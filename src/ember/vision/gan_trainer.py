"""The GAN's alternation inside the training loop: the two players as one model, their loss, and who trains when.

:class:`GANModule` runs the generator or the critic depending on its mode, :class:`GANLoss` is the loss of the
player in training, the switchers (:class:`FixedGANSwitcher`, :class:`AdaptiveGANSwitcher`) decide after each
batch which player trains the next one, and the :class:`GANTrainer` callback sets each batch up for that player
and freezes the other. :class:`~ember.vision.gan.GANLearner` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.callback import Callback
from ember.metrics import Metric
from ember.vision.gan_models import _check_count

__all__ = ["GANModule", "GANLoss", "FixedGANSwitcher", "AdaptiveGANSwitcher", "GANTrainer"]


# --------------------------------------------------------------------------------------------------------------
# the model and the loss the loop sees
# --------------------------------------------------------------------------------------------------------------


class GANModule(nn.Module):
    """The generator and the critic as one model: in generator mode it runs the generator, else the critic."""

    def __init__(self, generator: nn.Module, critic: nn.Module, gen_mode: bool = False) -> None:
        super().__init__()
        for name, m in (("generator", generator), ("critic", critic)):
            if not isinstance(m, nn.Module):
                raise ConfigError(expected("a torch.nn.Module", name, type(m).__name__))
        self.generator, self.critic, self.gen_mode = generator, critic, gen_mode

    def switch(self, gen_mode: bool | None = None) -> None:
        """Set the mode (``None`` flips it)."""
        self.gen_mode = (not self.gen_mode) if gen_mode is None else bool(gen_mode)

    def forward(self, *args: Any) -> torch.Tensor:
        return self.generator(*args) if self.gen_mode else self.critic(*args)


class GANLoss(nn.Module):
    """The loss of whichever player is training.

    In generator mode ``loss(fake, real) = gen_loss_func(critic(fake), fake, real)``; in critic mode (the loop
    passes the critic's scores of the real images and the generated images) ``loss(real_pred, fake) =
    crit_loss_func(real_pred, critic(fake))``.
    """

    def __init__(
        self,
        gen_loss_func: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        crit_loss_func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        gan_model: GANModule,
    ) -> None:
        super().__init__()
        for name, f in (("gen_loss_func", gen_loss_func), ("crit_loss_func", crit_loss_func)):
            if not callable(f):
                raise ConfigError(expected("a function", name, f))
        self.gen_loss_func, self.crit_loss_func = gen_loss_func, crit_loss_func
        self._model = [gan_model]  # a list: not a submodule (its parameters belong to the learner's model)

    @property
    def gan_model(self) -> GANModule:
        return self._model[0]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        critic = self.gan_model.critic
        if self.gan_model.gen_mode:
            return self.gen_loss_func(critic(pred), pred, target)
        return self.crit_loss_func(pred, critic(target))


# --------------------------------------------------------------------------------------------------------------
# switching between the players
# --------------------------------------------------------------------------------------------------------------


class FixedGANSwitcher:
    """Train the critic for `n_crit` batches, then the generator for `n_gen`, and so on."""

    def __init__(self, n_crit: int = 1, n_gen: int = 1) -> None:
        self.n_crit, self.n_gen = _check_count("n_crit", n_crit), _check_count("n_gen", n_gen)
        self.reset()

    def reset(self) -> None:
        self._n = 0

    def __call__(self, gen_mode: bool, loss: torch.Tensor) -> bool:
        """The mode for the next batch, after a batch in `gen_mode` with this `loss`."""
        self._n += 1
        if self._n >= (self.n_gen if gen_mode else self.n_crit):
            self._n = 0
            return not gen_mode
        return gen_mode

    def state_dict(self) -> dict[str, int]:
        return {"n": self._n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._n = int(state["n"])

    def __repr__(self) -> str:
        return f"FixedGANSwitcher(n_crit={self.n_crit}, n_gen={self.n_gen})"


class AdaptiveGANSwitcher:
    """Switch when the player in training gets its loss under its threshold (``None``: after every batch).

    With ``critic_thresh=0.65`` the critic trains until it tells generated images from real ones better than
    chance (a binary cross-entropy of 0.69), then the generator trains until it fools it again (or, with
    `gen_thresh`, until its own loss is low enough). Reading a loss waits for the device, once per batch.
    """

    def __init__(self, gen_thresh: float | None = None, critic_thresh: float | None = None) -> None:
        for name, v in (("gen_thresh", gen_thresh), ("critic_thresh", critic_thresh)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConfigError(expected("a number or None", name, v))
        self.gen_thresh, self.critic_thresh = gen_thresh, critic_thresh

    def reset(self) -> None:
        pass  # no state: the decision depends on the last loss only

    def __call__(self, gen_mode: bool, loss: torch.Tensor) -> bool:
        thresh = self.gen_thresh if gen_mode else self.critic_thresh
        if thresh is None or float(loss) < thresh:
            return not gen_mode
        return gen_mode

    def __repr__(self) -> str:
        return f"AdaptiveGANSwitcher(gen_thresh={self.gen_thresh}, critic_thresh={self.critic_thresh})"


# --------------------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------------------


_INPUTS_ONLY = (
    "This GAN's generator takes the batch's inputs and learns to match its targets, but these loaders give inputs "
    "only. Use loaders of (input, target) pairs, or give noise_sz to generate from noise."
)


class GANTrainer(Callback):
    """Run the GAN's alternation inside the ordinary training loop.

    Before each training batch it sets up what the active player needs: in generator mode the model gets the
    generator's input and the loss the real images; in critic mode the model gets the real images and the loss
    images generated (without gradients) from the input. The inactive player's parameters are frozen. After the
    critic's step its weights are clipped to ``[-clip, clip]`` when `clip` is set (Wasserstein GANs). Validation
    always runs the generator. Afterwards (however the fit ended) the model is left in generator mode with every
    parameter as trainable as it was. The alternation carries on from one fit to the next (and through a
    checkpoint): the first fit starts with `gen_first`, later ones where the last one stopped.

    Args:
        switcher: decides the next mode after each batch (default: switch after every batch).
        gen_first: start with the generator (else the critic).
        clip: clip the critic's weights after each of its steps.
        noise_sz: draw the generator's input as ``(B, noise_sz)`` standard normal noise; the batch's last
            tensor is then the real image (a batch of images only works too).
    """

    order = -20  # before the other callbacks see the batch

    def __init__(
        self,
        switcher: Any = None,
        gen_first: bool = False,
        clip: float | None = None,
        noise_sz: int | None = None,
    ) -> None:
        if switcher is not None and not callable(switcher):
            raise ConfigError(expected("a switcher such as FixedGANSwitcher()", "switcher", switcher))
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip <= 0):
            raise ConfigError(expected("a positive number or None", "clip", clip))
        if noise_sz is not None:
            _check_count("noise_sz", noise_sz)
        self.switcher = switcher if switcher is not None else FixedGANSwitcher()
        self.gen_first, self.clip, self.noise_sz = gen_first, clip, noise_sz
        self.gen_mode = gen_first  # the player that trains the next batch
        self.gen_losses: list[torch.Tensor] = []
        self.crit_losses: list[torch.Tensor] = []
        self._started = False
        self._trainable: set[int] | None = None  # set during a fit: the parameters trainable before it
        self._checked = False

    @property
    def in_fit(self) -> bool:
        """Whether a fit is running (the trainer has frozen one player)."""
        return self._trainable is not None

    @property
    def gan_model(self) -> GANModule:
        model = self.learn.model
        if not isinstance(model, GANModule):
            raise ConfigError(expected("a learner whose model is a GANModule", "learn.model", type(model).__name__))
        return model

    # -- modes -----------------------------------------------------------------------------------------
    def _set_mode(self, gen_mode: bool) -> None:
        self.gen_mode = gen_mode
        model = self.gan_model
        model.switch(gen_mode)
        trainable = self._trainable or set()
        for player, active in ((model.generator, gen_mode), (model.critic, not gen_mode)):
            for p in player.parameters():
                p.requires_grad_(active and id(p) in trainable)
                if not active:
                    p.grad = None  # gradients kept for accumulation must not reach the other player's step

    def _clip(self) -> None:
        with torch.no_grad():
            for p in self.gan_model.critic.parameters():
                p.clamp_(-self.clip, self.clip)

    def before_fit(self) -> None:
        model = self.gan_model
        self._trainable = {id(p) for p in model.parameters() if p.requires_grad}
        if not self._started:
            reset = getattr(self.switcher, "reset", None)
            if reset is not None:
                reset()
            self.gen_mode, self._started = self.gen_first, True
        if self.clip is not None:
            self._clip()  # the critic's first batch already sees clipped weights
        self._checked = False
        self._set_mode(self.gen_mode)

    def cleanup_fit(self) -> None:
        """Every parameter as trainable as before the fit, the model in generator mode (also after an error)."""
        if self._trainable is None:
            return
        model = self.gan_model
        for p in model.parameters():
            p.requires_grad_(id(p) in self._trainable)
        self._trainable = None
        model.switch(True)  # predictions after training come from the generator

    def state_dict(self) -> dict[str, Any]:
        switcher_state = getattr(self.switcher, "state_dict", None)
        return {"gen_mode": self.gen_mode, "switcher": switcher_state() if switcher_state is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load = getattr(self.switcher, "load_state_dict", None)
        if load is not None and state.get("switcher"):
            load(state["switcher"])
        self._started = True
        if "gen_mode" not in state:
            return  # a checkpoint from before the alternation was saved: start where this fit would
        if self._trainable is not None:
            self._set_mode(bool(state["gen_mode"]))
        else:
            self.gen_mode = bool(state["gen_mode"])

    def before_epoch(self) -> None:
        self.gen_losses, self.crit_losses = [], []

    # -- batches ---------------------------------------------------------------------------------------
    def _split(self) -> tuple[tuple, torch.Tensor]:
        """(the generator's input, the real images) of this batch."""
        learn = self.learn
        batch = (*learn.xb, *learn.yb)
        if not batch:
            raise DataError("A GAN needs batches of images; this loader gave an empty batch.")
        real = batch[-1]
        if not (isinstance(real, torch.Tensor) and real.is_floating_point()):
            raise DataError(
                "A GAN takes the real images from the last element of each batch; here it is "
                f"{getattr(real, 'dtype', type(real).__name__)} of shape {tuple(getattr(real, 'shape', ()))} "
                "(labels?). Use loaders of images, or of (input, image) pairs."
            )
        if self.noise_sz is not None:
            noise = torch.randn(real.shape[0], self.noise_sz, device=real.device)
            return (noise,), real
        if not learn.yb:
            raise DataError(_INPUTS_ONLY)
        return tuple(learn.xb), learn.yb[0]

    def before_batch(self) -> None:
        learn = self.learn
        gen_input, real = self._split()
        if not learn.training or self.gen_mode:
            if not learn.training:
                self.gan_model.switch(True)
            learn.xb, learn.yb = gen_input, (real,)
            return
        with torch.no_grad(), learn._autocast():
            fake = self.gan_model.generator(*gen_input)
        self._check(fake, real)
        learn.xb, learn.yb = (real,), (fake,)

    def after_pred(self) -> None:
        if self.gan_model.gen_mode and isinstance(self.learn.pred, torch.Tensor) and self.learn.yb:
            self._check(self.learn.pred, self.learn.yb[0])

    def _check(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """Once a fit: the generated images must be like the real ones, or the critic compares unlike things."""
        if self._checked:
            return
        if fake.shape != real.shape:
            raise DataError(
                f"The generator makes images of shape {tuple(fake.shape)} but the real images are "
                f"{tuple(real.shape)}: give the generator the data's size and channels (e.g. basic_generator("
                f"{real.shape[-1]}, {real.shape[1] if real.ndim == 4 else 1}) or Resize the data)."
            )
        self._checked = True

    def after_step(self) -> None:
        if self.clip is not None and not self.gen_mode:
            self._clip()

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None:
            return
        (self.gen_losses if self.gen_mode else self.crit_losses).append(learn.loss.detach())
        new_mode = bool(self.switcher(self.gen_mode, learn.loss))
        if new_mode != self.gen_mode:
            self._set_mode(new_mode)

    def before_validate(self) -> None:
        self.gan_model.switch(True)

    def after_validate(self) -> None:
        # back to the player in training during a fit; outside one (validate, get_preds) the generator
        self.gan_model.switch(self.gen_mode if self.in_fit else True)

    def mean_loss(self, gen: bool) -> float | None:
        """The mean training loss of one player over the current epoch (None if it did not train)."""
        losses = self.gen_losses if gen else self.crit_losses
        return float(torch.stack([x.float() for x in losses]).mean()) if losses else None


class _PlayerLoss(Metric):
    """The epoch's mean training loss of the generator or the critic, shown beside the validation metrics."""

    from_training = True  # shown without a validation set too

    def __init__(self, trainer: GANTrainer, gen: bool) -> None:
        super().__init__(name="gen_loss" if gen else "crit_loss")
        self.trainer, self.gen = trainer, gen

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        pass  # read from the trainer at the end of the epoch

    def compute(self) -> float:
        value = self.trainer.mean_loss(self.gen) if self.trainer.in_fit else None
        return float("nan") if value is None else value  # outside a fit (validate()): no training to report
