"""EnsembleDynamics: config, normalization, batched evaluation equals a per-member loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.normalization import Normalizer
from mbrl_ros.core.models.serialization import load_model, save_model

S, A, E = 4, 2, 3


def make_model(**kwargs) -> EnsembleDynamics:
    torch.manual_seed(0)
    cfg = EnsembleConfig(state_dim=S, action_dim=A, num_members=E, hidden_sizes=(16, 8), **kwargs)
    model = EnsembleDynamics(cfg)
    gen = torch.Generator().manual_seed(1)
    model.set_normalizer(
        state_mean=torch.randn(S, generator=gen),
        state_std=torch.rand(S, generator=gen) + 0.5,
        action_mean=torch.randn(A, generator=gen),
        action_std=torch.rand(A, generator=gen) + 0.5,
        delta_mean=torch.randn(S, generator=gen) * 0.1,
        delta_std=torch.rand(S, generator=gen) + 0.1,
    )
    return model


def loop_predict(
    model: EnsembleDynamics, state: torch.Tensor, action: torch.Tensor
) -> torch.Tensor:
    """Reference: evaluate each member separately with plain matmuls."""
    act = {"relu": F.relu, "tanh": torch.tanh, "silu": F.silu, "elu": F.elu}[
        model.config.activation
    ]
    outputs = []
    for e in range(model.num_members):
        s = state[e] if state.dim() == 3 else state
        a = action[e] if action.dim() == 3 else action
        sn = (s - model.state_normalizer.mean) / model.state_normalizer.std
        an = (a - model.action_normalizer.mean) / model.action_normalizer.std
        h = torch.cat([sn, an], dim=-1)
        for i, layer in enumerate(model.layers):
            h = h @ layer.weight[e] + layer.bias[e, 0]
            if i < len(model.layers) - 1:
                h = act(h)
        mean = h[:, :S]
        outputs.append(s + mean * model.delta_normalizer.std + model.delta_normalizer.mean)
    return torch.stack(outputs)


def test_config_round_trip_and_validation():
    cfg = EnsembleConfig(5, 3, num_members=2, hidden_sizes=[10, 20], activation="tanh")
    assert cfg.hidden_sizes == (10, 20)
    assert EnsembleConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="activation"):
        EnsembleConfig(5, 3, activation="gelu")
    with pytest.raises(ValueError, match="min_logvar"):
        EnsembleConfig(5, 3, min_logvar=1.0, max_logvar=0.0)
    with pytest.raises(ValueError, match="num_members"):
        EnsembleConfig(5, 3, num_members=0)
    with pytest.raises(ValueError, match="unknown"):
        EnsembleConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})


def test_ignored_state_inputs_do_not_reach_the_members(tmp_path):
    model = make_model(ignored_state_inputs=(1, 3))
    save_model(tmp_path / "m.model", model, {})
    loaded, _ = load_model(tmp_path / "m.model")
    assert loaded.config.ignored_state_inputs == (1, 3)
    torch.testing.assert_close(loaded.state_input_mask, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert EnsembleConfig.from_dict(model.config.to_dict()) == model.config
    gen = torch.Generator().manual_seed(3)
    state, action = torch.randn(7, S, generator=gen), torch.randn(7, A, generator=gen)
    moved = state.clone()
    moved[:, [1, 3]] += 10 * torch.randn(7, 2, generator=gen)
    with torch.no_grad():
        before, after = model.predict(state, action), model.predict(moved, action)
        # each next state is the state plus a delta that does not depend on dims 1 and 3
        torch.testing.assert_close(after - moved, before - state)
        # while a seen dimension changes the prediction
        seen = state.clone()
        seen[:, 0] += 1.0
        assert not torch.allclose(model.predict(seen, action) - seen, before - state)
    torch.testing.assert_close(model.normalized_inputs(moved, action),
                               model.normalized_inputs(state, action))
    for bad in ((S,), (0, 0), tuple(range(S))):
        with pytest.raises(ValueError, match="ignored_state_inputs"):
            EnsembleConfig(S, A, ignored_state_inputs=bad)


@pytest.mark.parametrize("activation", ["relu", "tanh", "silu", "elu"])
@pytest.mark.parametrize("probabilistic", [False, True])
def test_batched_equals_member_loop(activation: str, probabilistic: bool):
    model = make_model(activation=activation, probabilistic=probabilistic)
    gen = torch.Generator().manual_seed(2)
    state, action = torch.randn(E, 11, S, generator=gen), torch.randn(E, 11, A, generator=gen)
    with torch.no_grad():
        batched = model.predict(state, action)
        reference = loop_predict(model, state, action)
    assert batched.shape == (E, 11, S)
    torch.testing.assert_close(batched, reference, rtol=1e-5, atol=1e-6)
    # The members really differ (otherwise the comparison would prove little).
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_shared_and_per_member_inputs_give_identical_results():
    model = make_model()
    gen = torch.Generator().manual_seed(3)
    state, action = torch.randn(9, S, generator=gen), torch.randn(9, A, generator=gen)
    with torch.no_grad():
        shared = model.predict(state, action)
        tiled = model.predict(state.expand(E, 9, S).clone(), action.expand(E, 9, A).clone())
        mixed = model.predict(state, action.expand(E, 9, A).clone())
    assert shared.shape == (E, 9, S)
    assert torch.equal(shared, tiled)
    assert torch.equal(shared, mixed)
    torch.testing.assert_close(shared, loop_predict(model, state, action))


def test_bad_shapes_raise_value_error():
    model = make_model()
    with pytest.raises(ValueError, match="state"):
        model.predict(torch.zeros(5, S + 1), torch.zeros(5, A))
    with pytest.raises(ValueError, match="members"):
        model.predict(torch.zeros(E + 1, 5, S), torch.zeros(5, A))
    with pytest.raises(ValueError, match="batch"):
        model.predict(torch.zeros(5, S), torch.zeros(4, A))
    with pytest.raises(ValueError, match="action"):
        model.predict(torch.zeros(5, S), torch.zeros(1, 5, 5, A))


def test_normalizer_guards_constant_features():
    data = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)) * 3.0 + 2.0
    data[:, 1] = 0.7  # a fixed target, for instance
    norm = Normalizer(3)
    norm.fit(data)
    z = norm.normalize(data)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(z[:, [0, 2]].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, [0, 2]].std(0, correction=0), torch.ones(2), atol=1e-5, rtol=0)
    assert norm.std[1] == 1.0
    # An unseen value of the constant feature stays moderate instead of exploding.
    assert norm.normalize(torch.tensor([[2.0, 0.8, 2.0]]))[0, 1].item() == pytest.approx(0.1)
    torch.testing.assert_close(norm.denormalize(z), data)


def test_normalizer_stats_are_buffers_in_state_dict():
    keys = set(make_model().state_dict())
    for prefix in ("state", "action", "delta"):
        assert {f"{prefix}_normalizer.mean", f"{prefix}_normalizer.std"} <= keys


def test_fit_normalizer_gives_unit_delta_targets():
    model = make_model()
    gen = torch.Generator().manual_seed(4)
    s, a = torch.randn(500, S, generator=gen) * 5, torch.randn(500, A, generator=gen)
    ns = s + 0.01 * torch.randn(500, S, generator=gen) + 3.0
    model.fit_normalizer(s, a, ns)
    y = model.normalized_delta(s, ns)
    torch.testing.assert_close(y.mean(0), torch.zeros(S), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(0, correction=0), torch.ones(S), atol=1e-4, rtol=0)


def test_probabilistic_logvar_is_bounded_and_sampling_works():
    model = make_model(probabilistic=True, min_logvar=-4.0, max_logvar=0.5)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(50.0)  # push raw log-variances far beyond the bounds
        x = torch.randn(E, 200, S + A, generator=torch.Generator().manual_seed(5)) * 10
        _, logvar = model(x)
    assert logvar is not None
    # Soft clamping (max - softplus, then min + softplus) can overshoot the upper bound by
    # at most log(1 + exp(-(max - min))), 0.011 here; it never goes below the lower bound.
    overshoot = math.log1p(math.exp(-4.5))
    assert logvar.min() >= -4.0 - 1e-5 and logvar.max() <= 0.5 + overshoot + 1e-5
    assert logvar.min() < -3.5 and logvar.max() > 0.0  # both bounds are reached

    state, action = torch.randn(6, S), torch.randn(6, A)
    with torch.no_grad():
        mean = model.predict(state, action)
        draw1 = model.predict(
            state, action, sample=True, generator=torch.Generator().manual_seed(7)
        )
        draw2 = model.predict(
            state, action, sample=True, generator=torch.Generator().manual_seed(7)
        )
        mean_g, std_g = model.predict_gaussian(state, action)
    assert torch.equal(draw1, draw2)
    assert not torch.allclose(draw1, mean)
    torch.testing.assert_close(mean_g, mean)
    assert (std_g > 0).all()


def test_deterministic_sample_flag_returns_mean():
    model = make_model()
    state, action = torch.randn(6, S), torch.randn(6, A)
    with torch.no_grad():
        assert torch.equal(model.predict(state, action, sample=True), model.predict(state, action))
    with pytest.raises(ValueError, match="probabilistic"):
        model.predict_gaussian(state, action)


def test_predict_is_differentiable_in_actions():
    model = make_model()
    action = torch.zeros(4, A, requires_grad=True)
    model.predict(torch.randn(4, S), action).sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0


def test_reset_parameters_is_seeded():
    model = make_model()
    model.reset_parameters(torch.Generator().manual_seed(11))
    w1 = model.layers[0].weight.detach().clone()
    model.reset_parameters(torch.Generator().manual_seed(11))
    assert torch.equal(w1, model.layers[0].weight)
    assert not torch.equal(w1[0], w1[1])  # members are initialized independently


@pytest.mark.parametrize("activation", ["relu", "tanh", "silu", "elu"])
def test_no_grad_fast_path_matches_the_autograd_path(activation):
    config = EnsembleConfig(state_dim=5, action_dim=2, num_members=3, hidden_sizes=(16, 16),
                            activation=activation)
    model = EnsembleDynamics(config)
    state, action = torch.randn(3, 7, 5), torch.randn(3, 7, 2)
    with_grad = model.predict(state, action)
    with torch.no_grad():
        fast = model.predict(state, action)
    torch.testing.assert_close(fast, with_grad.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("probabilistic", [False, True])
def test_bfloat16_planning_forward_is_close_and_leaves_training_in_fp32(probabilistic):
    model = make_model(probabilistic=probabilistic)
    state, action = torch.randn(40, S), torch.randn(40, A)
    with torch.no_grad():
        exact = model.predict(state, action)
        model.set_inference_dtype(torch.bfloat16)
        assert model.inference_dtype == torch.bfloat16 and model.dtype == torch.float32
        low = model.predict(state, action)
    assert low.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: the delta (not the state) carries its error
    delta_error = (low - exact).abs().max() / (exact - state).abs().max()
    assert 0 < float(delta_error) < 0.05
    # gradient passes stay in the model's dtype, exact
    torch.testing.assert_close(model.predict(state, action).detach(), exact)
    # new weights (training in place) are cast again
    with torch.no_grad():
        model.layers[0].weight.mul_(2.0)
        changed = model.predict(state, action)
        model.set_inference_dtype(None)
        reference = model.predict(state, action)
    assert float((changed - reference).abs().max()) < 0.05 * float(
        (reference - state).abs().max())
    with pytest.raises(ValueError):
        model.set_inference_dtype(torch.int32)
