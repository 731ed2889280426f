"""Generative adversarial networks: a generator learns to make images that a critic cannot tell from real ones.

Two players share one training loop. The **critic** (or discriminator) is a classifier trained to score real
images high and generated ones low; the **generator** is trained to make the critic score its images high. The
loop alternates: a few batches for one, then a few for the other, the switcher deciding when.

Two ways in, as in the lessons:

- **From two pretrained learners** (:meth:`GANLearner.from_learners`): a generator pretrained with a pixel loss
  (a U-Net restoring images) and a critic pretrained to tell its outputs from the originals. The generator's loss
  adds the critic's verdict to the pixel loss, so the images stay faithful to their input.
- **From noise** (:meth:`GANLearner.wgan`): a DCGAN-style generator turns random vectors into images and a
  Wasserstein critic scores them (weights clipped after each of its steps).

In both, the inactive player's parameters are frozen while the other trains, so a single optimizer (one parameter
group per player) serves both; momentum is off by default, which GANs train better without.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, expected
from ember.layers import ConvLayer, Flatten, SelfAttention
from ember.learner.callback import Callback
from ember.learner.export import export_learner, register_learner, register_model_factory
from ember.learner.learner import Learner
from ember.learner.optim import Adam, RMSprop
from ember.metrics import Metric
from ember.vision.learner import decode_images

__all__ = [
    "basic_generator",
    "basic_critic",
    "gan_critic",
    "AdaptiveLoss",
    "accuracy_thresh_expand",
    "wgan_critic_loss",
    "wgan_generator_loss",
    "GANModule",
    "GANLoss",
    "FixedGANSwitcher",
    "AdaptiveGANSwitcher",
    "GANTrainer",
    "GANLearner",
    "GeneratorLearner",
]


# --------------------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------------------


def _check_size(name: str, size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size & (size - 1):
        raise ConfigError(expected("a power of two of at least 8", name, size, hint="e.g. 32 or 64 pixels"))
    return size


def _check_count(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(expected(f"an int >= {least}", name, value))
    return value


class _NoiseAsMap(nn.Module):
    """``(B, n)`` noise vectors -> ``(B, n, 1, 1)``, the 1x1 "image" a transposed convolution grows from."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, 1, 1)


