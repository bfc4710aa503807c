"""Optimizers against torch.optim step by step, schedules at known points, state round trips."""

import math

import numpy as np
import pytest

from bptt.training.optim import SGD, Adam, RMSprop, Schedule, make_optimizer


def problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(6)]
    return params, grads


@pytest.mark.torch
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam"])
def test_updates_match_torch_optim(torch, name):
    params, grads = problem()
    lr = 0.05
    ours = make_optimizer(name, Schedule("constant", lr), momentum=0.8)
    tensors = [torch.tensor(p.copy(), requires_grad=True) for p in params.values()]
    ref = {
        "sgd": lambda: torch.optim.SGD(tensors, lr=lr),
        "momentum": lambda: torch.optim.SGD(tensors, lr=lr, momentum=0.8),
        "nesterov": lambda: torch.optim.SGD(tensors, lr=lr, momentum=0.8, nesterov=True),
        "rmsprop": lambda: torch.optim.RMSprop(tensors, lr=lr, eps=1e-8),
        "adam": lambda: torch.optim.Adam(tensors, lr=lr),
    }[name]()
    for g in grads:
        ours.step(params, g)
        for t, gv in zip(tensors, g.values()):
            t.grad = torch.tensor(gv)
        ref.step()
        for p, t in zip(params.values(), tensors):
            assert np.allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_adam_first_step_is_lr_times_sign():
    # with bias correction the first Adam step is lr * g / (|g| + eps'): lr * sign(g) for |g| >> eps
    params = {"w": np.array([1.0, -2.0, 3.0])}
    Adam(0.1).step(params, {"w": np.array([0.5, -4.0, 2.0])})
    assert np.allclose(params["w"], [0.9, -1.9, 2.9], rtol=0, atol=1e-8)


def test_sgd_is_exact():
    params = {"w": np.array([1.0, 2.0])}
    opt = SGD(0.5, momentum=0.5)
    opt.step(params, {"w": np.array([1.0, 1.0])})  # b = g = 1
    opt.step(params, {"w": np.array([1.0, 1.0])})  # b = 0.5 + 1 = 1.5
    assert np.array_equal(params["w"], np.array([1.0 - 0.5 - 0.75, 2.0 - 0.5 - 0.75]))


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_state_round_trip_continues_identically(name):
    params, grads = problem(1)
    a = make_optimizer(name, Schedule("cosine", 0.1, total_steps=6))
    pa = {k: v.copy() for k, v in params.items()}
    for g in grads[:3]:
        a.step(pa, g)
    b = make_optimizer(name, Schedule("cosine", 0.1, total_steps=6))
    b.load_state_arrays(a.state_arrays())
    pb = {k: v.copy() for k, v in pa.items()}
    for g in grads[3:]:
        a.step(pa, g)
        b.step(pb, g)
    for k in params:
        assert np.array_equal(pa[k], pb[k])
    assert b.t == 6 and set(b.state) == set(a.state)


