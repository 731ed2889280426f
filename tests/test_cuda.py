"""Checks on a CUDA GPU: precisions, loaders (pinned memory, workers), fused optimizers, channels-last, batch
augmentation on the device, resume, export, and one epoch of every application.

They are skipped without a GPU (CI has none); run them with ``pytest -q tests/test_cuda.py`` on a machine with
one. Everything is tiny: the module takes seconds once CUDA is up.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from conftest import make_classification, tiny_model
from ember.core.seed import set_seed
from ember.data import DataLoaders
from ember.data.block import CategoryBlock, DataBlock
from ember.data.items import GrandparentSplitter, get_image_files, parent_label
from ember.data.loaders import make_loader
from ember.learner import Callback, Learner
from ember.metrics import accuracy
from ember.vision.augment import Resize, aug_transforms
from ember.vision.core import ImageBlock
from ember.vision.learner import vision_learner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CL = torch.channels_last


# -- tiny data -----------------------------------------------------------------------------------------------
def _cuda_dls(n_train: int = 256, n_valid: int = 64, bs: int = 32) -> DataLoaders:
    x, y = make_classification(n_train + n_valid)
    train, valid = (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])
    return DataLoaders.from_tensors(train, valid, bs=bs, device="cuda")


def _cuda_learner(tmp_path, seed: int = 0, **kwargs) -> Learner:
    set_seed(seed)
    learn = Learner(_cuda_dls(), tiny_model(seed=seed), loss_func=nn.CrossEntropyLoss(), path=tmp_path, **kwargs)
    learn.silent = True
    return learn


def _image_folder(root, n_train: int = 6, n_valid: int = 2):
    """Dark and light noisy 16x16 images in ``train/`` and ``valid/`` folders, one folder per label."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", n_valid)):
        for label, level in (("dark", 50), ("light", 200)):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(level, 25, size=(16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _image_dls(root, device: str = "cuda", batch_tfms=None, **kwargs) -> DataLoaders:
    return DataBlock(
        blocks=(ImageBlock(mode="RGB"), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
        item_tfms=[Resize(16)],
        batch_tfms=batch_tfms,
    ).dataloaders(root, bs=4, device=device, **kwargs)


class _PredDtype(Callback):
    """Records the dtype of the model's output, batch by batch."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def after_pred(self) -> None:
        self.dtypes.add(self.learn.pred.dtype)


def _finite_params(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# -- the learner ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "precision, out_dtype", [("32", torch.float32), ("16-mixed", torch.float16), ("bf16-mixed", torch.bfloat16)]
)
def test_precisions_train_on_cuda(tmp_path, precision, out_dtype):
    learn = _cuda_learner(tmp_path, precision=precision, metrics=accuracy)
    assert next(learn.model.parameters()).device.type == "cuda"
    spy = _PredDtype()
    learn.fit_one_cycle(5, 1e-2, cbs=spy)
    assert spy.dtypes == {out_dtype}  # autocast ran (or did not) on the GPU
    if precision == "16-mixed":
        assert isinstance(learn.scaler, torch.amp.GradScaler) and learn.scaler.is_enabled()
        assert math.isfinite(learn.scaler.get_scale()) and learn.scaler.get_scale() > 0
    else:
        assert learn.scaler is None
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # weights stay float32
    assert _finite_params(learn.model)
    first, last = learn.recorder.values[0], learn.recorder.values[-1]  # [train_loss, valid_loss, accuracy]
    assert all(math.isfinite(v) for v in last)
    assert last[0] < first[0] and last[1] < first[1]
    assert last[2] > 0.85  # an easy, nearly linearly separable problem


def test_fused_adam_on_cuda(tmp_path):
    learn = _cuda_learner(tmp_path)
    opt = learn.create_opt()
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults.get("fused") is True and all(g.get("fused") is True for g in opt.param_groups)
    learn.fit(1, 1e-2)
    assert learn.opt is opt
    state = opt.state[next(learn.model.parameters())]
    assert state["exp_avg"].device.type == "cuda" and state["step"].device.type == "cuda"  # fused keeps step on GPU
    assert _finite_params(learn.model)


# -- data ----------------------------------------------------------------------------------------------------
def test_loaders_pin_memory_and_deliver_on_cuda(tmp_path):
    root = _image_folder(tmp_path / "data")
    dls = _image_dls(root, num_workers=0)
    assert dls.device.type == "cuda"
    for dl in dls.loaders:
        assert dl.dl.pin_memory is True
        xb, yb = dl.one_batch()
        assert xb.device.type == "cuda" and yb.device.type == "cuda"
        assert xb.shape == (4, 3, 16, 16) and xb.dtype == torch.float32

    workers = _image_dls(root, num_workers=2)
    assert workers.train.dl.num_workers == 2 and workers.train.dl.pin_memory is True
    for one, two in ((dls.train, workers.train), (dls.valid, workers.valid)):
        plain, parallel = list(one), list(two)
        assert all(x.device.type == "cuda" for batch in parallel for x in batch)
        xa, xp = torch.cat([x for x, _ in plain]), torch.cat([x for x, _ in parallel])
        assert xa.shape == xp.shape
        # the same samples (the training loader shuffles: compare them sorted by a per-image key)
        ka, kp = xa.double().flatten(1).sum(1).sort().values, xp.double().flatten(1).sum(1).sort().values
        assert torch.allclose(ka, kp)
    assert torch.equal(torch.cat([x for x, _ in dls.valid]), torch.cat([x for x, _ in workers.valid]))  # in order


def test_make_loader_with_workers_on_cuda():
    x = torch.arange(40, dtype=torch.float32)[:, None]  # (40, 1): each sample names itself
    y = torch.arange(40)
    dl = make_loader(TensorDataset(x, y), bs=8, shuffle=True, num_workers=2, device="cuda")
    assert dl.pin_memory is True and dl.num_workers == 2 and dl.persistent_workers
    dls = DataLoaders(dl, device="cuda")
    for _ in range(2):  # two epochs: the persistent workers serve the second one too
        batches = list(dls.train)
        assert all(xb.device.type == "cuda" and yb.device.type == "cuda" for xb, yb in batches)
        seen = torch.cat([yb for _, yb in batches]).cpu()
        assert torch.equal(seen.sort().values, y)
        assert torch.equal(torch.cat([xb for xb, _ in batches]).cpu()[:, 0].long(), seen)


def test_aug_transforms_run_on_the_gpu_like_on_the_cpu(tmp_path):
    root = _image_folder(tmp_path / "data")

    def first_batch(device: str):
        set_seed(3)
        dls = _image_dls(root, device=device, batch_tfms=aug_transforms(size=12), num_workers=0)
        set_seed(4)
        return dls.train.one_batch(), dls.valid.one_batch()

    (gx, gy), (gvx, _) = first_batch("cuda")
    assert gx.device.type == "cuda" and gx.shape == (4, 3, 12, 12) and gx.dtype == torch.float32
    assert gvx.device.type == "cuda" and gvx.shape == (4, 3, 12, 12)  # validation is resized too, not augmented
    assert float(gx.min()) >= 0.0 and float(gx.max()) <= 1.0
    (cx, cy), (cvx, _) = first_batch("cpu")
    # The random draws are made on the CPU in both cases: the GPU resamples the same images the same way.
    assert torch.equal(gy.cpu(), cy)
    assert torch.allclose(gx.cpu(), cx, atol=1e-3)
    assert torch.allclose(gvx.cpu(), cvx, atol=1e-3)


# -- channels-last -------------------------------------------------------------------------------------------
def test_channels_last_vision_learner_in_mixed_precision(tmp_path):
    dls = _image_dls(_image_folder(tmp_path / "data"), num_workers=0)
    torch.manual_seed(0)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], precision="16-mixed", path=tmp_path)
    learn.silent = True
    assert learn.to_channels_last() is learn
    seen: list[bool] = []
    hook = learn.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=CL)))
    learn.fit_one_cycle(1, 1e-2)
    hook.remove()
    assert seen and all(seen)
    convs = [m.weight for m in learn.model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=CL) for w in convs)
    assert any(not w.is_contiguous() for w in convs)  # really converted (not only 1x1 kernels)
    assert all(w.device.type == "cuda" for w in convs)
    assert all(math.isfinite(v) for v in learn.recorder.losses) and math.isfinite(learn.recorder.values[-1][1])
    assert _finite_params(learn.model)
    preds, targs = learn.get_preds()
    assert preds.shape == (4, 2) and torch.isfinite(preds).all() and targs.shape == (4,)


# -- checkpoints and export ----------------------------------------------------------------------------------
class _CrashAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_epoch(self) -> None:
        if self.learn.epoch == self.epoch + 1:
            raise RuntimeError("power cut")


def test_resume_on_cuda_gives_the_same_weights(tmp_path):
    from ember.core.errors import CallbackError

    def make(path, seed=0):
        learn = _cuda_learner(path, seed=seed, metrics=accuracy)
        learn.model.append(nn.Dropout(0.1))  # draws from the CUDA generator: resume must restore it
        return learn

    full = make(tmp_path / "a")
    full.fit_one_cycle(4, 1e-2)

    crashed = make(tmp_path / "b")
    with pytest.raises(CallbackError, match="power cut"):
        crashed.fit_one_cycle(4, 1e-2, checkpoint="run", cbs=_CrashAfter(1))
    assert (tmp_path / "b" / "models" / "run.ckpt").exists()

    resumed = make(tmp_path / "b", seed=123)  # as in a new process
    epochs: list[int] = []

    class Spy(Callback):
        def before_epoch(self):
            epochs.append(self.learn.epoch)

    resumed.fit_one_cycle(4, 1e-2, checkpoint="run", resume=True, cbs=Spy())
    assert epochs == [2, 3]
    assert next(resumed.model.parameters()).device.type == "cuda"
    assert all(v.device.type == "cuda" for s in resumed.opt.state.values() for v in s.values() if torch.is_tensor(v))
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), k
    assert len(resumed.recorder.values) == 4
    assert resumed.recorder.values[-1][:2] == pytest.approx(full.recorder.values[-1][:2], abs=1e-5)


def test_export_on_cuda_then_load_on_cpu_and_cuda(tmp_path):
    import ember

    root = _image_folder(tmp_path / "data")
    dls = _image_dls(root, num_workers=0)
    torch.manual_seed(0)
    learn = vision_learner(dls, "xresnet_tiny", pretrained=False, lin_ftrs=[8], ps=0.0, path=tmp_path)
    learn.silent = True
    learn.fit_one_cycle(4, 1e-2)
    items = sorted((root / "valid").rglob("*.png"))
    ref = [learn.predict(p) for p in items]
    # The most confident item: CPU and GPU kernels round differently (TF32 convolutions), never by this much.
    best = max(range(len(items)), key=lambda i: float(ref[i][2].max()))
    label, idx, probs = ref[best]
    assert float(probs.max()) > 0.52

    fname = learn.export("tiny.ember", verbose=False)
    on_cpu = ember.load_learner(fname)
    on_gpu = ember.load_learner(fname, device="cuda")
    assert next(on_cpu.model.parameters()).device.type == "cpu"
    assert next(on_gpu.model.parameters()).device.type == "cuda"
    for loaded, atol in ((on_gpu, 1e-4), (on_cpu, 2e-2)):
        label2, idx2, probs2 = loaded.predict(items[best])
        assert label2 == label and int(idx2) == int(idx)
        assert probs2.device.type == "cpu" and torch.allclose(probs2, probs, atol=atol)


# -- applications --------------------------------------------------------------------------------------------
def test_text_language_model_in_mixed_precision_and_classifier_on_cuda(tmp_path):
    from ember.text.data import TextDataLoaders
    from ember.text.learner import language_model_learner, text_classifier_learner

    words = "one two three four five six seven eight".split()
    texts = [" ".join(words * 5) for _ in range(10)]
    lm_dls = TextDataLoaders.from_texts(texts[:8], texts[8:], is_lm=True, bs=4, seq_len=10, min_freq=1, device="cuda")
    config = dict(emb_sz=16, n_hid=32, n_layers=2)
    torch.manual_seed(0)
    lm = language_model_learner(lm_dls, pretrained=False, config=config, precision="16-mixed", path=tmp_path)
    lm.silent = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm.fit(1, 1e-2)  # weight dropout on (drop_mult=1): the cuDNN LSTM sees a fresh hidden-to-hidden matrix
    rnn_warnings = [str(w.message) for w in caught if "contiguous" in str(w.message) or "flatten" in str(w.message)]
    assert not rnn_warnings
    assert next(lm.model.parameters()).device.type == "cuda"
    assert isinstance(lm.scaler, torch.amp.GradScaler)
    assert lm.recorder.losses and all(math.isfinite(v) for v in lm.recorder.losses)
    assert all(math.isfinite(v) for v in lm.recorder.values[-1][:2])
    assert _finite_params(lm.model)

    labels = ["a" if i % 2 else "b" for i in range(24)]
    docs = [" ".join(words[:4] if i % 2 else words[4:]) for i in range(24)]
    clas_dls = TextDataLoaders.from_texts(
        docs[:16], docs[16:], labels[:16], labels[16:], bs=8, vocab=lm_dls.vocab, device="cuda"
    )
    torch.manual_seed(0)
    clas = text_classifier_learner(clas_dls, pretrained=False, config=config, seq_len=8, path=tmp_path)
    clas.silent = True
    xb, yb = clas_dls.one_batch()
    assert xb.device.type == "cuda"
    clas.model.eval()
    with torch.no_grad():
        out = clas.model(xb)
    assert out.device.type == "cuda" and out.shape == (xb.shape[0], 2) and torch.isfinite(out).all()
    preds, targs = clas.get_preds()
    assert preds.shape == (8, 2) and torch.isfinite(preds).all()
    assert torch.allclose(preds.sum(1), torch.ones(8), atol=1e-4)


def _lm_pair(drop: float = 0.0):
    """Two copies of one small language model on the GPU: the second trains through CUDA graphs."""
    import copy

    from ember.text.models import get_language_model

    torch.manual_seed(0)
    config = dict(emb_sz=16, n_hid=32, n_layers=3, embed_p=0.0, output_p=0.0)
    config.update(hidden_p=drop, input_p=drop, weight_p=drop)
    eager = get_language_model(40, config=config, drop_mult=1.0).cuda().train()
    graphed = copy.deepcopy(eager)
    graphed[0].cuda_graphs = True
    return eager, graphed


def _lm_step(model, x, lr=0.1):
    out = model(x)  # (B, T, V)
    raw = model[0].hidden[-1][0]
    loss = out.float().logsumexp(-1).mean() + (out[:, 1:] - out[:, :-1]).pow(2).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    model.zero_grad(set_to_none=True)
    return out.detach(), raw.clone(), loss.detach(), grads


def test_cuda_graphs_train_the_awd_lstm_exactly_as_without():
    eager, graphed = _lm_pair()
    gen = torch.Generator().manual_seed(1)
    lengths = [5, 7, 5, 7, 5, 9, 7, 5, 7]  # 5 and 7 are recorded and replayed from their second call
    for t in lengths:
        x = torch.randint(0, 40, (4, t), generator=gen).cuda()
        a, b = _lm_step(eager, x), _lm_step(graphed, x)
        torch.testing.assert_close(b[0], a[0], rtol=1e-4, atol=1e-5)  # outputs
        torch.testing.assert_close(b[1], a[1], rtol=1e-4, atol=1e-5)  # the carried hidden state
        torch.testing.assert_close(b[2], a[2], rtol=1e-4, atol=1e-5)  # loss
        assert b[3].keys() == a[3].keys()
        for name in a[3]:
            torch.testing.assert_close(b[3][name], a[3][name], rtol=1e-4, atol=1e-5, msg=name)
    graphs = graphed[0]._graphs
    assert graphs.failed is None, graphs.failed
    assert len(graphs.recordings) == 2 and graphs.replays == 6, graphs.skipped  # and the updates reached the replays
    assert graphs.skipped == {"rare shape": 3}


def test_cuda_graphs_freeze_and_fallbacks():
    eager, graphed = _lm_pair()
    for model in (eager, graphed):  # train only the last layer: a recording per set of trainable weights
        for p in model[0].rnns[:2].parameters():
            p.requires_grad_(False)
    x = torch.randint(0, 40, (4, 6)).cuda()
    for _ in range(3):
        a, b = _lm_step(eager, x), _lm_step(graphed, x)
        for name in a[3]:
            torch.testing.assert_close(b[3][name], a[3][name], rtol=1e-4, atol=1e-5, msg=name)
    graphs = graphed[0]._graphs
    assert graphs.replays == 2 and not any("rnns.0" in n for n in b[3]), graphs.skipped
    # Two forwards before one backward: the second cannot replay (it would overwrite what the first's backward
    # reads), and both backwards are right.
    before = graphs.replays
    for model in (eager, graphed):
        model[0].reset()
    outs = [(m(x), m(x)) for m in (eager, graphed)]
    for o1, o2 in outs:
        (o1.pow(2).mean() + o2.pow(2).mean()).backward()
    assert graphs.replays == before + 1 and graphs.skipped["pending backward"] == 1
    for (n, p), q in zip(eager.named_parameters(), graphed.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=n)
    # A hook on a layer would run only while recording: such calls run without a graph.
    handle = graphed[0].rnns[2].register_forward_hook(lambda *a: None)
    graphed.zero_grad()
    graphed(x).sum().backward()
    assert graphs.replays == before + 1 and graphs.skipped["hooks"] == 1
    handle.remove()
    with torch.no_grad():
        graphed(x)  # nothing to differentiate: no replay
    assert graphs.skipped["no gradient"] == 1
    graphed.eval()
    graphed(x)  # evaluation does not even ask
    assert graphs.replays == before + 1 and sum(graphs.skipped.values()) == 4
    # Unfrozen: the frozen set's recording can never replay again and is dropped; the length is recorded anew.
    graphed.train()
    for p in graphed.parameters():
        p.requires_grad_(True)
    for _ in range(2):
        graphed.zero_grad()
        graphed[0].reset()
        graphed(x).sum().backward()
    assert len(graphs.recordings) == 1 and graphs.replays == before + 2, graphs.skipped
    assert all(p.grad is not None for p in graphed[0].rnns.parameters())


def test_cuda_graphs_draw_fresh_dropout_masks_and_train_a_language_model(tmp_path):
    from ember.text.data import TextDataLoaders
    from ember.text.learner import language_model_learner

    _, graphed = _lm_pair(drop=0.3)
    x = torch.randint(0, 40, (4, 6)).cuda()
    outs = []
    for _ in range(4):
        graphed[0].reset()
        outs.append(graphed(x).detach())
        graphed.zero_grad()
    assert graphed[0]._graphs.replays == 3, graphed[0]._graphs.skipped  # each output was dropped before the next call
    assert not torch.equal(outs[2], outs[3])  # each replay draws its own masks

    words = "one two three four five six seven eight".split()
    texts = [" ".join(words * 5) for _ in range(10)]
    dls = TextDataLoaders.from_texts(texts[:8], texts[8:], is_lm=True, bs=4, seq_len=6, min_freq=1, device="cuda")
    for precision in ("32", "16-mixed"):
        torch.manual_seed(0)
        learn = language_model_learner(
            dls, pretrained=False, config=dict(emb_sz=16, n_hid=32, n_layers=2), precision=precision, path=tmp_path
        )
        learn.silent = True
        learn.fit(4, 1e-2)
        graphs = learn.model[0]._graphs
        assert graphs is not None and graphs.failed is None and graphs.replays > 0, (precision, graphs.skipped)
        losses = learn.recorder.values
        assert all(math.isfinite(v) for row in losses for v in row[:2])
        assert losses[-1][1] < losses[0][1], precision  # validation loss fell


def test_tabular_one_epoch_on_cuda():
    from ember.data.builtin import penguins
    from ember.tabular import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner

    conts = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    df = penguins()
    dls = TabularDataLoaders.from_df(
        df,
        y_names="species",
        cat_names=["island", "sex"],
        cont_names=conts,
        procs=[Categorify, FillMissing, Normalize],
        bs=32,
        seed=0,
        device="cuda",
    )
    cats, conts_b, yb = dls.one_batch()
    assert cats.device.type == conts_b.device.type == yb.device.type == "cuda"
    torch.manual_seed(0)
    learn = tabular_learner(dls, metrics=accuracy, precision="16-mixed")
    learn.silent = True
    before = learn.validate()[0]
    learn.fit_one_cycle(1, 1e-2)
    loss, acc = learn.validate()
    assert math.isfinite(loss) and loss < before
    assert _finite_params(learn.model)
    label, _, probs = learn.predict(df.iloc[0])
    assert label in learn.dls.vocab and probs.shape == (3,) and torch.isfinite(probs.float()).all()


def test_collab_one_epoch_on_cuda():
    from ember.collab import CollabDataLoaders, collab_learner
    from ember.data.builtin import synthetic_ratings

    ratings = synthetic_ratings(100, 80, n_factors=2, density=0.5, noise=0.3, seed=0)
    dls = CollabDataLoaders.from_df(ratings, bs=128, seed=0, device="cuda")
    xb, yb = dls.one_batch()
    assert xb.device.type == "cuda" and yb.device.type == "cuda"
    torch.manual_seed(0)
    learn = collab_learner(dls, n_factors=4, y_range=(0.5, 5.5))
    learn.silent = True
    before = learn.validate()[0]
    learn.fit_one_cycle(1, 3e-2, wd=0.05)
    after = learn.validate()[0]
    assert math.isfinite(after) and after < before
    assert _finite_params(learn.model)
    u, i = int(ratings.iloc[0]["user"]), int(ratings.iloc[0]["item"])
    pred = learn.predict((u, i))
    assert isinstance(pred, float) and 0.5 <= pred <= 5.5


# -- segmentation ------------------------------------------------------------------------------------------------
def test_unet_segmentation_on_cuda_in_mixed_precision_and_channels_last(tmp_path):
    from ember.data.builtin import shapes_segmentation
    from ember.metrics import Dice, foreground_acc
    from ember.vision.core import load_mask
    from ember.vision.data import SegmentationDataLoaders
    from ember.vision.unet import unet_learner

    path = shapes_segmentation(n_images=24, size=32, path=tmp_path / "shapes")

    def shape_or_not(p):
        return (torch.as_tensor(load_mask(path / "labels" / f"{p.stem}.png")) > 0).long()

    dls = SegmentationDataLoaders.from_label_func(
        path, get_image_files(path / "images"), shape_or_not, codes=["background", "shape"], bs=4, device="cuda"
    )
    torch.manual_seed(0)
    learn = unet_learner(
        dls, "xresnet_tiny", pretrained=False, metrics=[foreground_acc, Dice()], precision="16-mixed", path=tmp_path
    )
    learn.silent = True
    learn.to_channels_last().fit_one_cycle(2, 1e-2)
    assert all(math.isfinite(v) for v in learn.recorder.losses) and _finite_params(learn.model)
    mask, _, probs = learn.predict(path / "images" / "0000.png")
    assert mask.shape == (32, 32) and mask.device.type == "cpu" and probs.shape == (2, 32, 32)
    masks = learn.predict_batch([path / "images" / "0001.png", path / "images" / "0002.png"])[0]
    assert len(masks) == 2 and all(m.shape == (32, 32) for m in masks)


@pytest.mark.parametrize("precision", ["32", "16-mixed"])
def test_wgan_on_cuda_exports_a_generator_that_loads_on_the_cpu(tmp_path, precision):
    from ember.learner.export import load_learner
    from ember.vision.augment import Normalize
    from ember.vision.gan import GANLearner, basic_critic, basic_generator

    _image_folder(tmp_path / "imgs")
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"),),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        batch_tfms=Normalize.from_stats([0.5], [0.5]),
    ).dataloaders(tmp_path / "imgs", bs=4, device="cuda")
    torch.manual_seed(0)
    g, c = basic_generator(16, 1, in_sz=8, n_features=8), basic_critic(16, 1, n_features=8)
    learn = GANLearner.wgan(dls, g, c, precision=precision, path=tmp_path)
    learn.silent = True
    learn.fit(3, 1e-3)
    assert all(math.isfinite(v) for v in learn.recorder.losses) and _finite_params(learn.model)
    critic = torch.cat([p.detach().flatten() for p in learn.model.critic.parameters()])
    assert float(critic.abs().max()) <= 0.01 + 1e-6 and critic.device.type == "cuda"
    noise = torch.randn(3, 8)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # float32 convolutions, as on the CPU
        images = learn.generate(noise=noise)
    assert images.shape == (3, 1, 16, 16) and images.device.type == "cpu"
    loaded = load_learner(learn.export(tmp_path / "gen.ember", verbose=False))
    assert torch.allclose(loaded.generate(noise=noise), images, atol=2e-2 if precision != "32" else 1e-5)
