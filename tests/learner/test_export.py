"""Safe export and load: round trips, refusals, tied weights, inference helpers."""

from __future__ import annotations

import importlib
import json
import sys
import zipfile

import pytest
import torch
from torch import nn

import ember
from conftest import make_classification
from ember.core.errors import EmberError, ExportError
from ember.data import CategoryBlock, DataBlock, DataLoaders, RegressionBlock
from ember.learner import Learner
from ember.learner.export import FORMAT_VERSION, read_recipe


class TinyNet(nn.Module):
    """A user model whose constructor arguments are kept as attributes (so export can record them)."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 16) -> None:
        super().__init__()
        self.n_in, self.n_out, self.hidden = n_in, n_out, hidden
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.BatchNorm1d(hidden))
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.head(self.body(x))


class Tied(nn.Module):
    def __init__(self, n: int = 6) -> None:
        super().__init__()
        self.n = n
        self.emb = nn.Embedding(10, n)
        self.out = nn.Linear(n, 10)
        self.out.weight = self.emb.weight

    def forward(self, x):
        return self.out(self.emb(x).mean(1))


def rows(n=200):
    x, y = make_classification(n)
    return [(x[i].tolist(), ["no", "yes"][int(y[i])]) for i in range(n)]


@pytest.fixture
def block_learner(tmp_path):
    items = rows()
    dls = DataBlock(
        blocks=(RegressionBlock(n_out=8), CategoryBlock),
        get_x=lambda r: r[0],
        get_y=lambda r: r[1],
    ).dataloaders(items, bs=32, device="cpu")
    learn = Learner(dls, TinyNet(8, 2), path=tmp_path)
    learn.silent = True
    learn.fit_one_cycle(3, 1e-2)
    return learn, items


def test_round_trip_gives_the_same_predictions(block_learner, tmp_path, capsys):
    learn, items = block_learner
    path = learn.export("model.ember")
    assert "Exported to" in capsys.readouterr().out
    assert path == tmp_path / "model.ember"
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["model.safetensors", "recipe.json"]
        weights = z.getinfo("model.safetensors").file_size
    assert path.stat().st_size < weights + 10_000  # weights plus a few KB
    loaded = ember.load_learner(path)
    assert isinstance(loaded.model, TinyNet) and loaded.model.hidden == 16
    xs = [r[0] for r in items[:20]]
    labels, dec, probs = loaded.predict_batch(xs)  # a lambda get_x is not exported: items are the inputs themselves
    ref_labels, ref_dec, ref_probs = learn.predict_batch(items[:20])  # before export, get_x reads the rows
    assert labels == ref_labels and torch.allclose(probs, ref_probs, atol=1e-6)
    label, idx, p = loaded.predict(xs[0])
    assert label in ("no", "yes") and label == labels[0] and torch.isclose(p.sum(), torch.tensor(1.0))
    assert loaded.dls.vocab == ["no", "yes"]
    # A loaded learner holds inference loaders only: training is refused before anything changes.
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    frozen = loaded.frozen_to
    for train in (lambda: loaded.fit_one_cycle(1, 1e-2), lambda: loaded.fine_tune(1), loaded.lr_find):
        with pytest.raises(EmberError, match="no training rows|has none"):
            train()
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in before.items())
    assert loaded.opt is None and loaded.frozen_to == frozen  # nothing built or frozen either
    if not torch.cuda.is_available():
        with pytest.raises(EmberError, match="CUDA is not available"):
            ember.load_learner(path, device="cuda")
    with pytest.raises(EmberError, match="Expected a device"):
        ember.load_learner(path, device="gpu0")
    with pytest.raises(EmberError, match="no items"):
        loaded.predict_batch([])


def test_recipe_contents(block_learner):
    learn, _ = block_learner
    rec = read_recipe(learn.export("m.ember", verbose=False))
    assert rec["format_version"] == FORMAT_VERSION and rec["ember_version"] == ember.__version__
    assert rec["model"]["class"].endswith(":TinyNet") and rec["model"]["kwargs"] == {
        "n_in": 8,
        "n_out": 2,
        "hidden": 16,
    }
    blocks = rec["data"]["data"]["blocks"]
    assert blocks[1]["type"] == "CategoryBlock" and blocks[1]["data"]["vocab"] == ["no", "yes"]


def test_model_of_a_script_needs_model_argument(tmp_path):
    x, y = make_classification(64)
    dls = DataLoaders.from_tensors((x, y), (x, y), bs=16, device="cpu")

    class Local(nn.Module):  # defined in a function: cannot be imported by name
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 2)

        def forward(self, x):
            return self.lin(x)

    learn = Learner(dls, Local(), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    path = learn.export("local.ember", verbose=False)
    with pytest.raises(ExportError, match=r"load_learner\(path, model="):
        ember.load_learner(path)
    loaded = ember.load_learner(path, model=Local())
    assert torch.equal(loaded.model.lin.weight, learn.model.lin.weight)
    assert isinstance(loaded.loss_func, nn.CrossEntropyLoss)


USER_MODULE = """
from pathlib import Path

from torch import nn

Path(__file__).with_name("imported.txt").write_text("the module ran")  # what importing it does


