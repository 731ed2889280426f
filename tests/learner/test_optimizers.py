"""RAdam, QHAdam, Lamb, Lookahead, Larc and ranger: updates against references, state, grad scaling, the Learner."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from conftest import make_classification, tiny_model
from ember.core.errors import CallbackError, ConfigError
from ember.learner.callback import Callback
from ember.learner.learner import Learner
from ember.learner.optim import SGD, Adam, get_hyper, set_hyper
from ember.learner.optimizers import Lamb, Larc, Lookahead, QHAdam, RAdam, ranger

# A toy regression: x @ w + b against y, in float64 so that references agree to round-off.
X = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.2], [2.0, 1.0]], dtype=torch.float64)
Y = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [0.0, 1.0, 0.0], [-1.0, 2.0, 1.0]], dtype=torch.float64)
W0 = [[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]]


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def toy_params() -> list[torch.Tensor]:
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # all zeros: a norm of 0 for the trust ratios
    return [w, b]


def toy_loss(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((X @ w + b - Y) ** 2).mean()


def run_opt(make, n: int) -> list[torch.Tensor]:
    """`n` steps of the optimizer `make(params)` on the toy problem."""
    params = toy_params()
    opt = make(params)
    for _ in range(n):
        toy_loss(*params).backward()
        opt.step()
        opt.zero_grad()
    return [p.detach() for p in params]


def run_ref(update, n: int) -> list[torch.Tensor]:
    """`n` steps of a hand-written rule ``update(p, g, state, t)`` that changes `p` in place."""
    params = [p.detach().clone() for p in toy_params()]
    states: list[dict] = [{"m": torch.zeros_like(p), "v": torch.zeros_like(p)} for p in params]
    for t in range(1, n + 1):
        leaves = [p.clone().requires_grad_() for p in params]
        grads = torch.autograd.grad(toy_loss(*leaves), leaves)
        for p, g, s in zip(params, grads, states):
            update(p, g, s, t)
    return params


def moments(s: dict, g: torch.Tensor, mom: float, sqr_mom: float) -> None:
    s["m"] = mom * s["m"] + (1 - mom) * g
    s["v"] = sqr_mom * s["v"] + (1 - sqr_mom) * g * g


def assert_close(got: list[torch.Tensor], want: list[torch.Tensor], atol: float = 1e-12) -> None:
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=0, atol=atol), (a, b)


def radam_ref(lr=0.1, wd=0.01, mom=0.9, sqr_mom=0.99, eps=1e-5, rectified=None):
    def update(p, g, s, t):
        p.mul_(1 - lr * wd)
        moments(s, g, mom, sqr_mom)
        m_hat = s["m"] / (1 - mom**t)
        rho_inf = 2 / (1 - sqr_mom) - 1
        rho = rho_inf - 2 * t * sqr_mom**t / (1 - sqr_mom**t)
        if rectified is not None:
            rectified[t] = rho > 5
        if rho > 5:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            p.sub_(lr * r * m_hat * math.sqrt(1 - sqr_mom**t) / (s["v"].sqrt() + eps))
        else:  # the variance estimate is not trusted yet: momentum SGD
            p.sub_(lr * m_hat)

    return update


def lookahead_ref(inner, k: int, alpha: float):
    """A hand-written Lookahead around the rule `inner` (slow weights kept from the last sync, as in the paper)."""

    def update(p, g, s, t):
        if "slow" not in s:
            s["slow"] = p.clone()
        inner(p, g, s, t)
        if t % k == 0:
            s["slow"] += alpha * (p - s["slow"])
            p.copy_(s["slow"])

    return update


# -------------------------------------------------------------------------------------------------
# updates against references
# -------------------------------------------------------------------------------------------------
def test_radam_first_steps_are_momentum_sgd_then_rectified_adam():
    lr, wd = 0.1, 0.01
    w1, b1 = run_opt(lambda p: RAdam(p, lr=lr, wd=wd), 1)
    (w_new, b_new) = toy_params()
    g_w, g_b = torch.autograd.grad(toy_loss(w_new, b_new), (w_new, b_new))
    assert torch.allclose(w1, w_new.detach() * (1 - lr * wd) - lr * g_w, atol=1e-14)  # step 1: plain SGD
    rectified: dict[int, bool] = {}
    assert_close(run_opt(lambda p: RAdam(p, lr=lr, wd=wd), 8), run_ref(radam_ref(lr, wd, rectified=rectified), 8))
    assert [t for t, on in rectified.items() if on] == [6, 7, 8]  # both regimes are covered
    # fastai's RAdam (eps on the debiased root) agrees when eps is negligible: its numbers, from fastai 2.8.12
    w8, b8 = run_opt(lambda p: RAdam(p, lr=lr, wd=wd, eps=1e-12), 8)
    assert torch.allclose(
        w8[0], f64([0.13443230564934952, -0.34107307938245296, 1.2927797969559935]), rtol=0, atol=1e-9
    )
    assert torch.allclose(b8, f64([-0.03366406539763913, 0.3507474562545035, -0.08840261438943776]), rtol=0, atol=1e-9)


def test_radam_with_l2_decay():
    def l2(p, g, s, t):
        radam_ref(wd=0.0)(p, g + 0.01 * p, s, t)

    assert_close(run_opt(lambda p: RAdam(p, lr=0.1, wd=0.01, decouple_wd=False), 7), run_ref(l2, 7))


def qhadam_ref(lr=0.1, wd=0.01, mom=0.999, sqr_mom=0.999, nus=(0.7, 1.0), eps=1e-8, decouple=True):
    def update(p, g, s, t):
        if decouple:
            p.mul_(1 - lr * wd)
        else:
            g = g + wd * p
        moments(s, g, mom, sqr_mom)
        num = (1 - nus[0]) * g + nus[0] * s["m"] / (1 - mom**t)
        den = ((1 - nus[1]) * g * g + nus[1] * s["v"] / (1 - sqr_mom**t)).sqrt() + eps
        p.sub_(lr * num / den)

    return update


@pytest.mark.parametrize("nus", [(0.7, 1.0), (0.5, 0.8)])
@pytest.mark.parametrize("decouple", [True, False])
def test_qhadam_matches_the_paper_update(nus, decouple):
    def make(p):
        return QHAdam(p, lr=0.1, wd=0.01, mom=0.9, sqr_mom=0.99, nu_1=nus[0], nu_2=nus[1], decouple_wd=decouple)

    assert_close(run_opt(make, 4), run_ref(qhadam_ref(mom=0.9, sqr_mom=0.99, nus=nus, decouple=decouple), 4))


def test_qhadam_matches_fastai_and_is_adamw_with_nus_one():
    w, b = run_opt(lambda p: QHAdam(p, lr=0.1, wd=0.01), 3)  # fastai's defaults; numbers from fastai 2.8.12
    want_w = [
        [0.2115335338322757, -0.7049362695068597, 1.701459399352553],
        [0.022738084579102015, 0.5739688887640602, -0.9735085457802221],
    ]
    assert torch.allclose(w, f64(want_w), rtol=0, atol=1e-12)
    assert torch.allclose(b, f64([-0.07832102540914843, 0.28678482908466785, -0.234998222027896]), rtol=0, atol=1e-12)
    adamw = run_opt(lambda p: torch.optim.AdamW(p, lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01), 5)
    assert_close(run_opt(lambda p: QHAdam(p, lr=0.1, mom=0.9, sqr_mom=0.99, wd=0.01, nu_1=1.0, nu_2=1.0), 5), adamw)


def lamb_ref(lr=0.1, wd=0.01, mom=0.9, sqr_mom=0.99, eps=1e-5):
    def update(p, g, s, t):
        p.mul_(1 - lr * wd)
        moments(s, g, mom, sqr_mom)
        u = (s["m"] / (1 - mom**t)) / ((s["v"] / (1 - sqr_mom**t)).sqrt() + eps)
        w_norm, u_norm = p.norm().item(), u.norm().item()
        ratio = 1.0 if w_norm == 0 or u_norm == 0 else min(w_norm / u_norm, 10.0)
        p.sub_(lr * ratio * u)

    return update


def test_lamb_matches_fastai_and_the_trust_ratio_reference():
    w, b = run_opt(lambda p: Lamb(p, lr=0.1, wd=0.01), 3)  # numbers from fastai 2.8.12's Lamb
    want_w = [
        [0.20085971482888973, -0.6962518192899262, 1.6931154296508795],
        [-0.01071599822546705, 0.5926094535670363, -0.9915220186383761],
    ]
    assert torch.allclose(w, f64(want_w), rtol=0, atol=1e-12)
    assert torch.allclose(b, f64([-0.10108971430206438, 0.1267735397427012, -0.1230352734724323]), rtol=0, atol=1e-12)
    assert_close(run_opt(lambda p: Lamb(p, lr=0.05, wd=0.1), 5), run_ref(lamb_ref(lr=0.05, wd=0.1), 5))
    # the bias starts at zero: its first step is Adam's, whose first debiased step is lr * sign(g) (eps aside)
    b1 = run_opt(lambda p: Lamb(p, lr=0.1, wd=0.0, eps=0.0), 1)[1]
    w_new, b_new = toy_params()
    g_b = torch.autograd.grad(toy_loss(w_new, b_new), b_new)[0]
    assert torch.allclose(b1, -0.1 * torch.sign(g_b), atol=1e-12)


def test_lamb_trust_ratio_is_clipped_at_10():
    p = torch.full((4,), 100.0, requires_grad=True)  # ||w|| = 200, ||u|| = 2 (u = sign(g) at step 1): ratio 100
    opt = Lamb([p], lr=0.01, wd=0.0, eps=0.0)
    p.grad = torch.tensor([1.0, -2.0, 3.0, -4.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([99.9, 100.1, 99.9, 100.1]))  # 100 - 0.01 * 10 * sign(g)


def test_lookahead_syncs_every_k_steps():
    k, alpha, lr = 3, 0.5, 0.1
    sgd = lambda p, g, s, t: p.sub_(lr * g)  # noqa: E731
    for n in range(1, 8):  # before, at and after each sync
        got = run_opt(lambda p: Lookahead(SGD(p, lr=lr, mom=0.0), k=k, alpha=alpha), n)
        assert_close(got, run_ref(lookahead_ref(sgd, k, alpha), n))
    # steps within a cycle are the inner optimizer's own
    assert_close(run_opt(lambda p: Lookahead(SGD(p, lr=lr, mom=0.0), k=k), 2), run_ref(sgd, 2))
    assert not torch.allclose(run_opt(lambda p: Lookahead(SGD(p, lr=lr, mom=0.0), k=k), 3)[0], run_ref(sgd, 3)[0])
    params = toy_params()
    opt = Lookahead(SGD(params, lr=lr, mom=0.0), k=k)
    for _ in range(5):
        toy_loss(*params).backward()
        opt.step()
    assert opt.count == 5 and isinstance(opt, torch.optim.Optimizer)


def test_ranger_is_lookahead_over_radam_with_fastai_defaults():
    want = run_ref(lookahead_ref(radam_ref(mom=0.95, eps=1e-6), k=6, alpha=0.5), 13)
    assert_close(run_opt(lambda p: ranger(p, lr=0.1), 13), want)
    opt = ranger(toy_params())
    assert (opt.k, opt.alpha) == (6, 0.5) and isinstance(opt.opt, torch.optim.RAdam)
    assert opt.param_groups[0]["betas"] == (0.95, 0.99) and opt.param_groups[0]["eps"] == 1e-6
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.param_groups[0]["decoupled_weight_decay"]


def test_larc_scales_each_gradient_by_its_trust_ratio():
    lr, trust = 0.1, 0.02
    for clip in (True, False):
        w1, b1 = run_opt(lambda p, clip=clip: Larc(SGD(p, lr=lr, mom=0.0), trust_coeff=trust, clip=clip), 1)
        w0, b0 = toy_params()
        g_w, g_b = torch.autograd.grad(toy_loss(w0, b0), (w0, b0))
        factor = trust * w0.detach().norm() / (g_w.norm() + 1e-8)
        assert factor < 1  # so clipping changes nothing here
        assert torch.allclose(w1, w0.detach() - lr * factor * g_w, atol=1e-12)
        assert torch.allclose(b1, -lr * g_b, atol=1e-12)  # a zero tensor moves at the plain rate
    p = torch.tensor([3.0, 4.0], requires_grad=True)  # factor 0.02 * 5 / 0.01 = 10: capped at 1 by clip
    for clip, want in ((True, [2.999, 4.0]), (False, [2.99, 4.0])):
        q = p.detach().clone().requires_grad_()
        q.grad = torch.tensor([0.01, 0.0])
        Larc(SGD([q], lr=0.1, mom=0.0), clip=clip).step()
        assert torch.allclose(q.detach(), torch.tensor(want))


# -------------------------------------------------------------------------------------------------
# state, grad scaling, hyper-parameters
# -------------------------------------------------------------------------------------------------
def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = make_classification(16 * n, seed=3)
    return list(zip(x.split(16), y.split(16)))


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches) -> None:
    model.train()
    for x, y in batches:
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("opt_func", [ranger, QHAdam, Lamb, lambda p, lr: Larc(SGD(p, lr=lr))])
def test_state_dict_round_trip_mid_training_gives_identical_later_steps(opt_func):
    batches = _batches(15)
    model = tiny_model()
    opt = opt_func([{"params": list(model.parameters())}], lr=1e-2)
    _train(model, opt, batches[:8])  # 8 steps: mid-cycle for Lookahead's k=6
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # as checkpoints are read

    model2 = tiny_model(seed=7)
    opt2 = opt_func([{"params": list(model2.parameters())}], lr=1e-3)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    if isinstance(opt, Lookahead):
        assert opt2.count == 8 and "lookahead_slow" in opt2.state[model2[0].weight]
    _train(model, opt, batches[8:])
    _train(model2, opt2, batches[8:])
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_lookahead_with_a_grad_scaler_matches_full_precision_and_skips_overflows():
    batches = _batches(4)
    ref_model, model = tiny_model(), tiny_model()
    opt = Lookahead(Adam(model.parameters(), lr=0.1), k=2)  # a fused inner kernel
    ref_opt = Lookahead(Adam(ref_model.parameters(), lr=0.1), k=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    _train(ref_model, ref_opt, batches[:3])
    for x, y in batches[:3]:
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    assert opt.count == 3
    for a, b in zip(model.parameters(), ref_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batches[3]
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    model[0].weight.grad[0, 0] = float("inf")
    scaler.step(opt)  # an overflow: the step is skipped and does not count toward k
    scaler.update()
    assert opt.count == 3 and all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_lookahead_shares_groups_state_and_hyper_parameters_with_the_inner_optimizer():
    model = tiny_model()
    opt = ranger(model.parameters(), lr=1e-3)
    set_hyper(opt, "lr", 0.5)
    set_hyper(opt, "mom", 0.8)
    assert get_hyper(opt.opt, "lr") == [0.5] and get_hyper(opt.opt, "mom") == [0.8]
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)  # a torch scheduler accepts it
    _train(model, opt, _batches(1))
    sched.step()
    assert opt.opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.state is opt.opt.state and len(opt.state) == len(list(model.parameters()))
    extra = nn.Parameter(torch.ones(2))
    opt.add_param_group({"params": [extra], "lr": 0.1})
    assert len(opt.opt.param_groups) == 2 and opt.param_groups[1]["params"] == [extra]
    extra.grad = torch.ones(2)
    opt.zero_grad()
    assert extra.grad is None
    clone = copy.deepcopy(opt)
    assert clone.count == opt.count and clone.param_groups is clone.opt.param_groups


def test_defaults_are_fastais_no_weight_decay_but_for_ranger():
    params = list(tiny_model().parameters())
    for make in (RAdam, QHAdam, Lamb):
        assert make(params).param_groups[0]["weight_decay"] == 0.0, make
    assert ranger(params).param_groups[0]["weight_decay"] == 0.01
    # Numbers of fastai 2.8.12's QHAdam(params, lr=0.1) and Lamb(params, lr=0.1), defaults otherwise.
    w, b = run_opt(lambda p: QHAdam(p, lr=0.1), 3)
    want_w = [
        [0.21269063950047132, -0.7075986280178187, 1.7070856883648564],
        [0.022455005180937723, 0.575206162693124, -0.9759840837467026],
    ]
    assert torch.allclose(w, f64(want_w), rtol=0, atol=1e-12)
    assert torch.allclose(b, f64([-0.07875565876986551, 0.2870976138736526, -0.23552164256782362]), atol=1e-12)
    w, b = run_opt(lambda p: Lamb(p, lr=0.1), 3)
    want_w = [
        [0.20145655533700754, -0.698344323676879, 1.6981920051133637],
        [-0.010833376212092636, 0.5943858355433401, -0.9945204587195455],
    ]
    assert torch.allclose(w, f64(want_w), rtol=0, atol=1e-12)
    assert torch.allclose(b, f64([-0.10130900942575603, 0.1270200862031518, -0.12329004391959669]), atol=1e-12)


def test_qhadam_takes_fastais_nu_1_and_nu_2_as_hyper_parameters():
    opt = QHAdam(toy_params(), nu_1=0.8)
    assert (opt.param_groups[0]["nu_1"], opt.param_groups[0]["nu_2"]) == (0.8, 1.0)
    # They live in every group, so set_hyper moves them and the next step uses the new values.
    ref = run_opt(lambda p: QHAdam(p, lr=0.1, nu_1=0.5, nu_2=0.9), 3)
    params = toy_params()
    opt = QHAdam(params, lr=0.1)
    set_hyper(opt, "nu_1", 0.5)
    set_hyper(opt, "nu_2", 0.9)
    for _ in range(3):
        toy_loss(*params).backward()
        opt.step()
        opt.zero_grad()
    assert_close([p.detach() for p in params], ref)


def test_lookahead_restart_cycle_takes_up_weights_loaded_mid_cycle():
    batches = _batches(10)
    model = tiny_model()
    loaded = copy.deepcopy(model.state_dict())
    opt = Lookahead(SGD(model.parameters(), lr=0.1, mom=0.0), k=6)
    _train(model, opt, batches[:8])  # count 8: mid-cycle
    model.load_state_dict(loaded)
    opt.restart_cycle()
    assert opt.count == 0
    set_hyper(opt, "lr", 0.0)  # a step changes nothing, so only a pull toward stale slow weights could
    _train(model, opt, batches[:6])  # a whole cycle, ending in a sync
    for name, p in model.named_parameters():
        assert torch.equal(p, loaded[name]), name


def test_learner_load_without_the_optimizer_state_restarts_lookaheads_cycle(tmp_path):
    learn = _learner(tmp_path, opt_func=ranger)  # 8 batches an epoch, k=6
    learn.save("init", with_opt=False)
    init = {k: v.clone() for k, v in learn.model.named_parameters()}
    learn.fit(1, 1e-2)
    assert learn.opt.count % learn.opt.k != 0  # mid-cycle: without a restart the next sync pulls toward old weights
    learn.load("init", with_opt=False)
    learn.fit(1, 0.0)  # lr = 0: the weights must stay the loaded ones
    for name, p in learn.model.named_parameters():
        assert torch.equal(p, init[name]), name
    # With the optimizer state, the counter is the saved one.
    learn.save("mid", with_opt=True)
    count = learn.opt.count
    learn.opt.restart_cycle()
    learn.load("mid", with_opt=True)
    assert learn.opt.count == count != 0


def test_a_checkpoint_records_the_optimizer_a_wrapper_wraps(tmp_path):
    from ember.learner.checkpoint import checkpoint_state, opt_state_problem

    written = _learner(tmp_path, opt_func=ranger)
    written.fit(1, 1e-3)
    state = checkpoint_state(written)
    assert state["opt_class"] == "Lookahead(RAdam)"

    def qh_lookahead(params, **kw):
        return Lookahead(QHAdam(params, **kw))

    other = _learner(tmp_path, opt_func=qh_lookahead)
    other.create_opt()
    problem = opt_state_problem(other.opt, state["opt"], state["opt_class"])
    assert "Lookahead(RAdam)" in problem and "Lookahead(QHAdam)" in problem
    # A file that names the wrapper alone: the hyper-parameters still tell RAdam and QHAdam apart.
    assert "nu_1" in opt_state_problem(other.opt, state["opt"], "Lookahead")
    assert opt_state_problem(written.opt, state["opt"], "Lookahead") is None
    written.save("ranger", with_opt=True)
    with pytest.raises(ConfigError, match="does not fit this learner's optimizer"):
        other.load("ranger", with_opt=True)
    # learn.save records the wrapped optimizer too: RAdam and Lamb (both with `betas`) are told apart by it

    def lamb_lookahead(params, **kw):
        return Lookahead(Lamb(params, **kw))

    lamb = _learner(tmp_path, opt_func=lamb_lookahead)
    lamb.create_opt()
    with pytest.raises(ConfigError, match=r"Lookahead\(RAdam\)"):
        lamb.load("ranger", with_opt=True)


@pytest.mark.parametrize("wrapper", [Larc, Lookahead])
def test_a_wrapper_passed_as_opt_func_says_how_to_wrap(tmp_path, wrapper):
    learn = _learner(tmp_path, opt_func=wrapper)
    with pytest.raises(ConfigError, match=rf"not an opt_func.*lambda params, \*\*kw: {wrapper.__name__}\("):
        learn.fit(1, 1e-2)
    # Parameters instead of an optimizer: summarised, not printed tensor by tensor.
    with pytest.raises(ConfigError, match="a list of 6 tensors") as info:
        wrapper(list(tiny_model().parameters()))
    assert "tensor(" not in str(info.value) and "lambda params" in str(info.value)
    with pytest.raises(ConfigError, match="a generator"):
        wrapper(tiny_model().parameters())
    with pytest.raises(ConfigError, match="unknown arguments `K`; valid: opt"):  # a typo next to a built optimizer
        wrapper(SGD(tiny_model().parameters()), K=3)


def test_bad_arguments_are_config_errors():
    params = list(tiny_model().parameters())
    with pytest.raises(ConfigError, match="`mom=1.0`"):
        RAdam(params, mom=1.0)
    with pytest.raises(ConfigError, match="`lr=-0.1`"):
        Lamb(params, lr=-0.1)
    with pytest.raises(ConfigError, match="`sqr_mom='0.9'`"):
        QHAdam(params, sqr_mom="0.9")
    with pytest.raises(ConfigError, match="`nu_2=1.5`"):
        QHAdam(params, nu_2=1.5)
    with pytest.raises(ConfigError, match="`nu_1=-0.1`"):
        QHAdam(params, nu_1=-0.1)
    with pytest.raises(ConfigError, match="`k=0`"):
        ranger(params, k=0)
    with pytest.raises(ConfigError, match="`alpha=0`"):
        Lookahead(Adam(params), alpha=0)
    with pytest.raises(ConfigError, match="torch.optim.Optimizer"):
        Lookahead(params)
    with pytest.raises(ConfigError, match="trust_coeff"):
        Larc(SGD(params), trust_coeff=0)
    emb = nn.Embedding(4, 2, sparse=True)
    opt = QHAdam(emb.parameters())
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(ConfigError, match="sparse"):
        opt.step()


# -------------------------------------------------------------------------------------------------
# as a Learner's opt_func
# -------------------------------------------------------------------------------------------------
def _larc_sgd(params, lr, **kw):
    return Larc(SGD(params, lr=lr, **kw), trust_coeff=0.5)


@pytest.mark.parametrize("opt_func", [RAdam, QHAdam, Lamb, ranger, _larc_sgd])
def test_as_opt_func_the_loss_goes_down_and_one_cycle_moves_momentum(tiny_learner, opt_func):
    learn = tiny_learner
    learn.opt_func = opt_func
    before = learn.validate()[0]
    learn.fit_one_cycle(2, 0.1)  # only 16 steps: RAdam's own warm-up (the rectification) is still under way
    assert learn.recorder.values[-1][1] < 0.9 * before
    moms = learn.recorder.moms
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, abs=0.01)
    kinds = {RAdam: torch.optim.RAdam, QHAdam: QHAdam, Lamb: Lamb, ranger: Lookahead, _larc_sgd: Larc}
    assert isinstance(learn.opt, kinds[opt_func])


def _two_groups(m: nn.Module) -> list[list[nn.Parameter]]:
    return [list(m[0].parameters()), list(m[2].parameters()) + list(m[3].parameters())]


def _learner(tmp_path, **kwargs) -> Learner:
    from ember.core.seed import set_seed
    from ember.data import DataLoaders

    set_seed(0)
    x, y = make_classification(320)
    dls = DataLoaders.from_tensors((x[:256], y[:256]), (x[256:], y[256:]), bs=32, device="cpu")
    learn = Learner(dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), path=tmp_path, **kwargs)
    learn.silent = True
    return learn


def test_ranger_with_flat_cos_freezing_discriminative_rates_and_lr_find(tmp_path):
    learn = _learner(tmp_path, opt_func=ranger, splitter=_two_groups, train_bn=False)
    learn.freeze()
    body = learn.model[0].weight.detach().clone()
    learn.fit_flat_cos(1, 1e-2)  # 8 steps: one sync, and the count mid-cycle after it
    assert torch.equal(learn.model[0].weight, body)  # the frozen group neither steps nor syncs
    assert "lookahead_slow" not in learn.opt.state.get(learn.model[0].weight, {})
    learn.unfreeze()
    learn.fit_flat_cos(1, slice(1e-4, 1e-2), pct_start=0.5)
    assert learn.recorder.lrs[0] == pytest.approx(1e-2)
    assert get_hyper(learn.opt, "lr")[0] < get_hyper(learn.opt, "lr")[1]
    assert not torch.equal(learn.model[0].weight, body) and learn.opt.count == 16

    weights = copy.deepcopy(learn.model.state_dict())
    opt_state = copy.deepcopy(learn.opt.state_dict())
    learn.lr_find(num_it=10, show_plot=False)
    assert learn.opt.count == 16  # the counter and the slow weights are put back with the rest
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    head = learn.model[3].weight
    slow = learn.opt.state[head]["lookahead_slow"]
    assert torch.equal(slow, opt_state["state"][4]["lookahead_slow"])


class _CrashAfter(Callback):
    def before_epoch(self):
        if self.learn.epoch == 2:
            raise RuntimeError("power cut")


@pytest.mark.parametrize("opt_func", [ranger, Lamb])
def test_checkpoint_resume_and_save_load_with_the_optimizer(tmp_path, opt_func):
    full = _learner(tmp_path / "a", opt_func=opt_func)
    full.fit_one_cycle(3, 1e-2)
    crashed = _learner(tmp_path / "b", opt_func=opt_func)
    with pytest.raises(CallbackError, match="power cut"):
        crashed.fit_one_cycle(3, 1e-2, checkpoint="run", cbs=_CrashAfter())
    resumed = _learner(tmp_path / "b", opt_func=opt_func)
    resumed.fit_one_cycle(3, 1e-2, checkpoint="run", resume=True)  # 16 steps done: mid-cycle for k=6
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)

    full.save("end", with_opt=True)
    other = _learner(tmp_path / "a", opt_func=opt_func)
    other.load("end", with_opt=True)
    assert getattr(other.opt, "count", None) == getattr(full.opt, "count", None)
    _train(full.model, full.opt, _batches(7))
    _train(other.model, other.opt, _batches(7))
    for a, b in zip(full.model.parameters(), other.model.parameters()):
        assert torch.equal(a, b)
