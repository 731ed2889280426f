from __future__ import annotations

import pytest
import torch
from torch import nn

from ember.core.errors import ConfigError
from ember.layers import (
    AdaptiveConcatPool2d,
    BatchNorm,
    ConvLayer,
    Embedding,
    Flatten,
    LinBnDrop,
    MergeLayer,
    PixelShuffle_ICNR,
    ResBlock,
    SelfAttention,
    SequentialEx,
    SigmoidRange,
    icnr_init,
    in_channels,
    init_default,
    num_features_model,
    res_block,
    simple_cnn,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------- ConvLayer


def test_conv_layer_default_order_and_shapes() -> None:
    layer = ConvLayer(3, 8, stride=2)
    assert [type(m) for m in layer] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    conv = layer[0]
    assert conv.padding == (1, 1) and conv.bias is None  # bias is redundant before batch norm
    assert layer(torch.randn(2, 3, 16, 16)).shape == (2, 8, 8, 8)


def test_conv_layer_bn_1st_false_puts_act_before_norm() -> None:
    layer = ConvLayer(3, 8, bn_1st=False)
    assert [type(m) for m in layer] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    # numerically: norm(relu(conv(x))) in train mode
    x = torch.randn(4, 3, 8, 8)
    expected_out = nn.functional.batch_norm(torch.relu(layer[0](x)), None, None, training=True)
    torch.testing.assert_close(layer(x), expected_out)


def test_conv_layer_bias_when_no_batch_norm_and_no_act() -> None:
    layer = ConvLayer(4, 5, norm_type=None, act_cls=None)
    assert len(layer) == 1 and layer[0].bias is not None
    assert torch.count_nonzero(layer[0].bias) == 5  # no ReLU: PyTorch's default init is kept
    relu = ConvLayer(4, 5, norm_type=None)
    assert torch.count_nonzero(relu[0].bias) == 0  # Kaiming init for the weight, zero bias
    custom = ConvLayer(4, 5, norm_type="spectral", act_cls=None, init=nn.init.ones_)
    torch.testing.assert_close(custom[0].parametrizations.weight.original, torch.ones(5, 4, 3, 3))


def test_conv_layer_batch_zero_starts_at_zero() -> None:
    layer = ConvLayer(3, 6, norm_type="batch_zero", act_cls=None)
    bn = layer[1]
    assert torch.equal(bn.weight, torch.zeros(6)) and torch.equal(bn.bias, torch.zeros(6))
    assert torch.equal(layer(torch.randn(2, 3, 5, 5)), torch.zeros(2, 6, 5, 5))
    assert torch.equal(ConvLayer(3, 6)[1].weight, torch.ones(6))


def test_conv_layer_ndim_transpose_and_instance_norm() -> None:
    assert [type(m) for m in ConvLayer(2, 4, ndim=1)][:2] == [nn.Conv1d, nn.BatchNorm1d]
    assert type(ConvLayer(2, 4, ndim=3, norm_type="instance")[1]) is nn.InstanceNorm3d
    up = ConvLayer(4, 2, ks=2, stride=2, transpose=True)
    assert isinstance(up[0], nn.ConvTranspose2d) and up[0].padding == (0, 0)
    assert up(torch.randn(1, 4, 5, 5)).shape == (1, 2, 10, 10)


def test_conv_layer_kaiming_init_for_relu() -> None:
    layer = ConvLayer(64, 64, act_cls=nn.ReLU)
    # Kaiming normal (fan_in, gain sqrt 2): std = sqrt(2 / (64 * 3 * 3)) ~= 0.0589
    assert layer[0].weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)


def test_conv_layer_spectral_and_weight_norm() -> None:
    spec = ConvLayer(3, 4, norm_type="spectral")
    assert nn.utils.parametrize.is_parametrized(spec[0], "weight") and spec[0].bias is not None
    assert len(spec) == 2  # conv + act, no batch norm
    wn = ConvLayer(3, 4, norm_type="weight", act_cls=None)
    assert hasattr(wn[0].parametrizations.weight, "original0")
    assert spec(torch.randn(1, 3, 6, 6)).shape == (1, 4, 6, 6)


