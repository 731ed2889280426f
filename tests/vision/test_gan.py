"""GANs: the DCGAN models and the patch critic, the switchers, the alternation of the two players inside the
training loop (who gets gradients, clipping, what is left afterwards), a Wasserstein GAN that moves its images
towards the data, and the lesson's recipe from a pretrained generator and critic through to an export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ember.core.errors import CallbackError, ConfigError, DataError
from ember.data.block import CategoryBlock, DataBlock
from ember.data.items import RandomSplitter, get_image_files, parent_label
from ember.learner.callback import Callback
from ember.learner.export import load_learner, read_recipe
from ember.learner.learner import Learner
from ember.vision.augment import Normalize, Resize
from ember.vision.core import ImageBlock, load_image, save_image
from ember.vision.gan import (
    AdaptiveGANSwitcher,
    AdaptiveLoss,
    FixedGANSwitcher,
    GANLearner,
    GANModule,
    accuracy_thresh_expand,
    basic_critic,
    basic_generator,
    gan_critic,
    wgan_critic_loss,
    wgan_generator_loss,
)
from ember.vision.unet import unet_learner

SIZE = 16


def _save(t: torch.Tensor, path: Path) -> None:
    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(path)


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    """Grey 16-pixel images: a bright square of random size and place on a dark background."""
    root = tmp_path_factory.mktemp("squares") / "real"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(64):
        img = torch.full((1, SIZE, SIZE), 0.1)
        s = int(torch.randint(5, 9, (1,), generator=g))
        top, left = (int(v) for v in torch.randint(2, SIZE - s - 1, (2,), generator=g))
        img[:, top : top + s, left : left + s] = 0.9
        _save(img, root / f"{i:02d}.png")
    return root


def _image_dls(folder: Path, bs: int = 16):
    torch.manual_seed(0)  # the loaders' shuffling as well as what follows, whatever ran before
    dblock = DataBlock(
        blocks=(ImageBlock(mode="L"),),
        get_items=get_image_files,
        splitter=RandomSplitter(valid_pct=0.25, seed=0),
        item_tfms=Resize(SIZE),
        batch_tfms=Normalize.from_stats([0.5], [0.5]),
    )
    return dblock.dataloaders(folder, bs=bs, device="cpu")


def _small_wgan(dls, tmp_path, **kwargs) -> GANLearner:
    torch.manual_seed(0)
    g, c = basic_generator(SIZE, 1, in_sz=16, n_features=16), basic_critic(SIZE, 1, n_features=16)
    learn = GANLearner.wgan(dls, g, c, path=tmp_path, **kwargs)
    learn.silent = True
    return learn


# ------------------------------------------------------------------------------------------------ models


def test_dcgan_models_shapes_and_errors():
    g = basic_generator(32, 3, in_sz=20, n_features=8, n_extra_layers=1)
    assert g.noise_sz == 20
    assert g(torch.randn(4, 20)).shape == (4, 3, 32, 32) == g(torch.randn(4, 20, 1, 1)).shape
    out = g(torch.randn(4, 20))
    assert float(out.detach().abs().max()) <= 1.0  # tanh: the range of images normalized to [-1, 1]
    c = basic_critic(32, 3, n_features=8, n_extra_layers=1)
    assert c(out).shape == (4,)
    assert basic_critic(8, 1, n_features=4)(torch.zeros(2, 1, 8, 8)).shape == (2,)
    for bad in (24, 4, 0, True, 32.0):
        with pytest.raises(ConfigError, match="power of two"):
            basic_generator(bad, 3)
    with pytest.raises(ConfigError, match="n_channels"):
        basic_critic(32, 0)


def test_gan_critic_scores_patches_with_spectral_norm():
    critic = gan_critic(n_channels=3, nf=8, n_blocks=2, p=0.1)
    assert critic(torch.randn(2, 3, 32, 32)).shape == (2, 1)
    assert critic(torch.randn(2, 3, 48, 48)).shape == (2, 9)  # one score per region
    convs = [m for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in convs)
    with pytest.raises(ConfigError, match="probability"):
        gan_critic(p=1.0)


def test_adaptive_loss_and_expanded_accuracy():
    scores = torch.tensor([[2.0, -1.0, 3.0], [-2.0, -3.0, 1.0]])
    labels = torch.tensor([1, 0])
    loss = AdaptiveLoss(nn.BCEWithLogitsLoss())(scores, labels)
    expected = F.binary_cross_entropy_with_logits(scores, torch.tensor([[1.0] * 3, [0.0] * 3]))
    assert torch.allclose(loss, expected)
    assert float(accuracy_thresh_expand(scores, labels)) == pytest.approx(4 / 6)
    assert float(accuracy_thresh_expand(torch.tensor([0.7, 0.2]), labels, sigmoid=False)) == 1.0
    with pytest.raises(DataError, match="one label per image"):
        AdaptiveLoss(nn.BCEWithLogitsLoss())(scores, torch.tensor([1, 0, 1]))


def test_wgan_losses_reward_the_right_side():
    real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert float(wgan_critic_loss(real, fake)) == pytest.approx(-3.0)  # real scored higher: low loss
    assert float(wgan_generator_loss(fake, None, None)) == pytest.approx(0.5)


def test_switchers():
    fixed = FixedGANSwitcher(n_crit=2, n_gen=1)
    modes, gen = [], False
    for _ in range(6):
        gen = fixed(gen, torch.tensor(0.0))
        modes.append(gen)
    assert modes == [False, True, False, False, True, False]
    adaptive = AdaptiveGANSwitcher(critic_thresh=0.65)
    assert adaptive(False, torch.tensor(0.7)) is False  # the critic keeps training until it beats 0.65
    assert adaptive(False, torch.tensor(0.6)) is True
    assert adaptive(True, torch.tensor(9.0)) is False  # no generator threshold: one batch each
    with pytest.raises(ConfigError, match="n_crit"):
        FixedGANSwitcher(n_crit=0)
    with pytest.raises(ConfigError, match="critic_thresh"):
        AdaptiveGANSwitcher(critic_thresh="high")


# ------------------------------------------------------------------------------------------------ the loop


class _WhoLearns(Callback):
    """Records, for every training step, the mode and which players had gradients."""

    def before_fit(self):
        self.steps = []

    def after_backward(self):
        model: GANModule = self.learn.model
        has = [any(p.grad is not None for p in m.parameters()) for m in (model.generator, model.critic)]
        self.steps.append((model.gen_mode, *has, tuple(self.learn.xb[0].shape)))


def test_players_take_turns_and_only_the_active_one_learns(squares, tmp_path):
    dls = _image_dls(squares)
    learn = _small_wgan(dls, tmp_path, switcher=FixedGANSwitcher(n_crit=2, n_gen=1))
    frozen = next(learn.model.generator.parameters())
    frozen.requires_grad_(False)  # a user's frozen layer stays frozen through and after the GAN's fit
    before = frozen.detach().clone()
    spy = _WhoLearns()
    learn.fit(1, 1e-3, cbs=spy)
    assert [s[0] for s in spy.steps] == [False, False, True] and len(spy.steps) == 3
    for gen_mode, gen_grads, crit_grads, x_shape in spy.steps:
        assert (gen_grads, crit_grads) == (gen_mode, not gen_mode)
        assert x_shape == ((16, 16) if gen_mode else (16, 1, SIZE, SIZE))  # noise for G, real images for C
    assert torch.equal(frozen, before) and not frozen.requires_grad
    params = list(learn.model.parameters())
    assert sum(not p.requires_grad for p in params) == 1  # every other parameter trainable again
    assert learn.model.gen_mode  # predictions after training come from the generator
    critic_weights = torch.cat([p.detach().flatten() for p in learn.model.critic.parameters()])
    assert float(critic_weights.abs().max()) <= 0.01 + 1e-7  # clipped after every critic step
    names = learn.recorder.metric_names
    assert names[3:5] == ["gen_loss", "crit_loss"]
    row = dict(zip(names, [0, *learn.recorder.values[-1]]))
    assert all(np.isfinite(row[k]) for k in ("train_loss", "valid_loss", "gen_loss", "crit_loss"))


def test_wgan_moves_its_images_towards_the_data(squares, tmp_path):
    dls = _image_dls(squares)
    learn = _small_wgan(dls, tmp_path)
    real = torch.stack([dls.train.decode(b)[0] for b in dls.train]).flatten(0, 1)  # (N, 1, H, W) in [0, 1]
    noise = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))

    def gap() -> float:
        fake = learn.generate(noise=noise)
        assert fake.shape == (64, 1, SIZE, SIZE) and 0 <= float(fake.min()) and float(fake.max()) <= 1
        # the mean image and the share of bright pixels, generated against real
        return float((fake.mean(0) - real.mean(0)).abs().mean()) + abs(
            float((fake > 0.5).float().mean() - (real > 0.5).float().mean())
        )

    start = gap()
    learn.fit(60, 2e-3)
    end = gap()
    assert end < 0.3 * start, (start, end)  # 0.08 to 0.19 of the start over seeds 0-3
    fig = learn.show_results(max_n=4, fname=tmp_path / "gen.png")
    assert len(fig.axes) >= 4 and (tmp_path / "gen.png").stat().st_size > 1000
    saved = learn.save("wgan")
    assert saved.exists() and saved.name == "wgan.pth"
    again = _small_wgan(dls, tmp_path).load("wgan")
    assert torch.equal(again.generate(noise=noise), learn.generate(noise=noise))


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_gan_trains_in_mixed_precision_on_the_cpu(squares, tmp_path, precision):
    learn = _small_wgan(_image_dls(squares), tmp_path, precision=precision, switcher=FixedGANSwitcher(1, 1))
    learn.fit(1, 2e-3)
    values = learn.recorder.values[-1]
    assert all(np.isfinite(v) for v in values)
    assert learn.generate(2).dtype == torch.float32


def test_a_noise_gan_exports_its_generator_and_a_fresh_process_generates(squares, tmp_path):
    learn = _small_wgan(_image_dls(squares), tmp_path)
    learn.fit(2, 2e-3)
    path = learn.export(tmp_path / "gen.ember")
    rec = read_recipe(path)
    assert rec["learner"] == "GeneratorLearner" and rec["model"]["factory"] == "basic_generator"
    generator_state = learn.model.generator.state_dict().values()
    assert rec["n_params"] == sum(t.numel() for t in generator_state)  # the generator alone: no critic weights
    noise = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    expected = learn.generate(noise=noise)
    loaded = load_learner(path)
    assert type(loaded).__name__ == "GeneratorLearner" and torch.allclose(loaded.generate(noise=noise), expected)
    torch.save(noise, tmp_path / "noise.pt")
    script = (
        "import sys, torch; from ember import load_learner; "
        "learn = load_learner(sys.argv[1]); noise = torch.load(sys.argv[2]); "
        "torch.save(learn.generate(noise=noise), sys.argv[3]); print(tuple(learn.generate(5).shape))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "noise.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str((5, 1, SIZE, SIZE))
    assert torch.allclose(torch.load(tmp_path / "out.pt"), expected, atol=1e-6)


def test_gan_errors_are_clear(squares, tmp_path):
    dls = _image_dls(squares)
    with pytest.raises(ConfigError, match="noise_sz"):
        GANLearner.wgan(dls, nn.Sequential(nn.Linear(4, 4)), basic_critic(SIZE, 1))
    with pytest.raises(DataError, match="inputs only"):
        GANLearner(dls, basic_generator(SIZE, 1), basic_critic(SIZE, 1), wgan_generator_loss, wgan_critic_loss)
    noise_gan = _small_wgan(dls, tmp_path)
    with pytest.raises(ConfigError, match="noise"):
        noise_gan.generate(noise=[1.0, 2.0])
    with pytest.raises(ConfigError, match="generate"):
        noise_gan.predict(squares / "00.png")
    with pytest.raises(ConfigError, match="switcher"):
        GANLearner.wgan(dls, basic_generator(SIZE, 1), basic_critic(SIZE, 1), switcher=3)
    with pytest.raises(ConfigError, match="clip"):
        GANLearner.wgan(dls, basic_generator(SIZE, 1), basic_critic(SIZE, 1), clip=-1)


# ------------------------------------------------------------------------------- the lesson's recipe


def _pair_dls(noisy: Path, clean: Path):
    return DataBlock(
        blocks=(ImageBlock, ImageBlock),
        get_items=get_image_files,
        get_y=lambda p: clean / p.name,
        splitter=RandomSplitter(valid_pct=0.25, seed=0),
        item_tfms=Resize(32),
    ).dataloaders(noisy, bs=4, device="cpu")


def test_gan_from_pretrained_learners_trains_and_exports_the_generator(tmp_path):
    clean, noisy, crit_dir = tmp_path / "clean", tmp_path / "noisy", tmp_path / "critic"
    for d in (clean, noisy, crit_dir / "generated", crit_dir / "real"):
        d.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(16):
        img = F.interpolate(torch.rand(1, 3, 3, 3, generator=g), size=(32, 32), mode="bicubic")[0].clamp(0, 1)
        _save(img, clean / f"{i:02d}.png")
        _save(img + 0.2 * torch.randn(img.shape, generator=g), noisy / f"{i:02d}.png")
    torch.manual_seed(0)
    # 1. the generator, pretrained with a pixel loss
    learn_gen = unet_learner(_pair_dls(noisy, clean), "xresnet_tiny", pretrained=False, path=tmp_path)
    learn_gen.silent = True
    learn_gen.fit_one_cycle(2, 1e-2)
    # 2. its outputs beside the originals, and a critic pretrained to tell them apart
    outputs, _, _ = learn_gen.predict_batch(sorted(noisy.iterdir()))
    for i, img in enumerate(outputs):
        save_image(img, crit_dir / "generated" / f"{i:02d}.png")
        save_image(load_image(clean / f"{i:02d}.png"), crit_dir / "real" / f"{i:02d}.png")
    dls_crit = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(valid_pct=0.25, seed=0),
    ).dataloaders(crit_dir, bs=4, device="cpu")
    assert dls_crit.vocab == ["generated", "real"]  # real is label 1, the default real_label
    learn_crit = Learner(
        dls_crit,
        gan_critic(nf=8, n_blocks=2),
        loss_func=AdaptiveLoss(nn.BCEWithLogitsLoss()),
        metrics=accuracy_thresh_expand,
        path=tmp_path,
    )
    learn_crit.silent = True
    learn_crit.fit(2, 1e-3)
    # 3. the GAN: the same models, shared
    switcher = AdaptiveGANSwitcher(critic_thresh=0.65)
    learn = GANLearner.from_learners(learn_gen, learn_crit, switcher=switcher, gen_first=True)
    learn.silent = True
    assert learn.model.generator is learn_gen.model and learn.model.critic is learn_crit.model
    spy = _WhoLearns()
    learn.fit(2, 1e-4, cbs=spy)
    assert spy.steps[0][0] and {s[0] for s in spy.steps} == {False, True}  # both players trained
    values = np.array(learn.recorder.values, dtype=float)  # epochs x (train, valid, gen_loss, crit_loss)
    assert np.isfinite(values[:, :2]).all()
    assert np.isfinite(values[:, 2]).any() and np.isfinite(values[:, 3]).any()  # nan: that player did not train
    image, _, _ = learn.predict(noisy / "00.png")
    assert image.shape == (3, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
    fig = learn.show_results(max_n=2, fname=tmp_path / "res.png")
    assert fig is not None and (tmp_path / "res.png").exists()
    path = learn.export(tmp_path / "gan.ember")
    loaded = load_learner(path)
    again, _, _ = loaded.predict(noisy / "00.png")
    assert torch.allclose(again, image, atol=1e-5)
    with pytest.raises(ConfigError, match="real_label"):
        GANLearner.from_learners(learn_gen, learn_crit, real_label=2)
    ce_critic = Learner(dls_crit, gan_critic(nf=8, n_blocks=2), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    with pytest.raises(ConfigError, match="AdaptiveLoss"):
        GANLearner.from_learners(learn_gen, ce_critic)
    learn_gen.freeze()
    GANLearner.from_learners(learn_gen, learn_crit)
    assert learn_gen.frozen_to is None and all(p.requires_grad for p in learn_gen.model.parameters())


# ------------------------------------------------------------------------------- the loop's edge cases


class _Interrupt(Callback):
    def after_batch(self):
        if self.learn.training and self.learn.model.gen_mode:
            raise KeyboardInterrupt


def test_an_interrupted_fit_leaves_every_parameter_trainable_and_the_next_fit_works(squares, tmp_path):
    learn = _small_wgan(_image_dls(squares), tmp_path, switcher=FixedGANSwitcher(1, 1))
    with pytest.raises(KeyboardInterrupt):
        learn.fit(2, 1e-3, cbs=_Interrupt())
    assert all(p.requires_grad for p in learn.model.parameters()) and learn.model.gen_mode
    learn.fit(1, 1e-3)
    assert np.isfinite(learn.recorder.values[-1][0])


def test_the_alternation_carries_on_across_fits_and_checkpoints(squares, tmp_path):
    dls = _image_dls(squares)  # 3 training batches an epoch: with 5 critic batches a turn, one fit(1) never
    learn = _small_wgan(dls, tmp_path)  # reaches the generator, four do
    spy = _WhoLearns()
    modes = []
    for _ in range(4):
        learn.fit(1, 1e-3, cbs=spy)
        modes += [s[0] for s in spy.steps]
    assert modes == [False] * 5 + [True] + [False] * 5 + [True]
    state = learn.gan_trainer.state_dict()
    assert state == {"gen_mode": False, "switcher": {"n": 0}}
    # a crashed run resumed from its checkpoint continues the same alternation
    full = _small_wgan(dls, tmp_path / "a")
    full.fit(3, 1e-3, checkpoint="c", cbs=(whole := _WhoLearns()))

    class _Crash(Callback):
        def after_epoch(self):
            if self.learn.epoch == 1:
                raise RuntimeError("crash")

    part = _small_wgan(dls, tmp_path / "a")
    with pytest.raises(Exception, match="crash"):
        part.fit(3, 1e-3, checkpoint="c", cbs=_Crash())
    resumed = _small_wgan(dls, tmp_path / "a")
    resumed.fit(3, 1e-3, checkpoint="c", resume=True, cbs=(rest := _WhoLearns()))
    assert [s[0] for s in rest.steps] == [s[0] for s in whole.steps][-len(rest.steps) :]


def test_gradient_accumulation_never_moves_the_waiting_player(squares, tmp_path):
    from ember.learner import GradientAccumulation

    learn = _small_wgan(_image_dls(squares), tmp_path, switcher=FixedGANSwitcher(1, 1))

    class _Watch(Callback):
        order = 100

        def before_fit(self):
            self.moved, self.before = [], None

        def before_step(self):  # only reached by the steps that happen (accumulation cancels the others first)
            self.before = {id(p): p.detach().clone() for p in self.learn.model.parameters()}
            self.gen = self.learn.model.gen_mode

        def after_step(self):
            if self.before is None:
                return
            model = self.learn.model
            waiting = model.critic if self.gen else model.generator
            self.moved.append(any(not torch.equal(p, self.before[id(p)]) for p in waiting.parameters()))
            self.before = None

    watch = _Watch()
    learn.fit(2, 1e-3, cbs=[GradientAccumulation(32), watch])
    assert watch.moved and not any(watch.moved)


def test_losses_of_both_players_without_a_validation_set(squares, tmp_path):
    from ember.data import DataLoaders

    dls = _image_dls(squares)
    x = torch.cat([b[0] for b in dls.train])
    learn = _small_wgan(DataLoaders.from_tensors((x,), bs=8, device="cpu"), tmp_path, switcher=FixedGANSwitcher(1, 1))
    learn.fit(1, 1e-3)
    train, valid, gen, crit = learn.recorder.values[-1]
    assert valid is None and np.isfinite(gen) and np.isfinite(crit)
    out = _small_wgan(dls, tmp_path).validate()
    assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])  # no training to report outside a fit


def test_mismatched_data_and_models_are_refused_clearly(squares, tmp_path):
    dls = _image_dls(squares)
    big = GANLearner.wgan(dls, basic_generator(32, 1, in_sz=16, n_features=8), basic_critic(32, 1, n_features=8))
    big.silent = True
    with pytest.raises(CallbackError, match=r"shape \(16, 1, 32, 32\).*\(16, 1, 16, 16\)"):
        big.fit(1)
    assert all(p.requires_grad for p in big.model.parameters())
    labelled = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        get_y=lambda p: "a",
        item_tfms=Resize(SIZE),
    ).dataloaders(squares, bs=8, device="cpu")
    learn = _small_wgan(labelled, tmp_path)
    with pytest.raises(CallbackError, match="last element"):
        learn.fit(1)
    with pytest.raises(ConfigError, match="noise_sz"):
        GANLearner.wgan(dls, basic_generator(SIZE, 1, in_sz=16), basic_critic(SIZE, 1), noise_sz=8)
    learn = _small_wgan(dls, tmp_path)
    with pytest.raises(ConfigError, match="length 16"):
        learn.generate(noise=torch.randn(2, 8))
    assert learn.generate(noise=torch.randn(2, 16, 1, 1, dtype=torch.float64)).shape == (2, 1, SIZE, SIZE)
    with pytest.raises(ConfigError, match="lr_find"):
        learn.lr_find()
    text = learn.summary(print_out=False)
    assert text.startswith("Generator: ") and "Critic: " in text
    assert learn.predict_tensor(torch.randn(2, 16)).shape == (2, 1, SIZE, SIZE)  # generator mode outside a fit
    learn.validate()
    learn.fit(1, 1e-3)
    learn.get_preds()
    assert learn.model.gen_mode and learn.predict_tensor(torch.randn(2, 16)).shape == (2, 1, SIZE, SIZE)
    learn.gan_trainer.load_state_dict({})  # a checkpoint that kept no alternation: nothing to restore


def test_an_image_gan_from_the_general_constructor_says_how_to_export(tmp_path):
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    clean.mkdir()
    noisy.mkdir()
    for i in range(8):
        img = torch.rand(3, 32, 32)
        _save(img, clean / f"{i}.png")
        _save(img, noisy / f"{i}.png")
    dls = _pair_dls(noisy, clean)
    unet = unet_learner(dls, "xresnet_tiny", pretrained=False).model
    learn = GANLearner(dls, unet, gan_critic(nf=8, n_blocks=2), wgan_generator_loss, wgan_critic_loss, path=tmp_path)
    with pytest.raises(ConfigError, match="from_learners"):
        learn.export(tmp_path / "x.ember")
    with pytest.raises(ConfigError, match="from_learners"):
        learn.predict(noisy / "0.png")