class Net(nn.Module):
    def __init__(self, n_in: int = 8, n_out: int = 2) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.lin = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.lin(x)
"""


def test_a_class_is_rebuilt_only_when_its_module_is_already_imported(tmp_path, monkeypatch):
    (tmp_path / "usernets_for_export.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("usernets_for_export")
    x, y = make_classification(64)
    dls = DataLoaders.from_tensors((x, y), (x, y), bs=16, device="cpu")
    learn = Learner(dls, module.Net(), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    path = learn.export("user.ember", verbose=False)
    recorded = {"class": "usernets_for_export:Net", "kwargs": {"n_in": 8, "n_out": 2}, "complete": True}
    assert read_recipe(path)["model"] == recorded
    assert torch.equal(ember.load_learner(path).model.lin.weight, learn.model.lin.weight)  # imported: rebuilt

    monkeypatch.delitem(sys.modules, "usernets_for_export")  # a fresh process that has not imported it
    (tmp_path / "imported.txt").unlink()
    with pytest.raises(ExportError, match=r"usernets_for_export:Net.*import usernets_for_export first, or pass"):
        ember.load_learner(path)
    assert "usernets_for_export" not in sys.modules and not (tmp_path / "imported.txt").exists()  # nothing ran
    assert torch.equal(ember.load_learner(path, model=module.Net()).model.lin.weight, learn.model.lin.weight)


def test_tied_weights_are_stored_once_and_restored_tied(tmp_path):
    x = torch.randint(0, 10, (32, 4))
    y = torch.randint(0, 10, (32,))
    learn = Learner(
        DataLoaders.from_tensors((x, y), device="cpu"), Tied(), loss_func=nn.CrossEntropyLoss(), path=tmp_path
    )
    path = learn.export("tied.ember", verbose=False)
    assert read_recipe(path)["aliases"] == {"out.weight": "emb.weight"}
    loaded = ember.load_learner(path)
    assert loaded.model.out.weight is loaded.model.emb.weight
    assert torch.equal(loaded.model.emb.weight, learn.model.emb.weight)


def _rewrite(src, dst, members):
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_refusals(block_learner, tmp_path):
    learn, _ = block_learner
    path = learn.export("ok.ember", verbose=False)
    members = _members(path)

    truncated = tmp_path / "truncated.ember"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ExportError, match="truncated or corrupt"):
        ember.load_learner(truncated)

    newer = tmp_path / "newer.ember"
    rec = json.loads(members["recipe.json"])
    rec["format_version"] = FORMAT_VERSION + 1
    _rewrite(path, newer, {**members, "recipe.json": json.dumps(rec)})
    with pytest.raises(ExportError, match="Upgrade ember"):
        ember.load_learner(newer)

    pickled = tmp_path / "pickle.ember"
    _rewrite(path, pickled, {**members, "data.pkl": b"\x80\x04K\x01."})
    with pytest.raises(ExportError, match="unexpected members.*data.pkl"):
        ember.load_learner(pickled)

    escape = tmp_path / "escape.ember"
    _rewrite(path, escape, {**members, "../evil.txt": b"x"})
    with pytest.raises(ExportError, match="unexpected members"):
        ember.load_learner(escape)

    mismatch = tmp_path / "mismatch.ember"
    rec = json.loads(members["recipe.json"])
    rec["model"]["kwargs"]["hidden"] = 32
    _rewrite(path, mismatch, {**members, "recipe.json": json.dumps(rec)})
    with pytest.raises(ExportError, match="shapes differ"):
        ember.load_learner(mismatch)

    evil_class = tmp_path / "class.ember"
    rec = json.loads(members["recipe.json"])
    rec["model"]["class"] = "os:system"
    _rewrite(path, evil_class, {**members, "recipe.json": json.dumps(rec)})
    with pytest.raises(ExportError, match="not an nn.Module class"):
        ember.load_learner(evil_class)

    rec["model"]["kwargs"] = {"bias": True}
    for target, message in (
        ("torch.nn:Linear", r"torch.nn:Linear refused the arguments the file records"),
        ("torch.nn.Linear", r"expected an import path 'module:Class'"),
        ("torch.nn:Nothing", r"the module 'torch.nn' does not define"),
    ):
        rec["model"]["class"] = target
        _rewrite(path, evil_class, {**members, "recipe.json": json.dumps(rec)})
        with pytest.raises(ExportError, match=message):
            ember.load_learner(evil_class)

    with pytest.raises(ExportError, match="No model file"):
        ember.load_learner(tmp_path / "missing.ember")


def test_unexportable_inference_transform_is_named(tmp_path):
    items = rows(64)
    dls = DataBlock(
        blocks=(RegressionBlock(n_out=8), CategoryBlock),
        get_x=lambda r: r[0],
        get_y=lambda r: r[1],
        item_tfms=[lambda s: s],
    ).dataloaders(items, bs=16, device="cpu")
    learn = Learner(dls, TinyNet(8, 2), path=tmp_path)
    with pytest.raises(ExportError, match="FuncTransform.*cannot be written"):
        learn.export("x.ember", verbose=False)