def test_conv_layer_xtra_and_kwargs() -> None:
    layer = ConvLayer(4, 8, groups=2, xtra=nn.Dropout(0.1))
    assert layer[0].groups == 2 and isinstance(layer[-1], nn.Dropout)


def test_conv_layer_slices_to_plain_sequential() -> None:
    head = ConvLayer(3, 4)[:1]
    assert type(head) is nn.Sequential and isinstance(head[0], nn.Conv2d)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm_type": "layer"}, "norm_type"),
        ({"ndim": 4}, "ndim"),
        ({"act_cls": nn.ReLU()}, "not an instance"),
        ({"init": "xavier"}, "init"),
    ],
)
def test_conv_layer_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ConvLayer(3, 4, **kwargs)


def test_conv_layer_bad_channels() -> None:
    with pytest.raises(ConfigError, match="`nf=0`"):
        ConvLayer(3, 0)


# ----------------------------------------------------------------------------------------------- residual


class _Scale(nn.Module):
    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * x


def test_sequential_ex_merge_add_and_concat() -> None:
    x = torch.randn(2, 3, 4, 4)
    add = SequentialEx(_Scale(2.0), _Scale(3.0), MergeLayer())
    torch.testing.assert_close(add(x), 6 * x + x)
    cat = SequentialEx(_Scale(2.0), MergeLayer(dense=True))
    out = cat(x)
    assert out.shape == (2, 6, 4, 4)
    torch.testing.assert_close(out[:, :3], 2 * x)
    torch.testing.assert_close(out[:, 3:], x)


def test_sequential_ex_merge_uses_block_input_not_previous_output() -> None:
    # two merges in one block both merge with the block's input
    block = SequentialEx(_Scale(2.0), MergeLayer(), _Scale(10.0), MergeLayer())
    x = torch.randn(3, 2)
    torch.testing.assert_close(block(x), 10 * (2 * x + x) + x)


def test_res_block_channels_and_identity_at_init() -> None:
    x = torch.randn(2, 8, 6, 6)
    add = res_block(8)
    assert [type(m) for m in add] == [ConvLayer, ConvLayer, MergeLayer]
    # the second conv's batch norm starts at zero, so the additive block starts as the identity
    torch.testing.assert_close(add(x), x)
    dense = res_block(8, dense=True)
    assert dense(x).shape == (2, 16, 6, 6)
    assert res_block(8, bottle=True)[0][0].out_channels == 4


@pytest.mark.parametrize(
    ("expansion", "ni", "nf", "stride", "out_shape"),
    [
        (1, 8, 8, 1, (2, 8, 8, 8)),
        (1, 8, 16, 2, (2, 16, 4, 4)),
        (4, 16, 8, 1, (2, 32, 8, 8)),
        (4, 32, 8, 2, (2, 32, 4, 4)),
    ],
)
def test_res_block_shapes(expansion: int, ni: int, nf: int, stride: int, out_shape: tuple) -> None:
    block = ResBlock(expansion, ni, nf, stride=stride)
    assert block(torch.randn(2, ni, 8, 8)).shape == out_shape
    assert len(block.convpath) == (2 if expansion == 1 else 3)


def test_res_block_starts_as_shortcut_then_act() -> None:
    block = ResBlock(1, 8, 16, stride=2)
    last_bn = block.convpath[-1][1]
    assert torch.equal(last_bn.weight, torch.zeros(16))
    assert isinstance(block.idpath[0], nn.AvgPool2d) and isinstance(block.idpath[1], ConvLayer)
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(block.idpath(x)))
    # same channels and stride 1: the shortcut is empty and the block is relu(x) at init
    same = ResBlock(1, 8, 8)
    assert len(same.idpath) == 0
    torch.testing.assert_close(same(x), torch.relu(x))


def test_res_block_pool_first_false_and_odd_sizes() -> None:
    block = ResBlock(1, 4, 8, stride=2, pool_first=False)
    assert isinstance(block.idpath[0], ConvLayer) and isinstance(block.idpath[1], nn.AvgPool2d)
    assert block(torch.randn(1, 4, 7, 7)).shape == (1, 8, 4, 4)


