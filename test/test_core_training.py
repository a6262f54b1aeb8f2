"""Training and evaluation on known systems: linear dynamics, known noise, divergence."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from mbrl_ros.core.data.dataset import TransitionBatch
from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.evaluation import (
    disagreement,
    disagreement_error_correlation,
    one_step_errors,
    open_loop_errors,
    open_loop_predictions,
    open_loop_starts,
    rank_data,
    spearman,
)
from mbrl_ros.core.models.training import TrainConfig, train_ensemble

S, A = 3, 2
A_MAT = torch.tensor([[0.9, 0.1, 0.0], [-0.1, 0.95, 0.05], [0.0, 0.2, 0.8]])
B_MAT = torch.tensor([[0.5, 0.0], [0.0, 0.3], [0.2, -0.1]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def linear_batch(n: int, seed: int, noise_std: float = 0.0) -> TransitionBatch:
    """Independent transitions of s' = A s + B a (+ Gaussian noise)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, S, generator=g)
    a = torch.rand(n, A, generator=g) * 2 - 1
    ns = s @ A_MAT.T + a @ B_MAT.T + noise_std * torch.randn(n, S, generator=g)
    return TransitionBatch.from_arrays(s, a, ns)


def linear_episodes(num: int, length: int, seed: int) -> TransitionBatch:
    """Whole episodes of the noiseless linear system, in step order."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for ep in range(num):
        s = torch.randn(S, generator=g)
        states, actions, nexts = [], [], []
        for _ in range(length):
            a = torch.rand(A, generator=g) * 2 - 1
            n = A_MAT @ s + B_MAT @ a
            states.append(s)
            actions.append(a)
            nexts.append(n)
            s = n
        batches.append(
            TransitionBatch.from_arrays(
                torch.stack(states), torch.stack(actions), torch.stack(nexts), episode=[ep] * length
            )
        )
    return TransitionBatch.concatenate(batches)


def small_model(probabilistic: bool = False, members: int = 3) -> EnsembleDynamics:
    cfg = EnsembleConfig(
        S, A, num_members=members, hidden_sizes=(64, 64), probabilistic=probabilistic
    )
    return EnsembleDynamics(cfg)


def linear_model(a_members: list[torch.Tensor]) -> EnsembleDynamics:
    """Ensemble without hidden layers whose member k is exactly s' = A_k s + B s (float64)."""
    cfg = EnsembleConfig(S, A, num_members=len(a_members), hidden_sizes=())
    model = EnsembleDynamics(cfg, dtype=torch.float64)
    ones, zeros = torch.ones(S), torch.zeros(S)
    model.set_normalizer(zeros, ones, torch.zeros(A), torch.ones(A), zeros, ones)
    with torch.no_grad():
        for k, a_k in enumerate(a_members):
            weight = torch.cat([(a_k - torch.eye(S)).T, B_MAT.T]).double()
            model.layers[0].weight[k] = weight
        model.layers[0].bias.zero_()
    return model


# ------------------------------------------------------------------------------ training
def test_fits_linear_system():
    train, val = linear_batch(4000, seed=0), linear_batch(1000, seed=1)
    delta_var = (val.next_state - val.state).var(dim=0)
    model = small_model()
    history: list[int] = []
    result = train_ensemble(
        model,
        train,
        val,
        TrainConfig(epochs=30, batch_size=128, input_noise=0.0),
        progress=lambda epoch, metrics: history.append(epoch),
    )
    assert not result.diverged
    assert history == list(range(1, 31)) and result.epochs_run == 30
    assert len(result.train_loss) == len(result.val_loss) == 30
    assert result.val_loss[-1] < result.val_loss[0] / 10
    # z-scored units: the delta variance is 1, so this is < 0.5% of it (measured ~8e-4).
    assert result.final_metrics["val_mse_norm"] < 5e-3
    errors = one_step_errors(model, val)
    assert errors.ensemble_mse < 5e-3 * float(delta_var.mean())  # raw units, same statement
    assert errors.member_mse.shape == (3,)
    assert (errors.member_mse < 5e-3 * float(delta_var.mean())).all()
    # Same definition as the trainer's metric; averaging members can only lower the MSE.
    mean_member = float(errors.member_mse_norm.mean())
    assert mean_member == pytest.approx(result.final_metrics["val_mse_norm"], rel=1e-4)
    assert errors.ensemble_mse_norm <= mean_member