def test_schedules_at_known_points():
    assert Schedule("constant", 0.3)(1000) == 0.3
    cos = Schedule("cosine", 1.0, total_steps=10, min_lr=0.1)
    assert cos(0) == 1.0 and cos(10) == pytest.approx(0.1) and cos(20) == pytest.approx(0.1)
    assert cos(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cos(2) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.2)))
    step = Schedule("step", 1.0, step_size=3, gamma=0.5)
    assert [step(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


@pytest.mark.parametrize("kwargs", [dict(kind="linear"), dict(lr=0.0), dict(lr=-1.0), dict(gamma=0.0),
                                    dict(step_size=0), dict(lr=float("nan"))])
def test_bad_schedule_is_a_value_error(kwargs):
    with pytest.raises(ValueError):
        Schedule(**kwargs)


def test_bad_optimizer_settings_are_value_errors():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("lbfgs", Schedule())
    with pytest.raises(ValueError, match="nesterov"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="alpha"):
        RMSprop(0.1, alpha=1.0)
    with pytest.raises(ValueError, match="keys"):
        SGD(0.1).step({"w": np.zeros(2)}, {"v": np.zeros(2)})


# --- bptt.optim: the public module, parameter groups (a list of dicts), any schedule


def split(params):
    """The problem's two arrays as two groups, as a cell's and a readout's params are."""
    return [{"a": params["a"]}, {"b": params["b"]}]


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam"])
def test_a_list_of_dicts_updates_exactly_as_one_dict(name):
    params, grads = problem(2)
    one = {k: v.copy() for k, v in params.items()}
    groups = split({k: v.copy() for k, v in params.items()})
    a, b = make_optimizer(name, 0.05, momentum=0.7), make_optimizer(name, 0.05, momentum=0.7)
    for g in grads:
        a.step(one, g)
        b.step(groups, split(g))
    assert np.array_equal(one["a"], groups[0]["a"]) and np.array_equal(one["b"], groups[1]["b"])
    # the state of each group is kept under "<group>/<name>", and round-trips like a dict's
    assert {k.partition("/")[2] for k in b.state_arrays() if k != "t"} <= {"0/a", "1/b"}
    c = make_optimizer(name, 0.05, momentum=0.7)
    c.load_state_arrays(b.state_arrays())
    again = [{k: v.copy() for k, v in group.items()} for group in groups]
    b.step(groups, split(grads[0]))
    c.step(again, split(grads[0]))
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(groups, again) for k in x)


def test_bptt_optim_is_the_module_and_its_names_are_public():
    import bptt
    import bptt.training.optim as module

    assert bptt.optim is module and "optim" in bptt.__all__
    assert {"SGD", "RMSprop", "Adam", "Schedule", "Optimizer"} <= set(dir(bptt.optim))


def test_a_function_of_the_step_is_a_schedule():
    params = {"w": np.zeros(1)}
    opt = SGD(lambda t: 0.5**t)
    lrs = [opt.step(params, {"w": np.ones(1)}) for _ in range(4)]
    assert lrs == [1.0, 0.5, 0.25, 0.125]
    assert params["w"][0] == -(1.0 + 0.5 + 0.25 + 0.125)


@pytest.mark.parametrize("grads, message", [
    ({"a": np.zeros((3, 4)), "b": np.zeros(5)}, "must be a list of 2 dicts"),
    ([{"a": np.zeros((3, 4))}], "must be a list of 2 dicts"),
    ([{"a": np.zeros((3, 4))}, {"c": np.zeros(5)}], r"grads \(group 1\) must have the keys"),
    ([{"a": np.zeros((4, 3))}, {"b": np.zeros(5)}], r"gradient of 0/a has shape \(4, 3\), its parameter \(3, 4\)"),
])
def test_a_gradient_structure_unlike_the_params_is_refused_before_any_update(grads, message):
    params, _ = problem()
    groups = split({k: v.copy() for k, v in params.items()})
    before = [{k: v.copy() for k, v in g.items()} for g in groups]
    opt = Adam(0.1)
    with pytest.raises(ValueError, match=message):
        opt.step(groups, grads)
    assert opt.t == 0 and all(np.array_equal(g[k], b[k]) for g, b in zip(groups, before) for k in g)


def test_a_gradient_of_another_shape_is_refused_not_broadcast():
    # on main a (1,) gradient broadcast into a (2,) parameter silently
    with pytest.raises(ValueError, match=r"gradient of w has shape \(1,\), its parameter \(2,\)"):
        SGD(0.1).step({"w": np.zeros(2)}, {"w": np.ones(1)})


def test_bptt_optim_and_diagnostics_import_as_submodules():
    """`from bptt.optim import Adam` and `import bptt.diagnostics`, as a script would write them, in a
    fresh interpreter (in this one, a test may have imported them already)."""
    import subprocess
    import sys

    code = ("from bptt.optim import Adam\nimport bptt.diagnostics\nimport bptt\n"
            "assert Adam is bptt.training.optim.Adam and bptt.diagnostics is bptt.core.diagnostics\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