def test_res_block_groups_sa_and_1d() -> None:
    block = ResBlock(1, 8, 8, groups=4, sa=True)
    assert block.convpath[0][0].groups == 4 and isinstance(block.convpath[-1], SelfAttention)
    assert ResBlock(4, 8, 4, ndim=1, stride=2)(torch.randn(2, 8, 10)).shape == (2, 16, 5)
    with pytest.raises(ConfigError, match="groups"):
        ResBlock(1, 8, 6, groups=4)


# ----------------------------------------------------------------------------------------------- pooling / heads


def test_flatten() -> None:
    x = torch.randn(2, 3, 4, 5)
    assert Flatten()(x).shape == (2, 60)
    assert Flatten(full=True)(x).shape == (120,)


def test_adaptive_concat_pool_doubles_channels_and_is_max_then_avg() -> None:
    x = torch.randn(2, 5, 7, 7)
    out = AdaptiveConcatPool2d()(x)
    assert out.shape == (2, 10, 1, 1)
    torch.testing.assert_close(out[:, :5, 0, 0], x.amax(dim=(2, 3)))
    torch.testing.assert_close(out[:, 5:, 0, 0], x.mean(dim=(2, 3)))
    assert AdaptiveConcatPool2d(2)(x).shape == (2, 10, 2, 2)


def test_sigmoid_range() -> None:
    layer = SigmoidRange(0.5, 5.5)
    out = layer(torch.tensor([-100.0, 0.0, 100.0]))
    torch.testing.assert_close(out, torch.tensor([0.5, 3.0, 5.5]))
    with pytest.raises(ConfigError, match="high"):
        SigmoidRange(2, 1)


def test_batch_norm_helper() -> None:
    assert torch.equal(BatchNorm(4, zero=True).weight, torch.zeros(4))
    assert isinstance(BatchNorm(4, ndim=1), nn.BatchNorm1d) and isinstance(BatchNorm(4, ndim=3), nn.BatchNorm3d)


def test_lin_bn_drop_orders() -> None:
    block = LinBnDrop(10, 4, p=0.5, act=nn.ReLU())
    assert [type(m) for m in block] == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU]
    assert block[0].num_features == 10 and block[2].bias is not None
    first = LinBnDrop(10, 4, p=0.5, act=nn.ReLU(), lin_first=True)
    assert [type(m) for m in first] == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout]
    assert first[2].num_features == 4 and first[0].bias is None  # the norm's shift replaces the bias
    plain = LinBnDrop(10, 4, bn=False)
    assert [type(m) for m in plain] == [nn.Linear]
    assert block(torch.randn(3, 10)).shape == (3, 4)
    with pytest.raises(ConfigError, match="`p=1.5`"):
        LinBnDrop(10, 4, p=1.5)


def test_embedding_truncated_normal() -> None:
    emb = Embedding(1000, 50, std=0.01)
    w = emb.weight
    assert w.abs().max().item() <= 0.02 + 1e-7
    assert 0.006 < w.std().item() < 0.01  # a normal truncated at 2 std has std ~0.88 std
    assert emb(torch.tensor([[1, 2]])).shape == (1, 2, 50)


# ----------------------------------------------------------------------------------------------- upsampling / attention


def test_icnr_init_repeats_kernels_for_each_sub_pixel() -> None:
    w = torch.empty(4 * 9, 5, 3, 3)
    icnr_init(w, scale=3)
    grouped = w.view(4, 9, 5, 3, 3)
    assert torch.equal(grouped, grouped[:, :1].expand_as(grouped))
    assert not torch.equal(grouped[0, 0], grouped[1, 0])  # different output channels differ
    with pytest.raises(ConfigError, match="scale"):
        icnr_init(torch.empty(6, 2, 1, 1), scale=2)


def test_pixel_shuffle_icnr_shape_and_nearest_neighbour_at_init() -> None:
    layer = PixelShuffle_ICNR(6, 4, scale=2, act_cls=None)
    x = torch.randn(2, 6, 5, 5)
    out = layer(x)
    assert out.shape == (2, 4, 10, 10)
    # ICNR: every sub-pixel position of a 2x2 block starts with the same kernel -> conv then nearest upsampling
    conv = layer[0][0]
    grouped = conv.weight.view(4, 4, 6, 1, 1)
    assert torch.equal(grouped, grouped[:, :1].expand_as(grouped))
    base = nn.functional.conv2d(x, grouped[:, 0])  # (2, 4, 5, 5)
    torch.testing.assert_close(out, nn.functional.interpolate(base, scale_factor=2, mode="nearest"))