def test_probabilistic_members_recover_noise_level():
    sigma = 0.1
    train, val = linear_batch(4000, seed=2, noise_std=sigma), linear_batch(500, seed=3)
    model = small_model(probabilistic=True)
    result = train_ensemble(model, train, None, TrainConfig(epochs=40, batch_size=128))
    assert not result.diverged
    with torch.no_grad():
        mean, std = model.predict_gaussian(val.state, val.action)
    ratio = std.mean(dim=1) / sigma  # [members, state dims], measured 0.98-1.03
    assert ((ratio > 0.8) & (ratio < 1.2)).all(), ratio
    # The mean is still the noiseless dynamics (val targets are noise free).
    assert (mean - val.next_state).pow(2).mean() < 0.1 * sigma**2


def test_same_seed_gives_identical_weights_and_warm_start_keeps_them():
    train = linear_batch(600, seed=4)
    cfg = TrainConfig(epochs=2, batch_size=100, seed=5, bootstrap=True)
    m1, m2 = small_model(), small_model()
    train_ensemble(m1, train, None, cfg)
    train_ensemble(m2, train, None, cfg)
    for (name, t1), t2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(t1, t2), name
    # Warm start continues from the current weights; from scratch re-initializes them.
    warm = train_ensemble(m1, train, None, TrainConfig(epochs=1, from_scratch=False, seed=6))
    cold = train_ensemble(m2, train, None, TrainConfig(epochs=1, from_scratch=True, seed=6))
    assert warm.train_loss[0] < cold.train_loss[0]


def test_cosine_schedule_settles_the_weights_and_still_fits():
    train, val = linear_batch(2000, seed=12), linear_batch(500, seed=13)
    moves: dict[str, list[float]] = {}
    for schedule in ("constant", "cosine"):
        model = small_model()
        snapshots: list[torch.Tensor] = []

        def snapshot(epoch: int, metrics: dict, model: EnsembleDynamics = model,
                     snapshots: list[torch.Tensor] = snapshots) -> None:
            snapshots.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))

        result = train_ensemble(model, train, val, TrainConfig(
            epochs=10, batch_size=100, input_noise=0.0, lr_schedule=schedule), progress=snapshot)
        assert not result.diverged and result.final_metrics["val_mse_norm"] < 2e-2, schedule
        moves[schedule] = [float((b - a).norm()) for a, b in itertools.pairwise(snapshots)]
    # the last epoch runs at under 3% of the step size (cosine over 200 steps)
    assert moves["cosine"][-1] < 0.2 * moves["constant"][-1], moves
    assert moves["cosine"][-1] < 0.2 * moves["cosine"][0], moves


def test_bfloat16_matmuls_fit_as_well_and_keep_float32_weights():
    train, val = linear_batch(4000, seed=0), linear_batch(1000, seed=1)
    config = TrainConfig(epochs=30, batch_size=128, input_noise=0.0)
    full, mixed = small_model(), small_model()
    r32 = train_ensemble(full, train, val, config)
    r16 = train_ensemble(mixed, train, val, dataclasses.replace(config, precision="bfloat16"))
    assert not r16.diverged and r16.final_metrics["val_mse_norm"] < 5e-3
    # the matmuls really ran in bfloat16 (other rounding, other steps), the weights did not
    assert r16.train_loss[0] != r32.train_loss[0]
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    # the chained loss runs its steps in the same precision
    episodes = linear_episodes(num=20, length=15, seed=21)
    chained = train_ensemble(small_model(), episodes, None, TrainConfig(
        epochs=4, batch_size=50, input_noise=0.0, rollout_steps=3, precision="bfloat16"))
    assert not chained.diverged and chained.train_loss[-1] < chained.train_loss[0]


def test_weight_averaging_returns_the_mean_of_the_last_epochs():
    train, val = linear_batch(2000, seed=12), linear_batch(500, seed=13)
    config = TrainConfig(epochs=6, batch_size=100, input_noise=0.0)
    plain, averaged = small_model(), small_model()
    ends: list[list[torch.Tensor]] = []

    def keep(epoch: int, metrics: dict) -> None:
        ends.append([p.detach().clone() for p in plain.parameters()])

    train_ensemble(plain, train, val, config, progress=keep)
    result = train_ensemble(averaged, train, val,
                            dataclasses.replace(config, average_last_epochs=3))
    assert not result.diverged and result.final_metrics["val_mse_norm"] < 2e-2
    # the same seed takes the same steps: the result is the mean of epochs 4-6's weights
    for i, p in enumerate(averaged.parameters()):
        expected = torch.stack([end[i] for end in ends[3:]]).mean(dim=0)
        assert torch.allclose(p, expected, atol=1e-6), i
        assert not torch.allclose(p, ends[-1][i], atol=1e-6), i


