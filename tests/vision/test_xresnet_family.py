"""The XResNet family (ResNeXt, SE, deep and deeper variants) and the layers it is built from: SEModule,
SimpleSelfAttention, PooledSelfAttention2d, TimeDistributed and ResBlock's new options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ember.attention import PooledSelfAttention2d, SEBlock, SEModule, SEResNeXtBlock, SimpleSelfAttention
from ember.core.errors import ConfigError, DataError
from ember.layers import ResBlock, SelfAttention, TimeDistributed
from ember.vision.models.registry import create_model, list_models
from ember.vision.models.xresnet import XResNet, xresnet18

# Parameter counts of fastai 2.8.12's models built with n_out=10, c_in=3 (xsenet154: fastai's own factory raises
# a TypeError, so its count is that of the XResNet(SEBlock, 4, [3, 8, 36, 3], groups=64, reduction=16) it means).
FASTAI_COUNTS = {
    "xresnet18_deep": 14_281_066,
    "xresnet50_deep": 28_133_226,
    "xresnet18_deeper": 10_741_098,
    "xresnext18": 13_047_914,
    "xresnext50": 23_019_626,
    "xse_resnet18": 11_290_986,
    "xse_resnet50": 124_748_826,
    "xse_resnet152": 324_045_850,
    "xse_resnext34": 23_638_178,
    "xse_resnext50": 25_550_618,
    "xse_resnext18_deeper": 12_081_018,
    "xse_resnext34_deeper": 22_581_170,
    "xsenet154": 90_931_738,
}
_BEFORE = {"xresnet18", "xresnet34", "xresnet50", "xresnet101", "xresnet152", "xresnet18_deep", "xresnet34_deep"}
_FAMILY = [name for name in list_models() if name not in _BEFORE | {"xresnet_tiny"}]
# the 101-, 152- and 154-layer members take most of the forward time: run in full runs only (their counts always)
_FORWARD_CASES = [pytest.param(n, marks=pytest.mark.slow) if n[-3:] in ("101", "152", "154") else n for n in _FAMILY]
_NARROW = {"stem_szs": (16, 16, 32), "block_szs": (32, 32, 32, 32)}  # fast to run, still 32 groups of 1+ channel


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ------------------------------------------------------------------------------------------------------ models


@pytest.mark.parametrize(("name", "count"), FASTAI_COUNTS.items())
def test_parameter_count_matches_fastai(name: str, count: int) -> None:
    with torch.device("meta"):  # no memory and no init work, even for the 324M-parameter SE-XResNet-152
        model = create_model(name, n_out=10, c_in=3)
    assert _n_params(model) == count


def test_the_family_is_registered() -> None:
    assert len(_FAMILY) == 24
    assert list_models("xse_resnext*_deep*") == [
        "xse_resnext18_deep",
        "xse_resnext18_deeper",
        "xse_resnext34_deep",
        "xse_resnext34_deeper",
        "xse_resnext50_deep",
        "xse_resnext50_deeper",
    ]
    assert {"xresnet50_deep", "xresnext101", "xse_resnet152", "xsenet154"} <= set(_FAMILY)


@pytest.mark.parametrize("name", _FORWARD_CASES)
def test_every_family_member_runs(name: str) -> None:
    model = create_model(name, n_out=10, **_NARROW).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    n_se = sum(isinstance(m, SEModule) for m in model.modules())
    n_blocks = sum(isinstance(m, ResBlock) for m in model.modules())
    assert n_se == (n_blocks if "se" in name else 0)  # "xse_*" and "xsenet*": one SE module per block
    grouped = [m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(grouped) == (n_blocks if ("next" in name or name == "xsenet154") else 0)


def test_deep_variants_add_stages_of_256_channels() -> None:
    with torch.device("meta"):
        model = create_model("xresnet50_deep", n_out=10)
    stages = [m for m in model if isinstance(m, nn.Sequential) and isinstance(m[0], ResBlock)]
    assert [len(s) for s in stages] == [3, 4, 6, 3, 1, 1]
    assert [s[0].convpath[0][0].out_channels for s in stages] == [64, 128, 256, 512, 256, 256]
    assert model.num_features == 256 * 4 and model[-1].in_features == 1024


def test_family_blocks_have_fastai_widths() -> None:
    with torch.device("meta"):
        se = create_model("xse_resnet50", n_out=10)[4][0]  # first block: nf=64, bottleneck
        nxt = create_model("xresnext50", n_out=10)[5][0]  # nf=128: 32 groups of 4 channels per 64
        assert isinstance(se, SEBlock)
    assert [c[0].out_channels for c in se.convpath[:3]] == [128, 256, 256]  # nh1 = 2 nf, nh2 = 4 nf
    assert se.convpath[3].hidden == 16  # 256 // 16
    assert isinstance(nxt, SEResNeXtBlock)
    assert [(c[0].out_channels, c[0].groups) for c in nxt.convpath] == [(256, 1), (256, 32), (512, 1)]


def test_new_names_refuse_pretrained_and_take_options() -> None:
    with pytest.raises(ConfigError, match="pretrained"):
        create_model("xse_resnext50", pretrained=True)
    model = create_model("xse_resnext18", n_out=4, c_in=1, act_cls=nn.Mish, reduction=8, p=0.1, **_NARROW)
    assert model[0][0].in_channels == 1 and model[-1].out_features == 4 and model[-2].p == 0.1
    se = next(m for m in model.modules() if isinstance(m, SEModule))
    assert isinstance(se.act, nn.Mish) and se.hidden == 8
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert create_model("xsenet154", **_NARROW)[-2].p == 0.2
    with pytest.raises(ConfigError, match="`reductoin`"):
        create_model("xse_resnet18", reductoin=8)


def test_xresnet_fastai_style_self_attention() -> None:
    model = xresnet18(n_out=10, sa=True, sa_type="simple", sa_stage=-4)
    assert _n_params(model) == 11_204_971  # fastai's xresnet18(sa=True, n_out=10)
    (attn,) = [m for m in model.modules() if isinstance(m, SimpleSelfAttention)]
    assert attn is model[4][-1].convpath[-1] and attn.n_in == 64  # last block of the first stage
    default = create_model("xse_resnext18", sa=True, **_NARROW)  # ember's default: second-to-last stage
    assert isinstance(default[6][-1].convpath[-1], SelfAttention)
    with pytest.raises(ConfigError, match="sa_stage"):
        XResNet(ResBlock, 1, [1, 1], sa=True, sa_stage=-3)


def _image_folder(root):
    g = np.random.default_rng(0)
    for split in ("train", "valid"):
        for label, mean in (("dark", 50), ("light", 200)):
            (root / split / label).mkdir(parents=True)
            for i in range(2):
                pixels = np.clip(g.normal(mean, 20, size=(16, 16)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return root


def test_export_and_load_a_family_member(tmp_path) -> None:
    import ember
    from ember.data.block import CategoryBlock, DataBlock
    from ember.data.items import GrandparentSplitter, get_image_files, parent_label
    from ember.vision.core import ImageBlock
    from ember.vision.learner import vision_learner

    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
    ).dataloaders(_image_folder(tmp_path / "data"), bs=2, device="cpu", num_workers=0)
    learn = vision_learner(dls, "xse_resnet18", pretrained=False, lin_ftrs=[8], path=tmp_path)
    assert any(isinstance(m, SEModule) for m in learn.model.modules())
    item = tmp_path / "data" / "valid" / "dark" / "0.png"
    _, idx, probs = learn.predict(item)
    loaded = ember.load_learner(learn.export("se.ember", verbose=False))
    _, idx2, probs2 = loaded.predict(item)
    assert int(idx2) == int(idx)
    torch.testing.assert_close(probs2, probs, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------ layers


def test_se_module_scales_channels_by_the_gate() -> None:
    se = SEModule(32, 4)
    assert se.hidden == 8
    assert [SEModule(c, 16).hidden for c in (64, 100, 512, 2048)] == [8, 8, 32, 128]  # ch // 16 up to a multiple of 8
    x = torch.randn(2, 32, 5, 3)
    mean = x.mean(dim=(2, 3))  # (B, C)
    hidden = F.relu(mean @ se.reduce.weight[:, :, 0, 0].T + se.reduce.bias)
    gate = torch.sigmoid(hidden @ se.expand.weight[:, :, 0, 0].T + se.expand.bias)  # (B, C)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])
    # a zero map: the gate of every channel is sigmoid(expand.bias), whatever the first conv does
    zero_gate = se.gate(torch.zeros(1, 32, 4, 4)).flatten()
    torch.testing.assert_close(
        zero_gate, torch.sigmoid(se.expand.bias + se.expand.weight[:, :, 0, 0] @ F.relu(se.reduce.bias))
    )
    assert SEModule(16, 2, ndim=1)(torch.randn(2, 16, 7)).shape == (2, 16, 7)
    with pytest.raises(ConfigError, match="reduction"):
        SEModule(16, 0)
    with pytest.raises(ConfigError, match="act_cls"):
        SEModule(16, 2, act_cls=nn.ReLU())


def test_simple_self_attention_starts_as_identity_then_mixes_positions() -> None:
    attn = SimpleSelfAttention(8).eval()
    x = torch.randn(2, 8, 4, 5)
    assert torch.equal(attn(x), x)  # gamma = 0
    with torch.no_grad():
        attn.gamma.fill_(0.5)
    flat = x.flatten(2)  # (B, C, N)
    w = attn.conv.weight[:, :, 0]  # the spectrally normalized weight, (C, C)
    expected = flat + 0.5 * (flat @ flat.transpose(1, 2)) @ (w @ flat)
    torch.testing.assert_close(attn(x), expected.view_as(x), rtol=1e-4, atol=1e-4)
    # the largest singular value of the normalized weight is about 1
    assert abs(torch.linalg.matrix_norm(w.detach(), ord=2).item() - 1.0) < 0.05


def test_simple_self_attention_sym_uses_the_symmetric_part() -> None:
    attn = SimpleSelfAttention(6, sym=True).eval()
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    before = attn.conv.parametrizations.weight.original.detach().clone()
    x = torch.randn(1, 6, 3, 3)
    flat = x.flatten(2)
    w = attn.conv.weight[:, :, 0]
    sym = (w + w.T) / 2
    expected = flat + (flat @ flat.transpose(1, 2)) @ (sym @ flat)
    torch.testing.assert_close(attn(x), expected.view_as(x), rtol=1e-4, atol=1e-4)
    assert torch.equal(attn.conv.parametrizations.weight.original, before)  # the parameter is not overwritten
    assert SimpleSelfAttention(6, ks=3)(x).shape == x.shape
    with pytest.raises(ConfigError, match="ks"):
        SimpleSelfAttention(6, ks=3, sym=True)


def test_pooled_self_attention() -> None:
    attn = PooledSelfAttention2d(16).eval()
    x = torch.randn(2, 16, 5, 4)  # odd height: keys and values pooled down to 2x2
    assert torch.equal(attn(x), x)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    q = attn.query(x).flatten(2)
    k = F.max_pool2d(attn.key(x), 2).flatten(2)
    v = F.max_pool2d(attn.value(x), 2).flatten(2)
    weights = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, N/4)
    expected = x + attn.out((v @ weights.transpose(1, 2)).view(2, 8, 5, 4))
    torch.testing.assert_close(attn(x), expected)
    assert _n_params(attn) == 16 * 2 * 2 + 16 * 8 * 2 + 1  # query, key, value, out, gamma
    with pytest.raises(DataError, match="H, W >= 2"):
        attn(torch.randn(1, 16, 1, 4))
    with pytest.raises(ConfigError, match="n_channels"):
        PooledSelfAttention2d(4)


def test_time_distributed_applies_the_module_to_every_step() -> None:
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 5, 3, 8, 8)  # (B, T, C, H, W)
    per_step = torch.stack([conv(x[:, t]) for t in range(5)], dim=1)  # (B, T, 4, 4, 4)
    for low_mem in (False, True):
        out = TimeDistributed(conv, low_mem=low_mem)(x)
        assert out.shape == (2, 5, 4, 4, 4)
        torch.testing.assert_close(out, per_step)
    seq_first = TimeDistributed(conv, tdim=0)(x.transpose(0, 1))  # (T, B, C, H, W)
    torch.testing.assert_close(seq_first, per_step.transpose(0, 1))
    lin = nn.Linear(4, 3)
    a, b = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    pair = TimeDistributed(nn.Bilinear(4, 4, 3))(a, b)
    assert pair.shape == (2, 6, 3)
    split = TimeDistributed(_Split(lin), low_mem=True)(a)
    assert isinstance(split, tuple) and [s.shape for s in split] == [(2, 6, 3), (2, 6, 4)]
    with pytest.raises(DataError, match="tdim=1"):
        TimeDistributed(nn.Bilinear(4, 4, 3))(a, torch.randn(2, 5, 4))
    with pytest.raises(ConfigError, match="tdim"):
        TimeDistributed(lin, tdim=-1)


class _Split(nn.Module):
    """A module returning a tuple: its linear layer's output and its input."""

    def __init__(self, lin: nn.Module) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(x), x