def test_pixel_shuffle_icnr_defaults_blur_and_weight_norm() -> None:
    layer = PixelShuffle_ICNR(8, blur=True)
    assert layer(torch.randn(1, 8, 4, 4)).shape == (1, 8, 8, 8)
    assert isinstance(layer[-1], nn.AvgPool2d) and isinstance(layer[0][-1], nn.ReLU)
    wn = PixelShuffle_ICNR(3, 2, norm_type="weight")
    w = wn[0][0].weight.view(2, 4, 3, 1, 1)  # the weight after weight norm keeps the ICNR structure
    torch.testing.assert_close(w, w[:, :1].expand_as(w))


def test_self_attention_is_identity_at_init_and_learns() -> None:
    sa = SelfAttention(16)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(sa(x), x)
    assert sa.query.out_channels == 2 and sa.value.out_channels == 16
    with torch.no_grad():
        sa.gamma.fill_(1.0)
    out = sa(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    # attention weights are a convex combination: with value = identity, output - x stays in each channel's range
    flat = x.flatten(2)
    v = sa.value(flat)
    mixed = (out - x).flatten(2)
    assert torch.all(mixed <= v.amax(dim=2, keepdim=True) + 1e-5)
    assert torch.all(mixed >= v.amin(dim=2, keepdim=True) - 1e-5)


def test_self_attention_backward_reaches_gamma() -> None:
    sa = SelfAttention(8)
    sa(torch.randn(2, 8, 3, 3)).pow(2).sum().backward()
    assert sa.gamma.grad is not None and sa.gamma.grad.abs().item() > 0


# ----------------------------------------------------------------------------------------------- models / helpers


def test_simple_cnn_shapes_and_layers() -> None:
    model = simple_cnn([1, 8, 16, 10])
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    convs = [m for m in model if isinstance(m, ConvLayer)]
    assert len(convs) == 3
    assert [type(m) for m in convs[0]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert [type(m) for m in convs[-1]] == [nn.Conv2d]  # logits: no norm, no act
    assert convs[0][0].stride == (2, 2)
    no_bn = simple_cnn([3, 4, 2], kernel_szs=[5, 3], strides=[1, 2], bn=False)
    assert [type(m) for m in no_bn[0]] == [nn.Conv2d, nn.ReLU] and no_bn[0][0].kernel_size == (5, 5)
    with pytest.raises(ConfigError, match="strides"):
        simple_cnn([1, 8, 10], strides=[2])
    with pytest.raises(ConfigError, match="actns"):
        simple_cnn([3])


def test_simple_cnn_trains_one_step() -> None:
    model = simple_cnn([1, 4, 3])
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_init_default() -> None:
    lin = nn.Linear(100, 50)
    assert init_default(lin, nn.init.ones_) is lin
    assert torch.equal(lin.weight, torch.ones(50, 100)) and torch.equal(lin.bias, torch.zeros(50))
    before = lin.weight.clone()
    init_default(lin, None)
    assert torch.equal(lin.weight, before)


def test_in_channels_and_num_features_model() -> None:
    body = nn.Sequential(ConvLayer(5, 8, stride=2), ConvLayer(8, 12, stride=2))
    assert in_channels(body) == 5
    body.train()
    assert num_features_model(body) == 12
    assert body.training  # mode restored
    with pytest.raises(ConfigError, match="convolution"):
        in_channels(nn.Sequential(nn.Linear(2, 3)))


def test_num_features_model_grows_the_input_when_needed() -> None:
    # seven 3x3 valid convolutions need at least 15 pixels; a size of 8 fails first, then 16 works
    body = nn.Sequential(*[nn.Conv2d(2 if i == 0 else 3, 3, 3) for i in range(7)])
    assert num_features_model(body, size=8) == 3