def test_rollout_steps_train_the_chained_predictions_within_episodes():
    episodes = linear_episodes(num=20, length=15, seed=21)
    config = TrainConfig(epochs=4, batch_size=50, input_noise=0.0)
    one, chained = small_model(), small_model()
    train_ensemble(one, episodes, None, config)
    result = train_ensemble(chained, episodes, None,
                            dataclasses.replace(config, rollout_steps=3))
    assert not result.diverged
    assert not torch.allclose(one.layers[0].weight, chained.layers[0].weight)
    # single-transition episodes have no successor: the loss is the one-step one, bit for bit
    singles = TransitionBatch.from_arrays(episodes.state, episodes.action, episodes.next_state,
                                          episode=list(range(len(episodes))))
    a, b = small_model(), small_model()
    first = train_ensemble(a, singles, None, config)
    second = train_ensemble(b, singles, None, dataclasses.replace(config, rollout_steps=3))
    assert first.train_loss == second.train_loss
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_chained_loss_is_zero_for_an_exact_member_and_grows_with_steps_for_a_wrong_one():
    from mbrl_ros.core.models.evaluation import open_loop_starts
    from mbrl_ros.core.models.training import _rollout_losses

    episodes = linear_episodes(num=6, length=10, seed=24)
    model = linear_model([A_MAT, 1.05 * A_MAT])
    s, a, ns = (t.double() for t in (episodes.state, episodes.action, episodes.next_state))
    idx = torch.arange(len(episodes)).expand(2, -1)
    with torch.no_grad():
        mean, _ = model(model.normalized_inputs(s[idx], a[idx]))
    first = (mean - model.normalized_delta(s[idx], ns[idx])).pow(2).mean(dim=(1, 2))
    losses = {}
    for steps in (1, 2, 4):
        starts = torch.zeros(len(episodes), dtype=torch.bool)
        starts[open_loop_starts(episodes, steps)] = True
        with torch.no_grad():
            losses[steps] = _rollout_losses(model, mean, first, s, a, ns, idx, starts, steps)
    assert float(losses[4][0]) < 1e-12  # the exact member predicts every step exactly
    assert 0 < losses[1][1] < losses[2][1] < losses[4][1]


def test_output_weights_scale_each_dimensions_share_of_the_loss():
    from mbrl_ros.core.models.training import _member_losses

    g = torch.Generator().manual_seed(3)
    mean, y = torch.randn(2, 5, S, generator=g), torch.randn(2, 5, S, generator=g)
    w = torch.tensor([3.0, 0.0, 0.0])
    expected = ((mean - y).pow(2)[..., 0] * 3.0).mean(dim=1) / S
    assert torch.allclose(_member_losses(mean, None, y, w), expected)
    # weighing dimension 0 ten times the others: it is fitted better than without weights
    train, val = linear_batch(600, seed=30, noise_std=0.3), linear_batch(2000, seed=31)
    config = TrainConfig(epochs=3, batch_size=100, input_noise=0.0)
    errors = {}
    for name, weights in (("plain", None), ("dim0", (10.0, 1.0, 1.0))):
        model = small_model()
        train_ensemble(model, train, None, dataclasses.replace(config, output_weights=weights))
        with torch.no_grad():
            pred = model.predict(val.state, val.action).mean(dim=0)
        errors[name] = (pred - val.next_state).pow(2).mean(dim=0)
    assert errors["dim0"][0] < errors["plain"][0], errors
    assert errors["dim0"][1:].sum() > errors["plain"][1:].sum(), errors


def test_early_stopping_restores_best_epoch():
    train = linear_batch(500, seed=7)
    # Validation data from different dynamics: its loss stops improving early.
    other = linear_batch(300, seed=8)
    val = TransitionBatch.from_arrays(other.state, other.action, 2 * other.state - other.next_state)
    model = small_model()
    result = train_ensemble(
        model, train, val, TrainConfig(epochs=200, batch_size=100, patience=3, input_noise=0.0)
    )
    assert result.stopped_early and result.epochs_run < 200
    assert result.epochs_run - result.best_epoch == 3
    assert result.final_metrics["val_loss"] == pytest.approx(min(result.val_loss), rel=1e-5)