@register_model_factory("basic_generator")
def basic_generator(
    out_size: int, n_channels: int, in_sz: int = 100, n_features: int = 64, n_extra_layers: int = 0
) -> nn.Sequential:
    """A DCGAN generator: noise ``(B, in_sz)`` (or ``(B, in_sz, 1, 1)``) -> images ``(B, n_channels, out_size,
    out_size)`` in [-1, 1].

    Transposed convolutions double the size from 4x4 up, halving the features each time; the last one gives
    `n_channels` through a tanh, so normalize the real images to [-1, 1] (``Normalize.from_stats([0.5]*C,
    [0.5]*C)``). The model's ``noise_sz`` attribute says how long a noise vector it takes.

    Args:
        out_size: image side in pixels, a power of two (>= 8).
        n_channels: image channels (3 for colour, 1 for grey).
        in_sz: length of the noise vector.
        n_features: features of the layer before the image (doubled at every smaller size).
        n_extra_layers: 3x3 convolutions added before the last upsampling.
    """
    _check_size("out_size", out_size)
    for name, v in (("n_channels", n_channels), ("in_sz", in_sz), ("n_features", n_features)):
        _check_count(name, v)
    _check_count("n_extra_layers", n_extra_layers, 0)
    n_up = int(math.log2(out_size)) - 3  # 4 -> out_size/2 by doubling, then the last layer doubles to out_size
    nf = n_features * 2**n_up
    layers: list[nn.Module] = [_NoiseAsMap(), ConvLayer(in_sz, nf, ks=4, stride=1, padding=0, transpose=True)]
    for _ in range(n_up):
        layers.append(ConvLayer(nf, nf // 2, ks=4, stride=2, padding=1, transpose=True))
        nf //= 2
    layers += [ConvLayer(nf, nf, ks=3) for _ in range(n_extra_layers)]
    layers += [nn.ConvTranspose2d(nf, n_channels, 4, stride=2, padding=1, bias=False), nn.Tanh()]
    model = nn.Sequential(*layers)
    model.noise_sz = in_sz
    kwargs = dict(out_size=out_size, n_channels=n_channels, in_sz=in_sz, n_features=n_features)
    model.model_recipe = {"factory": "basic_generator", "kwargs": {**kwargs, "n_extra_layers": n_extra_layers}}
    return model


_leaky = functools.partial(nn.LeakyReLU, 0.2, inplace=True)


def basic_critic(
    in_size: int, n_channels: int, n_features: int = 64, n_extra_layers: int = 0, norm_type: str | None = "batch"
) -> nn.Sequential:
    """A DCGAN critic: images ``(B, n_channels, in_size, in_size)`` -> one score per image ``(B,)``.

    Strided convolutions with leaky ReLUs halve the size down to 4x4, doubling the features; a last 4x4
    convolution gives the score (a logit: no sigmoid, so it suits both a Wasserstein loss and
    ``BCEWithLogitsLoss``).

    Args:
        in_size: image side in pixels, a power of two (>= 8).
        norm_type: normalization of the inner layers (``"batch"``, ``"instance"``, ``"spectral"`` or None).
    """
    _check_size("in_size", in_size)
    _check_count("n_channels", n_channels)
    _check_count("n_features", n_features)
    _check_count("n_extra_layers", n_extra_layers, 0)
    first = ConvLayer(n_channels, n_features, ks=4, stride=2, padding=1, norm_type=None, act_cls=_leaky)
    layers: list[nn.Module] = [first]
    size, nf = in_size // 2, n_features
    layers += [ConvLayer(nf, nf, ks=3, norm_type=norm_type, act_cls=_leaky) for _ in range(n_extra_layers)]
    while size > 4:
        layers.append(ConvLayer(nf, nf * 2, ks=4, stride=2, padding=1, norm_type=norm_type, act_cls=_leaky))
        nf, size = nf * 2, size // 2
    layers += [nn.Conv2d(nf, 1, 4, padding=0, bias=False), Flatten(full=False), _Squeeze()]
    return nn.Sequential(*layers)


class _Squeeze(nn.Module):
    """``(B, 1)`` -> ``(B,)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(1)


def gan_critic(n_channels: int = 3, nf: int = 128, n_blocks: int = 3, p: float = 0.15) -> nn.Sequential:
    """A critic for image-to-image GANs: images of any size -> a score per patch ``(B, n_patches)``.

    Every convolution has spectral normalization (which keeps the critic from pushing its weights, and the
    generator's, out of control), dropout regularizes it and one self-attention layer lets the first block see
    the whole image. Train it with ``AdaptiveLoss(nn.BCEWithLogitsLoss())``, which gives every patch the image's
    label, and measure it with :func:`accuracy_thresh_expand`.

    Args:
        n_channels: image channels.
        nf: features of the first layer (doubled by each block).
        n_blocks: strided blocks after the first layer; each halves the size (inputs of at least
            ``2 ** (n_blocks + 3)`` pixels).
        p: dropout probability inside the blocks (half of it before the first one).
    """
    _check_count("n_channels", n_channels)
    _check_count("nf", nf)
    _check_count("n_blocks", n_blocks)
    if not (isinstance(p, (int, float)) and 0 <= p < 1):
        raise ConfigError(expected("a probability in [0, 1)", "p", p))

    def conv(ni: int, no: int, ks: int, stride: int, padding: int = 1, act: bool = True) -> ConvLayer:
        return ConvLayer(
            ni, no, ks=ks, stride=stride, padding=padding, norm_type="spectral", act_cls=_leaky if act else None
        )

    layers: list[nn.Module] = [conv(n_channels, nf, 4, 2), nn.Dropout2d(p / 2), conv(nf, nf, 3, 1)]
    for i in range(n_blocks):
        layers += [nn.Dropout2d(p), conv(nf, nf * 2, 4, 2)]
        if i == 0:
            layers.append(SelfAttention(nf * 2))
        nf *= 2
    layers += [conv(nf, 1, 4, 1, padding=0, act=False), Flatten()]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------------------------
# losses and metrics
# --------------------------------------------------------------------------------------------------------------


def _expand(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One label per image ``(B,)`` spread over every score of that image (``like``: ``(B, ...)``)."""
    if target.ndim == 0 or target.shape[0] != like.shape[0]:
        raise DataError(
            f"Expected one label per image ({like.shape[0]} for these scores); received a target of shape "
            f"{tuple(target.shape)}."
        )
    return target.reshape(-1, *([1] * (like.ndim - 1))).expand_as(like).to(like.dtype)


class AdaptiveLoss(nn.Module):
    """Wrap a loss so that a label per image ``(B,)`` is compared with every score of that image.

    A patch critic such as :func:`gan_critic` scores each region of an image; the wrapped loss (e.g.
    ``nn.BCEWithLogitsLoss()``) sees the image's label repeated for each region.
    """

    def __init__(self, crit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        if not callable(crit):
            raise ConfigError(expected("a loss function", "crit", crit))
        self.crit = crit

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.crit(output, _expand(target, output))

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped loss's activation (a sigmoid for ``BCEWithLogitsLoss``)."""
        from ember.losses import loss_activation

        return loss_activation(self.crit)(x)


def accuracy_thresh_expand(
    pred: torch.Tensor, targ: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True
) -> torch.Tensor:
    """Accuracy of patch scores ``(B, ...)`` against one 0/1 label per image ``(B,)``: each score counts."""
    probs = torch.sigmoid(pred) if sigmoid else pred
    return ((probs > thresh) == _expand(targ, pred).bool()).float().mean()


def wgan_critic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """The Wasserstein critic's loss: low when it scores real images higher than generated ones."""
    return fake_pred.float().mean() - real_pred.float().mean()


def wgan_generator_loss(fake_pred: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The Wasserstein generator's loss: low when the critic scores its images high (`fake`, `real` unused)."""
    return -fake_pred.float().mean()


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


def _no_momentum(opt_func: Callable[..., Any]) -> Callable[..., Any]:
    return functools.partial(opt_func, mom=0.0)


class GANLearner(Learner):
    """A :class:`~ember.learner.Learner` that trains a generator and a critic in turn (see the module docs).

    Train it with ``fit`` (constant rate); the results table shows the epoch's mean generator and critic losses
    (``gen_loss``, ``crit_loss``), which are not expected to fall: as one player improves, the other's task gets
    harder. Look at the images instead (:meth:`show_results`, :meth:`generate`).

    Args:
        dls: loaders of ``(input, real image)`` pairs, or of images alone with `noise_sz`.
        generator, critic: the two models.
        gen_loss_func: ``(critic(fake), fake, real) -> loss`` for the generator.
        crit_loss_func: ``(critic(real), critic(fake)) -> loss`` for the critic.
        switcher: see :class:`FixedGANSwitcher` and :class:`AdaptiveGANSwitcher`.
        gen_first: start with the generator.
        clip: clip the critic's weights to ``[-clip, clip]`` after each of its steps.
        noise_sz: generate from noise vectors of this length instead of the batch's inputs.
        opt_func: the optimizer (default: Adam without momentum).
        kwargs: passed to :class:`~ember.learner.Learner` (``lr``, ``wd``, ``path``, ``precision`` ...).
    """

    def __init__(
        self,
        dls: Any,
        generator: nn.Module,
        critic: nn.Module,
        gen_loss_func: Callable[..., torch.Tensor],
        crit_loss_func: Callable[..., torch.Tensor],
        switcher: Any = None,
        gen_first: bool = False,
        clip: float | None = None,
        noise_sz: int | None = None,
        opt_func: Callable[..., Any] | None = None,
        metrics: Any = None,
        cbs: Callback | Sequence[Callback] | None = None,
        moms: tuple[float, float, float] = (0.0, 0.0, 0.0),
        **kwargs: Any,
    ) -> None:
        kinds = getattr(getattr(dls, "train", None), "kinds", None)
        if noise_sz is None and kinds is not None and len(kinds) <= getattr(dls.train, "n_inp", 1):
            raise DataError(_INPUTS_ONLY)
        model = GANModule(generator, critic, gen_mode=True)  # generator mode outside fits; the trainer switches
        loss = GANLoss(gen_loss_func, crit_loss_func, model)
        self.gan_trainer = GANTrainer(switcher=switcher, gen_first=gen_first, clip=clip, noise_sz=noise_sz)
        extra = [] if cbs is None else ([cbs] if isinstance(cbs, Callback) else list(cbs))
        user_metrics = [] if metrics is None else (list(metrics) if isinstance(metrics, (list, tuple)) else [metrics])
        players = [_PlayerLoss(self.gan_trainer, gen=True), _PlayerLoss(self.gan_trainer, gen=False)]
        self._gen_learn: Learner | None = None
        super().__init__(
            dls,
            model,
            loss_func=loss,
            opt_func=opt_func if opt_func is not None else _no_momentum(Adam),
            splitter=lambda m: [list(m.generator.parameters()), list(m.critic.parameters())],
            cbs=[self.gan_trainer, *extra],
            metrics=[*players, *user_metrics],
            moms=moms,
            **kwargs,
        )

    @property
    def noise_sz(self) -> int | None:
        return self.gan_trainer.noise_sz

    # -- constructors ----------------------------------------------------------------------------------
    @classmethod
    def from_learners(
        cls,
        gen_learn: Learner,
        crit_learn: Learner,
        switcher: Any = None,
        weights_gen: tuple[float, float] = (1.0, 50.0),
        real_label: int = 1,
        **kwargs: Any,
    ) -> GANLearner:
        """A GAN from a pretrained generator learner and a pretrained critic learner (the lesson's recipe).

        The GAN trains on the generator's data. The generator's loss is ``weights_gen[0] * critic loss +
        weights_gen[1] * pixel loss`` (the generator learner's loss): the critic alone would reward realistic
        images unrelated to their input; a pixel weight of 50 to 200 balances the two. The critic's loss is the
        critic learner's loss (e.g. ``AdaptiveLoss(nn.BCEWithLogitsLoss())``), averaged over real images
        (labelled `real_label`) and generated ones (the other label).

        The models are shared, not copied: after training, ``gen_learn`` holds the improved generator, and
        :meth:`export`, :meth:`predict` and :meth:`show_results` go through it. The generator is unfrozen (a
        U-Net on a pretrained encoder starts with its encoder frozen): the whole of it trains in the GAN.
        """
        for name, learn in (("gen_learn", gen_learn), ("crit_learn", crit_learn)):
            if not isinstance(learn, Learner):
                raise ConfigError(expected("a Learner", name, type(learn).__name__))
        if real_label not in (0, 1):
            raise ConfigError(expected("0 or 1", "real_label", real_label))
        if not (isinstance(weights_gen, (tuple, list)) and len(weights_gen) == 2):
            raise ConfigError(expected("two weights (critic, pixel)", "weights_gen", weights_gen))
        w_crit, w_pixel = (float(w) for w in weights_gen)
        crit_loss, pixel_loss = crit_learn.loss_func, gen_learn.loss_func
        if isinstance(crit_loss, nn.CrossEntropyLoss) or type(crit_loss).__name__ == "CrossEntropyLossFlat":
            raise ConfigError(
                "The critic learner's loss is a cross-entropy over classes; a GAN critic gives one score per image "
                "(or per region) against a 0/1 label: use loss_func=AdaptiveLoss(nn.BCEWithLogitsLoss()) and a "
                "critic such as gan_critic()."
            )
        gen_learn.unfreeze()  # the whole generator trains in the GAN (a pretrained encoder starts frozen)

        def labels(pred: torch.Tensor, value: int) -> torch.Tensor:
            return torch.full((pred.shape[0],), float(value), device=pred.device)

        def gen_loss_func(fake_pred: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
            return w_crit * crit_loss(fake_pred, labels(fake_pred, real_label)) + w_pixel * pixel_loss(fake, real)

        def crit_loss_func(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
            real_loss = crit_loss(real_pred, labels(real_pred, real_label))
            return (real_loss + crit_loss(fake_pred, labels(fake_pred, 1 - real_label))) / 2

        switcher = switcher if switcher is not None else AdaptiveGANSwitcher(critic_thresh=0.65)
        kwargs.setdefault("path", gen_learn.path)
        kwargs.setdefault("precision", gen_learn.precision)
        learn = cls(gen_learn.dls, gen_learn.model, crit_learn.model, gen_loss_func, crit_loss_func, switcher, **kwargs)
        learn._gen_learn = gen_learn
        return learn

    @classmethod
    def wgan(
        cls,
        dls: Any,
        generator: nn.Module,
        critic: nn.Module,
        switcher: Any = None,
        clip: float = 0.01,
        noise_sz: int | None = None,
        lr: float = 2e-4,
        opt_func: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> GANLearner:
        """A Wasserstein GAN that generates images from noise (e.g. :func:`basic_generator` and
        :func:`basic_critic`).

        The critic trains 5 batches for each of the generator's by default, its weights clipped to ``[-clip,
        clip]``, with RMSprop without momentum. `noise_sz` defaults to the generator's ``noise_sz``.
        """
        own = getattr(generator, "noise_sz", None)
        if noise_sz is not None and own is not None and noise_sz != own:
            raise ConfigError(expected(f"the generator's noise length ({own})", "noise_sz", noise_sz))
        if noise_sz is None:
            noise_sz = own
            if noise_sz is None:
                raise ConfigError(
                    "Expected `noise_sz`, the length of the generator's noise vectors; this generator does not say "
                    "(basic_generator models do)."
                )
        return cls(
            dls,
            generator,
            critic,
            wgan_generator_loss,
            wgan_critic_loss,
            switcher=switcher if switcher is not None else FixedGANSwitcher(n_crit=5, n_gen=1),
            clip=clip,
            noise_sz=noise_sz,
            lr=lr,
            opt_func=opt_func if opt_func is not None else _no_momentum(RMSprop),
            **kwargs,
        )

    # -- results ---------------------------------------------------------------------------------------
    def generate(self, n: int = 16, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`n` images from the generator (fresh noise, or the `noise` given): float32 ``(n, C, H, W)`` in [0, 1]."""
        if self.noise_sz is None and noise is None:
            raise ConfigError(
                "This GAN's generator takes images, not noise: use predict(item) or show_results() to see its work."
            )
        model = self.model
        was_gen = model.gen_mode
        model.switch(True)
        try:
            return _generate(self, model.generator, self.noise_sz, n, noise)
        finally:
            model.switch(was_gen)

    def show_results(self, max_n: int = 9, fname: str | None = None, **kwargs: Any) -> Any:
        """Draw generated images: from noise in a grid, or (built from learners) input | target | generated."""
        if self._gen_learn is not None:
            return self._gen_learn.show_results(max_n=max_n, fname=fname, **kwargs)
        return _show_images(self.generate(max_n), fname, **kwargs)

    def predict(self, item: Any) -> Any:
        """Restore one item with the generator (GANs built with :meth:`from_learners`)."""
        if self._gen_learn is None:
            if self.noise_sz is not None:
                raise ConfigError("This GAN generates from noise: use generate(n) to draw images.")
            raise ConfigError(
                "predict goes through the generator's own learner, which knows how to encode an item: build the "
                "GAN with GANLearner.from_learners(gen_learn, crit_learn)."
            )
        self.model.switch(True)
        return self._gen_learn.predict(item)

    def lr_find(self, *args: Any, **kwargs: Any) -> Any:
        """Not for GANs: the loss mixes two players' losses that work against each other (and a Wasserstein loss
        is negative), so no curve of it suggests a rate."""
        raise ConfigError(
            "lr_find cannot suggest a rate for a GAN: its loss alternates between two players working against "
            "each other. Use lr_find on the pretrained generator and critic, and a rate about 10 times smaller "
            "for the GAN (2e-4 for a Wasserstein GAN, 1e-4 after pretraining)."
        )

    def summary(self, print_out: bool = True) -> str:
        """The generator's layer table (on its input) and the critic's (on real images)."""
        from ember.learner.summary import model_summary

        batch = self.dls.one_batch()
        real = batch[-1]
        gen_input = (torch.randn(real.shape[0], self.noise_sz, device=real.device),) if self.noise_sz else batch[:-1]
        model = self.model
        was_gen = model.gen_mode
        try:
            text = "Generator: " + model_summary(self, model.generator, gen_input)
            text += "\n\nCritic: " + model_summary(self, model.critic, (real,))
        finally:
            model.switch(was_gen)
        if print_out:
            print(text)
        return text

    def export(self, fname: Any = "export.ember", verbose: bool = True) -> Any:
        """Export the generator alone: the critic is only needed for training.

        Built with :meth:`from_learners`, the generator is exported as its own learner would export it (a
        restoration model for ``load_learner``). Generating from noise, it is exported as a
        :class:`GeneratorLearner`, whose ``generate`` draws images after ``load_learner``.
        """
        if self._gen_learn is not None:
            return self._gen_learn.export(fname, verbose=verbose)
        if self.noise_sz is None:
            raise ConfigError(
                "This GAN's generator takes images; the generator's learner knows how to encode them for inference. "
                "Build the GAN with GANLearner.from_learners(gen_learn, crit_learn) and export that, or export a "
                "learner of the generator yourself (e.g. unet_learner(dls, ...) with learn.model.generator's weights)."
            )
        generator = self.model.generator
        learn = GeneratorLearner(self.dls, generator, path=self.path)
        learn.model_recipe = getattr(generator, "model_recipe", None)
        return export_learner(learn, fname, verbose=verbose)


@register_learner
class GeneratorLearner(Learner):
    """A trained generator of images from noise, as :meth:`GANLearner.export` writes it and ``load_learner``
    reads it back: :meth:`generate` draws new images, :meth:`show_results` a grid of them.

    The noise length is the generator's ``noise_sz`` attribute (set by :func:`basic_generator`).
    """

    def __init__(self, dls: Any, model: nn.Module, loss_func: Any = None, **kwargs: Any) -> None:
        super().__init__(dls, model, loss_func=loss_func if loss_func is not None else _no_loss, **kwargs)

    def generate(self, n: int = 16, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`n` new images (or one per row of `noise`): float32 ``(n, C, H, W)`` in [0, 1] on the CPU."""
        noise_sz = getattr(self.model, "noise_sz", None)
        if noise is None and noise_sz is None:
            raise ConfigError("This generator does not say how long its noise is: pass noise=torch.randn(n, size).")
        return _generate(self, self.model, noise_sz, n, noise)

    def show_results(self, max_n: int = 9, fname: str | None = None, **kwargs: Any) -> Any:
        """Draw `max_n` generated images in a grid."""
        return _show_images(self.generate(max_n), fname, **kwargs)


def _no_loss(*args: Any) -> torch.Tensor:
    raise ConfigError("A GeneratorLearner only generates; train a generator with GANLearner.")


def _generate(learn: Learner, generator: nn.Module, noise_sz: int | None, n: int, noise: Any) -> torch.Tensor:
    """Run `generator` on noise in evaluation mode; the images decoded like the real ones, in [0, 1] on the CPU."""
    if noise is None:
        noise = torch.randn(_check_count("n", n), noise_sz)
    elif (
        not isinstance(noise, torch.Tensor) or noise.ndim not in (2, 4) or noise.ndim == 4 and noise.shape[2:] != (1, 1)
    ):
        raise ConfigError(expected(f"a tensor (n, {noise_sz or 'noise_sz'})", "noise", getattr(noise, "shape", noise)))
    elif noise_sz is not None and noise.shape[1] != noise_sz:
        raise ConfigError(expected(f"noise vectors of length {noise_sz}", "noise", tuple(noise.shape)))
    noise = noise.float()
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad(), learn._autocast():
            x = generator(noise.to(learn.dls.device))
    finally:
        generator.train(was_training)
    return decode_images(learn.dls, x.float())


def _show_images(images: torch.Tensor, fname: Any, **kwargs: Any) -> Any:
    from ember.data.show import _finish, get_grid

    axes = get_grid(len(images), **kwargs)
    for ax, img in zip(axes, images):
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        ax.axis("off")
    return _finish(axes[0].figure, fname)
