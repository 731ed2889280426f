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

The generator and critic architectures are in :mod:`ember.vision.gan_models`, the losses and the patch accuracy in
:mod:`ember.vision.gan_losses`, the model, loss, switchers and callback of the alternation in
:mod:`ember.vision.gan_trainer`; every name stays importable from here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.callback import Callback
from ember.learner.export import export_learner, register_learner
from ember.learner.learner import Learner
from ember.learner.optim import Adam, RMSprop
from ember.vision.gan_losses import (
    AdaptiveLoss,
    _expand,  # noqa: F401  (kept importable from here)
    accuracy_thresh_expand,
    wgan_critic_loss,
    wgan_generator_loss,
)
from ember.vision.gan_models import (
    _check_count,
    _check_size,  # noqa: F401  (kept importable from here)
    _leaky,  # noqa: F401  (kept importable from here)
    _NoiseAsMap,  # noqa: F401  (kept importable from here)
    _Squeeze,  # noqa: F401  (kept importable from here)
    basic_critic,
    basic_generator,
    gan_critic,
)
from ember.vision.gan_trainer import (
    _INPUTS_ONLY,
    AdaptiveGANSwitcher,
    FixedGANSwitcher,
    GANLoss,
    GANModule,
    GANTrainer,
    _PlayerLoss,
)
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