def test_nan_in_data_is_flagged_and_model_untouched():
    train = linear_batch(200, seed=9)
    train.state[17, 1] = float("nan")
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_ensemble(model, train, None, TrainConfig(epochs=2))
    assert result.diverged and "non-finite" in result.message
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize("lr", [1e3, 1e9])
def test_huge_learning_rate_is_flagged_not_returned_as_nan(lr: float):
    train = linear_batch(1000, seed=10)
    for probabilistic in (False, True):
        model = small_model(probabilistic=probabilistic)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        result = train_ensemble(model, train, None, TrainConfig(epochs=3, lr=lr, batch_size=64))
        assert result.diverged, (probabilistic, result)
        for name, tensor in model.state_dict().items():
            assert torch.isfinite(tensor).all(), name
            assert torch.equal(tensor, before[name]), name


def test_bad_inputs_raise():
    model = small_model()
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="average_last_epochs"):
        TrainConfig(epochs=5, average_last_epochs=6)
    with pytest.raises(ValueError, match="do not combine"):
        TrainConfig(average_last_epochs=2, patience=3)
    with pytest.raises(ValueError, match="rollout_steps"):
        TrainConfig(rollout_steps=0)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16")
    with pytest.raises(ValueError, match="deterministic"):
        train_ensemble(small_model(probabilistic=True), linear_batch(50, seed=1), None,
                       TrainConfig(epochs=1, rollout_steps=2))
    for weights in ((1.0, 0.0, 1.0), (1.0, math.nan, 1.0), ()):
        with pytest.raises(ValueError, match="output_weights"):
            TrainConfig(output_weights=weights)
    with pytest.raises(ValueError, match="state dimension"):
        train_ensemble(model, linear_batch(50, seed=1), None,
                       TrainConfig(epochs=1, output_weights=(1.0, 2.0)))
    with pytest.raises(ValueError, match="dims"):
        wrong = TransitionBatch.from_arrays(
            torch.zeros(5, S + 1), torch.zeros(5, A), torch.zeros(5, S + 1)
        )
        train_ensemble(model, wrong)


def test_num_threads_cap_is_restored():
    torch.set_num_threads(2)
    train_ensemble(
        small_model(), linear_batch(100, seed=11), None, TrainConfig(epochs=1, num_threads=1)
    )
    assert torch.get_num_threads() == 2