def test_res_block_new_options() -> None:
    block = ResBlock(4, 64, 16, reduction=16, nh1=24, nh2=32, g2=2, sa=True, sa_type="simple", sym=True)
    convs = [c[0] for c in block.convpath[:3]]
    assert [(c.in_channels, c.out_channels, c.groups) for c in convs] == [(64, 24, 1), (24, 32, 1), (32, 64, 2)]
    assert isinstance(block.convpath[3], SEModule) and block.convpath[4].sym
    assert block(torch.randn(2, 64, 6, 6)).shape == (2, 64, 6, 6)
    dw = ResBlock(1, 8, 16, stride=2, dw=True)
    assert [c[0].groups for c in dw.convpath] == [8, 1] and dw(torch.randn(1, 8, 6, 6)).shape == (1, 16, 3, 3)
    # unchanged defaults: a basic block groups both convolutions, a bottleneck only the middle one
    assert [c[0].groups for c in ResBlock(1, 8, 8, groups=4).convpath] == [4, 4]
    assert [c[0].groups for c in ResBlock(4, 8, 8, groups=4).convpath] == [1, 4, 1]
    with pytest.raises(ConfigError, match="sa_type"):
        ResBlock(1, 8, 8, sa=True, sa_type="fast")
    with pytest.raises(ConfigError, match="g2"):
        ResBlock(1, 8, 8, g2=3)
    with pytest.raises(ConfigError, match="base_width"):
        SEResNeXtBlock(1, 32, 8)
