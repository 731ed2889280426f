from __future__ import annotations

import pytest
import torch
from torch import nn

import ember.vision.models as models
from ember.core.errors import ConfigError
from ember.layers import ResBlock, SelfAttention
from ember.vision.models import XResNet, create_model, is_model, list_models, register_model, xresnet18
from ember.vision.models.registry import _REGISTRY

_BIG = {"xresnet101", "xresnet152"}  # a few seconds each to build and run on CPU: one run each, at c_in=1


def _in_family_tests(name: str) -> bool:
    """The ResNeXt, SE, deep-50 and deeper members, run at narrow width in test_xresnet_family.py (at full width
    here they would take about 40 s)."""
    return name.startswith(("xse_", "xresnext", "xsenet")) or name.endswith("_deeper") or name == "xresnet50_deep"


_CASES = [
    pytest.param(name, c_in, marks=pytest.mark.slow) if name in _BIG else (name, c_in)
    for name in list_models()
    if not _in_family_tests(name)
    for c_in in ((1,) if name in _BIG else (3, 1))
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize(("name", "c_in"), _CASES)
def test_every_registered_model_gives_n_out(name: str, c_in: int) -> None:
    model = create_model(name, c_in=c_in, n_out=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, c_in, 64, 64))
    assert out.shape == (1, 5)
    assert torch.isfinite(out).all()


def test_registry_lists_the_xresnets() -> None:
    names = list_models()
    assert names == sorted(names)
    expected = {"xresnet18", "xresnet34", "xresnet50", "xresnet101", "xresnet152", "xresnet_tiny"}
    assert expected <= set(names)
    assert list_models("xresnet*_deep") == ["xresnet18_deep", "xresnet34_deep", "xresnet50_deep"]
    assert list_models("nothing*") == []
    assert is_model("xresnet50") and not is_model("resnet50")


def test_unknown_model_name_suggests_a_close_one() -> None:
    with pytest.raises(ConfigError, match="xresnet34") as info:
        create_model("xresnet43")
    assert "list_models()" in str(info.value)
    with pytest.raises(ConfigError, match="list_models"):
        create_model("completely-different")


def test_register_model_adds_and_refuses_clashes() -> None:
    def ember_test_tiny_net(n_out: int = 2) -> nn.Module:
        return nn.Linear(3, n_out)

    try:
        assert register_model(ember_test_tiny_net) is ember_test_tiny_net
        assert is_model("ember_test_tiny_net")
        assert create_model("ember_test_tiny_net", n_out=4).out_features == 4

        def xresnet18() -> nn.Module:  # same name as a built-in, different function
            return nn.Identity()

        with pytest.raises(ConfigError, match="already registered"):
            register_model(xresnet18)
    finally:
        _REGISTRY.pop("ember_test_tiny_net", None)
    assert create_model("xresnet18", n_out=3)[-1].out_features == 3  # the built-in is untouched


def test_pretrained_is_refused() -> None:
    with pytest.raises(ConfigError, match="pretrained"):
        create_model("xresnet18", pretrained=True)


def test_xresnet18_parameter_count_is_resnet18_like() -> None:
    n_params = sum(p.numel() for p in xresnet18(n_out=1000).parameters())
    # torchvision's resnet18 has 11.69M; the 3-conv stem and avg-pool shortcut change it only slightly
    assert 11_500_000 < n_params < 12_000_000


def test_xresnet_structure_head_and_body() -> None:
    model = xresnet18(n_out=10)
    assert isinstance(model, XResNet) and isinstance(model, nn.Sequential)
    head = list(model)[-XResNet.n_head_layers :]
    assert [type(m).__name__ for m in head] == ["AdaptiveAvgPool2d", "Flatten", "Dropout", "Linear"]
    stem = [model[i][0] for i in range(3)]
    assert [c.stride for c in stem] == [(2, 2), (1, 1), (1, 1)] and [c.out_channels for c in stem] == [32, 32, 64]
    stages = [model[i] for i in range(4, 8)]
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert all(isinstance(b, ResBlock) for s in stages for b in s)
    # the body is the model up to the pooling; it shares parameters and outputs a stride-32 feature map
    body = model.body()
    assert type(body) is nn.Sequential and body[0] is model[0]
    assert body(torch.randn(2, 3, 64, 64)).shape == (2, 512, 2, 2)
    assert model[:-4](torch.randn(2, 3, 64, 64)).shape == (2, 512, 2, 2)
    assert model.num_features == 512


def test_xresnet50_bottleneck_widths() -> None:
    model = create_model("xresnet50", n_out=10)
    assert model.num_features == 2048 and model[-1].in_features == 2048
    first = model[4][0]
    assert len(first.convpath) == 3 and first.convpath[-1][0].out_channels == 256


def test_xresnet_options() -> None:
    model = XResNet(ResBlock, 1, [1, 1, 1], p=0.3, n_out=4, widen=2.0, sa=True, act_cls=nn.SiLU, block_szs=(8, 8, 8))
    assert model[-2].p == 0.3
    assert model.num_features == 16  # widen multiplies every stage but the first
    assert any(isinstance(m, SelfAttention) for m in model[5].modules())  # second-to-last stage
    assert any(isinstance(m, nn.SiLU) for m in model.modules()) and not any(
        isinstance(m, nn.ReLU) for m in model.modules()
    )
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_xresnet_1d() -> None:
    model = create_model("xresnet_tiny", ndim=1, c_in=2, n_out=3)
    assert model(torch.randn(2, 2, 100)).shape == (2, 3)


@pytest.mark.parametrize(("kwargs", "match"), [({"layers": []}, "layers"), ({"ks": 4}, "ks"), ({"p": 1.0}, "`p")])
def test_xresnet_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"block": ResBlock, "expansion": 1, "layers": [1, 1]} | kwargs
    with pytest.raises(ConfigError, match=match):
        XResNet(**args)


def test_xresnet18_backward_reaches_every_parameter() -> None:
    model = xresnet18(n_out=3)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 2]))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model[0][0].weight.grad.abs().sum() > 0  # gradient reaches the stem through the zero-init branches


def test_xresnet_tiny_learns() -> None:
    model = create_model("xresnet_tiny", n_out=3)
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_package_exports_lazily() -> None:
    assert set(models.__all__) >= {"create_model", "list_models", "is_model", "register_model", "XResNet"}
    for name in models.__all__:
        assert getattr(models, name) is not None
    with pytest.raises(AttributeError):
        models.not_a_model  # noqa: B018