# ---------------------------------------------------------------------------- evaluation
def test_open_loop_error_perfect_and_perturbed_models():
    episodes = linear_episodes(num=4, length=12, seed=12)
    horizon = 6
    eps = 0.05
    a_perturbed = A_MAT + eps * torch.eye(S)
    model = linear_model([A_MAT, a_perturbed])
    curves = open_loop_errors(model, episodes, horizon)
    assert curves.num_starts == 4 * (12 - horizon + 1)
    # The exact member (error only from the float32 storage of the recorded states).
    assert curves.member_mse[0].max() < 1e-12
    # Known answer for the perturbed member: roll it out in float64 numpy from each start.
    starts = open_loop_starts(episodes, horizon).numpy()
    s_all, a_all = episodes.state.double().numpy(), episodes.action.double().numpy()
    n_all = episodes.next_state.double().numpy()
    a_0, a_p = A_MAT.double().numpy(), a_perturbed.double().numpy()
    b = B_MAT.double().numpy()
    expected = np.zeros(horizon)
    expected_mean = np.zeros(horizon)
    for t in starts:
        s0 = s1 = s_all[t]
        for h in range(horizon):
            s0 = a_0 @ s0 + b @ a_all[t + h]
            s1 = a_p @ s1 + b @ a_all[t + h]
            expected[h] += np.mean((s1 - n_all[t + h]) ** 2) / len(starts)
            expected_mean[h] += np.mean(((s0 + s1) / 2 - n_all[t + h]) ** 2) / len(starts)
    np.testing.assert_allclose(curves.member_mse[1].numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(curves.ensemble_mse.numpy(), expected_mean, rtol=1e-4)
    np.testing.assert_allclose(curves.member_mean_mse.numpy(), expected / 2, rtol=1e-4)
    # The error compounds: non-decreasing in H and strictly positive.
    assert expected[0] > 0
    assert (np.diff(curves.member_mse[1].numpy()) >= 0).all()
    # Same predictions with delta std 2 (weights halved): z-scored errors are raw / 4.
    with torch.no_grad():
        model.delta_normalizer.std.fill_(2.0)
        model.layers[0].weight.mul_(0.5)
    normalized = open_loop_errors(model, episodes, horizon, normalized=True)
    torch.testing.assert_close(normalized.member_mse[1], curves.member_mse[1] / 4)


def test_open_loop_on_trained_model_grows_with_horizon():
    model = small_model()
    train_ensemble(model, linear_batch(2000, seed=13), None, TrainConfig(epochs=10, batch_size=128))
    curves = open_loop_errors(model, linear_episodes(num=5, length=20, seed=14), horizon=8)
    assert curves.member_mse.shape == (3, 8)
    assert curves.member_mean_mse[-1] > curves.member_mean_mse[0]


def test_open_loop_predictions_are_what_the_errors_score_and_keep_fixes_fields():
    episodes = linear_episodes(num=3, length=10, seed=15)
    model = linear_model([A_MAT, A_MAT + 0.05 * torch.eye(S)])
    horizon = 5
    roll = open_loop_predictions(model, episodes, horizon)
    starts = open_loop_starts(episodes, horizon)
    assert roll.predicted.shape == (horizon, 2, len(starts), S)
    assert torch.equal(roll.starts, starts)
    rows = starts[None, :] + torch.arange(horizon)[:, None]
    assert torch.equal(roll.truth, episodes.next_state[rows])
    curves = open_loop_errors(model, episodes, horizon)
    err2 = (roll.predicted - roll.truth[:, None]).pow(2)
    torch.testing.assert_close(err2.mean(dim=(2, 3)).T.double(), curves.member_mse)
    # Keeping field 0 at the recorded value: exact there, and fed back into the next step.
    kept = open_loop_predictions(model, episodes, horizon, keep=slice(0, 1))
    torch.testing.assert_close(kept.predicted[..., 0],
                               kept.truth[:, None, :, 0].expand(-1, 2, -1))
    assert not torch.allclose(kept.predicted[1:, 1, :, 1:], roll.predicted[1:, 1, :, 1:])
    kept_curves = open_loop_errors(model, episodes, horizon, keep=slice(0, 1))
    kept_err2 = (kept.predicted - kept.truth[:, None]).pow(2)
    torch.testing.assert_close(kept_err2.mean(dim=(2, 3)).T.double(), kept_curves.member_mse)


def test_open_loop_starts_respect_episode_boundaries():
    batch = TransitionBatch.from_arrays(
        torch.zeros(7, S),
        torch.zeros(7, A),
        torch.zeros(7, S),
        episode=[0, 0, 0, 1, 1, 1, 1],
        step=[0, 1, 2, 0, 1, 3, 4],  # episode 1 has a gap after step 1
    )
    assert open_loop_starts(batch, 2).tolist() == [0, 1, 3, 5]
    assert open_loop_starts(batch, 3).tolist() == [0]
    with pytest.raises(ValueError, match="steps long"):
        open_loop_errors(linear_model([A_MAT]), batch, 4)


def test_rank_and_spearman_known_answers():
    assert rank_data([10.0, 30.0, 20.0, 20.0]).tolist() == [0.0, 3.0, 1.5, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 35, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_disagreement_and_its_correlation_with_error():
    # One state dim: member k is s' = (a + c_k) s + b u. Spread and mean error both grow
    # with |s|, so their rank correlation is exactly 1.
    cfg = EnsembleConfig(1, 1, num_members=3, hidden_sizes=())
    model = EnsembleDynamics(cfg, dtype=torch.float64)
    ones, zeros = torch.ones(1), torch.zeros(1)
    model.set_normalizer(zeros, ones, zeros, ones, zeros, ones)
    with torch.no_grad():
        model.layers[0].bias.zero_()
        for k, c in enumerate([0.0, 0.1, 0.2]):
            model.layers[0].weight[k] = torch.tensor([[0.9 - 1 + c], [0.5]])
    g = torch.Generator().manual_seed(15)
    s, u = torch.randn(200, 1, generator=g), torch.randn(200, 1, generator=g)
    batch = TransitionBatch.from_arrays(s, u, 0.9 * s + 0.5 * u)
    spread = disagreement(model, batch.state.double(), batch.action.double())
    expected_std = torch.tensor([0.0, 0.1, 0.2]).std(correction=0).item()
    torch.testing.assert_close(spread, expected_std * s[:, 0].double().abs())
    assert disagreement_error_correlation(model, batch) == pytest.approx(1.0)
    # Identical members do not disagree.
    with torch.no_grad():
        model.layers[0].weight[1:] = model.layers[0].weight[0]
    assert disagreement(model, batch.state.double(), batch.action.double()).abs().max() == 0
