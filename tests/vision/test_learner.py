"""vision_learner: bodies from ember/torchvision/timm, heads, channel adaptation, pretrained weights from the
local cache only, freezing, predict, show_results and tta."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ember.core.errors import ConfigError, DataError, EmberError
from ember.data.block import CategoryBlock, DataBlock
from ember.data.items import GrandparentSplitter, get_image_files, parent_label
from ember.vision.augment import Normalize, Resize, aug_transforms
from ember.vision.core import ImageBlock, load_image
from ember.vision.learner import (
    VisionLearner,
    adapt_first_conv,
    create_head,
    create_vision_model,
    pretrained_path,
    vision_learner,
)


def _folder(root, n_train: int = 6, n_valid: int = 2):
    g = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", n_valid)):
        for label, value in (("dark", 40), ("light", 210)):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.clip(g.normal(value, 20, size=(16, 16)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(root / split / label / f"{i}.png")
    return root


def _dls(root, mode: str = "L", batch_tfms=None):
    return DataBlock(
        blocks=(ImageBlock(mode=mode), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
        item_tfms=[Resize(16)],
        batch_tfms=batch_tfms,
    ).dataloaders(root, bs=4, device="cpu", num_workers=0)


@pytest.fixture
def dls(tmp_path):
    return _dls(_folder(tmp_path / "data"))


def test_create_head_shapes():
    head = create_head(32, 5, lin_ftrs=[16], ps=0.5)
    assert head(torch.randn(3, 32, 4, 4)).shape == (3, 5)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16), (16, 5)]
    drops = [m.p for m in head.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.25, 0.5]
    plain = create_head(32, 2, concat_pool=False, lin_ftrs=[], ps=0.0, bn_final=True)
    assert plain(torch.randn(2, 32, 3, 3)).shape == (2, 2)
    with pytest.raises(ConfigError):
        create_head(8, 2, lin_ftrs=[4], ps=[0.1])


def test_adapt_first_conv_grey_and_many_channels():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU())
    grey = torch.rand(2, 1, 8, 8)
    ref = model(grey.expand(-1, 3, -1, -1))
    adapt_first_conv(model, 1)
    assert model[0].in_channels == 1
    assert torch.allclose(model(grey), ref, atol=1e-5)  # a grey image acts like equal R, G and B
    model5 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False))
    const = torch.full((1, 3, 6, 6), 0.7)
    ref5 = model5(const)
    adapt_first_conv(model5, 5)
    assert model5[0].in_channels == 5
    assert torch.allclose(model5(torch.full((1, 5, 6, 6), 0.7)), ref5, atol=1e-5)


def test_xresnet_learner_on_grey_images(dls):
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8])
    assert isinstance(learn, VisionLearner)
    first = next(m for m in learn.model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    xb, _ = dls.one_batch()
    assert learn.model(xb).shape == (4, 2)
    groups = learn.param_groups()
    assert len(groups) == 3  # stem and first stages, last stages, head
    assert sum(len(g) for g in groups) == len(list(learn.model.parameters()))
    assert {id(p) for p in groups[2]} == {id(p) for p in learn.model[1].parameters()}
    assert all(p.requires_grad for p in learn.model.parameters())  # nothing frozen without pretrained weights
    assert not any(isinstance(t, Normalize) for t in dls.train.batch_tfms)  # normalize only for pretrained
    rec = learn.model_recipe
    assert rec["factory"] == "create_vision_model" and rec["kwargs"]["n_in"] == 1 and rec["kwargs"]["n_out"] == 2
    rebuilt = create_vision_model(**rec["kwargs"])
    assert rebuilt.state_dict().keys() == learn.model.state_dict().keys()


def test_predict_from_path_pil_and_tensor(dls, tmp_path):
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8])
    path = tmp_path / "data" / "valid" / "light" / "0.png"
    label, idx, probs = learn.predict(path)
    assert label in ("dark", "light") and label == dls.vocab[int(idx)]
    assert probs.shape == (2,) and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    _, _, probs_pil = learn.predict(Image.open(path))
    _, _, probs_t = learn.predict(torch.from_numpy(np.array(Image.open(path)))[None])
    assert torch.allclose(probs, probs_pil) and torch.allclose(probs, probs_t)
    with pytest.raises(ConfigError, match=r"predicts masks.*not \(1,\)"):
        learn.predict_masks([path])  # a classifier has no mask to map
    with pytest.raises(DataError, match="no items"):
        learn.predict_masks([])


def test_training_learns_and_results(dls):
    torch.manual_seed(0)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], ps=0.0)
    learn.silent = True
    learn.fit_one_cycle(3, 1e-2)
    losses = [float(v) for v in learn.recorder.losses]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # it learns (12 images: accuracy would be noise)
    preds, targs = learn.get_preds()[:2]
    assert preds.shape == (4, 2) and torch.equal(targs, torch.tensor([0, 0, 1, 1]))
    fig = learn.show_results(max_n=4)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 4
    tta, tta_targs = learn.tta(n=2)
    assert tta.shape == preds.shape and torch.equal(tta_targs, targs)
    plain, _ = learn.tta(n=1, beta=1.0)
    assert torch.allclose(plain, preds, atol=1e-6)


def test_unknown_arch_and_missing_outputs(dls):
    with pytest.raises(ConfigError, match="list_models"):
        vision_learner(dls, "resnet_does_not_exist", pretrained=False)
    with pytest.raises(ConfigError, match="pretrained"):
        vision_learner(dls, "xresnet_tiny", pretrained=True)  # ember publishes no xresnet weights


def test_torchvision_pretrained_missing_then_loaded(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    dls = _dls(_folder(tmp_path / "data"))
    expected = pretrained_path("resnet18")
    assert expected.parent == tmp_path / "torch_home" / "hub" / "checkpoints"
    with pytest.raises(EmberError) as err:
        vision_learner(dls, "resnet18", pretrained=True)
    assert str(expected) in str(err.value) and "pretrained=False" in str(err.value)

    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    expected.parent.mkdir(parents=True)
    torch.save(state, expected)
    learn = vision_learner(dls, "resnet18", pretrained=True)
    body = learn.model[0]
    assert torch.allclose(body[0].weight, state["conv1.weight"].sum(1, keepdim=True))  # grey: RGB kernels summed
    assert torch.equal(body[4][0].conv1.weight, state["layer1.0.conv1.weight"])
    # the body starts frozen (but for its batch norms), the head trains
    assert not body[4][0].conv1.weight.requires_grad and body[1].weight.requires_grad
    assert all(p.requires_grad for p in learn.model[1].parameters())
    norms = [t for t in dls.train.batch_tfms if isinstance(t, Normalize)]
    assert len(norms) == 1 and norms[0].mean.numel() == 1  # ImageNet stats averaged for grey images
    assert learn.model(dls.one_batch()[0]).shape == (4, 2)


def test_timm_body_and_missing_weights(dls):
    learn = vision_learner(dls, "resnet10t", pretrained=False, lin_ftrs=[8])
    assert learn.model(dls.one_batch()[0]).shape == (4, 2)
    with pytest.raises(EmberError, match="pretrained=False"):
        vision_learner(dls, "resnet10t.c3_in1k", pretrained=True)


def test_callable_arch_and_rgb_aug(tmp_path):
    dls = _dls(_folder(tmp_path / "data"), mode="RGB", batch_tfms=aug_transforms(size=12))
    xb, _ = dls.one_batch()
    assert xb.shape == (4, 3, 12, 12)

    def tiny(pretrained: bool = False) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    learn = vision_learner(dls, tiny, pretrained=False, lin_ftrs=[4])
    assert learn.model_recipe is None
    assert len(learn.param_groups()) == 2  # a custom model: body and head
    assert learn.model(xb).shape == (4, 2)


def test_export_and_load_predict_the_same(dls, tmp_path):
    import ember

    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], path=tmp_path)
    item = tmp_path / "data" / "valid" / "dark" / "1.png"
    label, idx, probs = learn.predict(item)
    fname = learn.export("tiny.ember", verbose=False)
    loaded = ember.load_learner(fname)
    assert isinstance(loaded, VisionLearner)
    label2, idx2, probs2 = loaded.predict(item)
    assert label2 == label and int(idx2) == int(idx) and torch.allclose(probs2, probs, atol=1e-5)


def test_predict_first_takes_normalize_stats_from_training(tmp_path):
    dls = _dls(_folder(tmp_path / "data", n_train=8), batch_tfms=[Normalize()])
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8])
    norm = next(t for t in dls.train.batch_tfms if isinstance(t, Normalize))
    assert not norm.ready
    item = tmp_path / "data" / "valid" / "light" / "0.png"
    learn.predict(item)
    assert norm.ready
    one = load_image(item, mode="L").float() / 255
    assert abs(float(norm.mean) - float(one.mean())) > 1e-3  # not the statistics of the predicted image


def test_normalize_stats_come_from_training_data_whatever_runs_first(tmp_path):
    import ember
    from ember.core.errors import DataError
    from ember.data.loaders import DataLoaders

    root = tmp_path / "data"
    values = {("train", "dark"): 120, ("train", "light"): 220, ("valid", "dark"): 5, ("valid", "light"): 15}
    for (split, label), v in values.items():  # every training image is far brighter than every validation one
        (root / split / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((16, 16), v, np.uint8)).save(root / split / label / f"{i}.png")
    dls = _dls(root, batch_tfms=[Normalize()])
    norm = next(t for t in dls.valid.batch_tfms if isinstance(t, Normalize))
    dls.valid.one_batch()  # validation first: the statistics still come from a training batch
    assert norm.ready and float(norm.mean) > 0.4

    dls = _dls(root, batch_tfms=[Normalize()])
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], path=tmp_path)
    fname = learn.export("n.ember", verbose=False)  # export sets the statistics from a training batch
    norm = next(t for t in dls.train.batch_tfms if isinstance(t, Normalize))
    assert norm.ready
    loaded = ember.load_learner(fname)
    stats = next(t for t in loaded.dls.train.batch_tfms if isinstance(t, Normalize))
    assert torch.allclose(stats.mean, norm.mean)

    # a file without statistics: inference refuses to learn them from its inputs
    rec = loaded.dls.to_recipe()
    for t in rec["batch_tfms"]:
        if t["type"] == "Normalize":
            t["data"]["mean"] = t["data"]["std"] = None
    bare = DataLoaders.from_recipe(rec)
    with pytest.raises(DataError, match="training batch"):
        bare.test_dl([root / "valid" / "dark" / "0.png"]).one_batch()


def test_torchvision_builder_is_used_by_name_and_never_downloads(tmp_path, monkeypatch):
    import torchvision

    import ember

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    dls = _dls(_folder(tmp_path / "data", n_train=2, n_valid=1))
    with pytest.raises(EmberError, match="local cache"):
        vision_learner(dls, torchvision.models.resnet18)
    learn = vision_learner(dls, torchvision.models.resnet18, pretrained=False, lin_ftrs=[8], path=tmp_path)
    assert learn.model_recipe["kwargs"]["arch"] == "resnet18"
    sizes = [sum(p.numel() for p in g) for g in learn.param_groups()]
    assert sizes[:2] == [
        676_800,
        10_493_440,
    ]  # grey input; as fastai: stem, layer1 and layer2 / layer3 and layer4 / head
    loaded = ember.load_learner(learn.export("tv.ember", verbose=False))  # exportable: no model= needed
    item = tmp_path / "data" / "valid" / "dark" / "0.png"
    assert torch.allclose(loaded.predict(item)[2], learn.predict(item)[2], atol=1e-5)


def test_y_range_unknown_keywords_and_transformer_bodies(dls, tmp_path):
    import ember

    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], y_range=(-1, 1), path=tmp_path)
    out = learn.model(dls.one_batch()[0] * 50).detach()
    assert float(out.min()) >= -1 and float(out.max()) <= 1
    loaded = ember.load_learner(learn.export("y.ember", verbose=False))
    assert type(loaded.model[1][-1]).__name__ == "SigmoidRange"
    with pytest.raises(ConfigError, match=r"unknown keyword.*'y_rnge'.*y_range"):
        vision_learner(dls, "xresnet_tiny", pretrained=False, y_rnge=(0, 1))
    from ember.vision.unet import unet_learner

    with pytest.raises(ConfigError, match=r"unknown keyword.*'foo'.*self_attention"):
        unet_learner(dls, "xresnet_tiny", pretrained=False, foo=1)
    with pytest.raises(ConfigError, match="transformer"):
        vision_learner(dls, "vit_tiny_patch16_224", pretrained=False)


def test_loaded_learner_reads_labelled_items(tmp_path):
    import ember
    from ember.core.errors import DataError

    root = _folder(tmp_path / "data", n_train=2, n_valid=1)
    learn = vision_learner(_dls(root), "xresnet_tiny", pretrained=False, lin_ftrs=[8], path=tmp_path)
    loaded = ember.load_learner(learn.export("f.ember", verbose=False))
    files = sorted((root / "valid").rglob("*.png"))
    dl = loaded.dls.test_dl(files, with_labels=True)  # parent_label travelled with the file
    assert torch.equal(dl.one_batch()[1], torch.tensor([0, 1]))
    assert len(loaded.validate(dl=dl)) >= 1
    (root / "other" / "grey").mkdir(parents=True)
    odd = root / "other" / "grey" / "0.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(odd)
    with pytest.raises(DataError) as err:
        loaded.dls.test_dl([odd], with_labels=True)
    assert "not one of the classes this model knows" in str(err.value)
    assert "training" not in str(err.value) and "splitter" not in str(err.value)

    # a labeller that cannot be written: a clear error, and (input, target) pairs work
    labels = {p: p.parent.name for p in root.rglob("*.png")}
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=lambda p: labels[p],
        item_tfms=[Resize(16)],
    ).dataloaders(root, bs=2, device="cpu", num_workers=0)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], path=tmp_path)
    loaded = ember.load_learner(learn.export("g.ember", verbose=False))
    with pytest.raises(DataError, match=r"reads the targets.*with_labels=True\)"):
        loaded.dls.test_dl(files, with_labels=True)
    pairs = [(f, f.parent.name) for f in files]
    assert torch.equal(loaded.dls.test_dl(pairs, with_labels=True).one_batch()[1], torch.tensor([0, 1]))

    # a compiled pattern (with its flags) travels too
    import re

    from ember.data.items import RegexLabeller

    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=RegexLabeller(re.compile(r"/(DARK|LIGHT)/", re.IGNORECASE)),
        item_tfms=[Resize(16)],
    ).dataloaders(root, bs=2, device="cpu", num_workers=0)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], path=tmp_path)
    loaded = ember.load_learner(learn.export("h.ember", verbose=False))
    assert torch.equal(loaded.dls.test_dl(files, with_labels=True).one_batch()[1], torch.tensor([0, 1]))


def test_tta_runs_random_item_transforms_in_training_mode(tmp_path):
    from ember.vision.augment import RandomResizedCrop

    root = _folder(tmp_path / "data", n_train=2, n_valid=2)
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
        item_tfms=[RandomResizedCrop(12, min_scale=0.2)],
    ).dataloaders(root, bs=4, device="cpu", num_workers=0)
    torch.manual_seed(0)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], ps=0.0)
    plain = learn.get_preds()[0]
    aug, targs = learn.tta(n=3, beta=None)
    assert aug.shape == plain.shape and targs.shape == (4,)
    assert not torch.allclose(aug, plain)  # random crops, not the centre one every time
    top, _ = learn.tta(n=3, beta=None, use_max=True)
    assert top.shape == plain.shape


def test_show_batch_unique_grid_cap_and_unknown_keywords(tmp_path):
    root = _folder(tmp_path / "data", n_train=2, n_valid=1)
    dls = _dls(root, mode="RGB", batch_tfms=aug_transforms(max_lighting=0.5, p_lighting=1.0, p_affine=1.0))
    fig = dls.show_batch(unique=True, max_n=4)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(images) == 4
    assert not np.allclose(images[0], images[1])  # one item, augmented differently
    fig = dls.show_batch(nrows=1, ncols=3)  # the grid caps the number shown
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3
    with pytest.raises(ConfigError, match=r"unknown keyword.*'uniq'.*unique"):
        dls.show_batch(uniq=True)
    # Normalize() statistics never come from copies of the one item shown: a real training batch sets them.
    norm_dls = _dls(root, mode="RGB", batch_tfms=[Normalize()])
    norm_dls.show_batch(unique=True, max_n=4)
    norm = norm_dls.train.batch_tfms[-1]
    x = norm_dls.train.dl.collate_fn([norm_dls.train.dataset[i] for i in range(len(norm_dls.train.dataset))])[0]
    assert norm.ready and float(norm.std.mean()) > 0.3  # dark and light images: a wide spread, not one image's
    assert torch.allclose(norm.mean, x.float().div(255).mean(dim=(0, 2, 3)), atol=0.05)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8])
    with pytest.raises(ConfigError, match=r"unknown keyword.*'ds_idx'"):
        learn.show_results(ds_idx=0)
    fig = learn.show_results(nrows=1, ncols=2)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2


@pytest.mark.parametrize("method", ["crop", "pad", "squish"])
def test_keypoint_predictions_come_back_in_pixels_of_each_image(tmp_path, method):
    from ember.data.items import RandomSplitter
    from ember.vision.core import PointBlock

    # images of several shapes, each with one known point; the "model" answers the point it was shown
    sizes = {"a.png": (20, 30), "b.png": (24, 16), "c.png": (16, 16), "d.png": (12, 40)}
    points = {"a.png": [[7.5, 12.0]], "b.png": [[3.0, 20.5]], "c.png": [[8.0, 8.0]], "d.png": [[30.0, 2.0]]}
    for name, (h, w) in sizes.items():
        Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / name)
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), PointBlock),
        get_items=get_image_files,
        get_y=lambda p: points[p.name],
        splitter=RandomSplitter(0.5, seed=0),
        item_tfms=[Resize(16, method=method)],
    ).dataloaders(tmp_path, bs=2, device="cpu", num_workers=0)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8])
    shown = {}  # what the model's input would be labelled with: the point in [-1, 1] after the item transforms
    for name in sizes:
        sample = (load_image(tmp_path / name, mode="L"), torch.tensor(points[name]))
        for t in learn._item_tfms():
            sample = t(sample, ("image", "points"), 1)
        shown[name] = sample[1].reshape(-1)
    order = []
    learn.predict_tensor = lambda xb: torch.stack([shown[n] for n in order[-1]])
    for name in sizes:
        order.append([name])
        label, dec, _ = learn.predict(tmp_path / name)
        assert torch.allclose(label, torch.tensor(points[name]), atol=1e-4), name
        assert torch.allclose(dec, shown[name], atol=1e-6)  # the model's own output stays as it is
    names = list(sizes)
    order.append(names)
    learn.get_preds = lambda dl, with_decoded: (None, None, torch.stack([shown[n] for n in names]))
    decoded, _, _ = learn.predict_batch([tmp_path / n for n in names])
    for name, label in zip(names, decoded):
        assert torch.allclose(label, torch.tensor(points[name]), atol=1e-4), name


def test_keypoint_predictions_read_each_image_once(tmp_path):
    from ember.data.items import IndexSplitter
    from ember.vision.core import PointBlock

    for i, (h, w) in enumerate([(12, 20), (20, 12), (16, 16)]):
        Image.fromarray(np.full((h, w), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    files = sorted(tmp_path.glob("*.png"))
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), PointBlock),
        get_items=lambda _: files,
        get_y=lambda p: [[1.0, 2.0]],
        splitter=IndexSplitter([0]),
        item_tfms=[Resize(8)],
    ).dataloaders(tmp_path, bs=2, device="cpu", num_workers=0)
    learn = VisionLearner(dls, nn.Sequential(nn.Flatten(), nn.Linear(64, 2), nn.Tanh()), path=tmp_path)
    block = dls.blocks[0]
    read = []
    encode = block.encode
    block.encode = lambda value: read.append(value) or encode(value)
    label, dec, _ = learn.predict(files[0])
    assert len(read) == 1  # the corners that map the answer back to pixels travel with the image
    decoded, decs, _ = learn.predict_batch(files, bs=2)
    assert len(read) == 1 + 3 and len(decoded) == 3 and decs.shape == (3, 2)
    # the same answer as predict's: the model's output (the centre crop of 12x20 is 12x12 from x = 4) in pixels
    assert torch.allclose(decoded[0], label) and torch.allclose(decs[0], dec)
    assert torch.allclose(label, (dec.reshape(1, 2) + 1) / 2 * 12 + torch.tensor([4.0, 0.0]), atol=1e-5)
    with pytest.raises(ConfigError, match="`bs`"):
        learn.predict_batch(files, bs=0)
