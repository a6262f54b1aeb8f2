"""Planners on analytic point masses with known optima, plus MPPI/CEM/scoring specifics."""

from __future__ import annotations

import pytest
import torch

from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.planners import (
    CEMConfig,
    CEMPlanner,
    DynamicsModel,
    GradientConfig,
    GradientPlanner,
    MPPIConfig,
    MPPIPlanner,
    RandomShootingConfig,
    RandomShootingPlanner,
    TrajectoryScorer,
    filter_actions,
    make_planner,
    mask_after_termination,
)
from mbrl_ros.core.tasks import BaodingTask, StateLayout, Task


class PointMassTask(Task):
    """State ``[x (D), target (D)]``; reward ``-|x - goal|_1``; never terminates."""

    def __init__(self, dim: int = 1) -> None:
        layout = StateLayout((("x", dim), ("target", dim)))
        super().__init__("point_mass", layout, dim, dim, 10, goal_fields=("target",))
        self.dim = dim

    def episode_goals(self, seed, length=None):
        return torch.full((self._episode_length_arg(length), self.dim), 7.0)

    def step_error(self, states, goals):
        return (states[..., : self.dim] - goals).abs().sum(dim=-1)

    def reward(self, states, actions, goals):
        error = self.step_error(states, goals)
        return -error, torch.zeros_like(error, dtype=torch.bool)

    def episode_success(self, errors, dropped):
        return bool(errors[-1] < 0.1)


class PointMassModel:
    """``x' = x + g+_e max(a, 0) + g-_e min(a, 0)`` per member ``e``; targets unchanged.

    Default gains 1: the exact point mass ``x' = x + a`` in every member.
    """

    def __init__(self, dim=1, gains_pos=(1.0, 1.0, 1.0), gains_neg=None):
        gains_neg = gains_pos if gains_neg is None else gains_neg
        self.num_members = len(gains_pos)
        self.state_dim, self.action_dim, self.dim = 2 * dim, dim, dim
        self.gp = torch.tensor(gains_pos)[:, None, None]
        self.gn = torch.tensor(gains_neg)[:, None, None]

    def predict(self, state, action, sample=False, generator=None):
        e, d = self.num_members, self.dim
        state = state.expand(e, *state.shape[-2:])
        move = self.gp * action.clamp(min=0) + self.gn * action.clamp(max=0)
        return torch.cat((state[..., :d] + move, state[..., d:]), dim=-1)


def point_mass_planner(kind, model=None, task=None, **overrides):
    task = task or PointMassTask()
    model = model or PointMassModel()
    return make_planner(kind, model, task, **{"horizon": 6, "seed": 0, **overrides})


def closed_loop(planner, x0=3.0, steps=6):
    """Run the planner as MPC on the exact point mass; return actions and positions."""
    task = planner.task
    goals = torch.full((planner.horizon, 1), 7.0)
    state = torch.tensor([x0, 7.0])
    plan, prev, xs, actions = None, None, [x0], []
    for _ in range(steps):
        result = planner.plan(state, goals, plan, prev)
        action = result.actions[0]
        plan = torch.cat((result.actions[1:], result.actions[-1:]))
        prev = action
        state = task.insert_goal(torch.cat((state[:1] + action, state[1:])), goals[0])
        xs.append(float(state[0]))
        actions.append(float(action[0]))
    return actions, xs


def test_analytic_model_follows_the_protocol():
    assert isinstance(PointMassModel(), DynamicsModel)


@pytest.mark.parametrize(
    ("kind", "overrides", "min_first", "min_planned_x4", "min_x4"),
    [
        # Thresholds sit below the worst of 30 seeds (the test uses seed 0).
        ("random", {"num_samples": 4000}, 0.6, 5.6, 6.0),
        ("cem", {"num_samples": 300, "num_elites": 30, "iterations": 5}, 0.9, 6.6, 6.85),
        # One update per call from a zero mean: a noisy first step, converging over steps.
        ("mppi", {}, 0.4, 6.0, 6.4),
        ("gradient", {"iterations": 40, "learning_rate": 0.1, "num_samples": 4}, 0.95, 6.9, 6.9),
    ],
)
def test_planner_reaches_known_optimum_on_point_mass(
    kind, overrides, min_first, min_planned_x4, min_x4
):
    planner = point_mass_planner(kind, **overrides)
    # Optimal open-loop plan from 3 to 7 with |a| <= 1: +1, +1, +1, +1, 0, 0.
    result = planner.plan(torch.tensor([3.0, 7.0]), torch.full((6, 1), 7.0))
    assert result.actions.shape == (6, 1) and result.predicted_states.shape == (7, 2)
    assert float(result.actions.abs().max()) <= 1.0
    assert float(result.actions[0, 0]) >= min_first
    assert float(result.predicted_states[4, 0]) >= min_planned_x4
    torch.testing.assert_close(result.predicted_states[1:, 0],
                               3.0 + torch.cumsum(result.actions[:, 0], dim=0))
    actions, xs = closed_loop(planner)
    assert actions[0] >= min_first
    assert xs[4] >= min_x4
    assert abs(xs[-1] - 7.0) < 0.4
    assert result.stats["time_ms"] > 0 and result.stats["samples"] >= 1
    assert result.disagreement == 0.0  # identical members


def test_repeated_mppi_updates_converge_to_the_optimum():
    planner = point_mass_planner("mppi")
    state, goals = torch.tensor([3.0, 7.0]), torch.full((6, 1), 7.0)
    plan = None
    for _ in range(6):
        plan = planner.plan(state, goals, prev_plan=plan).actions
    assert float(plan[:4, 0].min()) > 0.9
    assert float(plan[4:, 0].abs().max()) < 0.3


def test_cem_beats_random_shooting_at_equal_samples_in_30_dims():
    # 6-D point mass, horizon 5 (30 decision variables), goal 3 in every dimension from 0.
    # Optimum: +1 for three steps, return -3 * 6 = -18. Budget: 1000 scored sequences each.
    task, model = PointMassTask(dim=6), PointMassModel(dim=6)
    state, goals = torch.zeros(12), torch.full((5, 6), 3.0)
    state[6:] = 3.0
    scorer = TrajectoryScorer(model, task)
    gaps = []
    for seed in range(5):
        cem = make_planner("cem", model, task, horizon=5, num_samples=200, num_elites=20,
                           iterations=5, seed=seed)
        rs = make_planner("random", model, task, horizon=5, num_samples=1000, seed=seed)
        with torch.no_grad():
            cem_value = scorer.scores(state, cem.plan(state, goals).actions[None], goals)
            rs_value = scorer.scores(state, rs.plan(state, goals).actions[None], goals)
        gaps.append(float(cem_value - rs_value))
    assert min(gaps) > 0.0
    assert sum(gaps) / len(gaps) > 5.0


def test_gradient_planner_improves_the_plan_it_starts_from():
    torch.manual_seed(0)
    task = BaodingTask()
    model = EnsembleDynamics(EnsembleConfig(40, 24, hidden_sizes=(32, 32)))
    state = torch.zeros(40)
    state[26] = state[32] = 0.2
    goals = task.goal_window(task.episode_goals(0), 1, 5)
    start = torch.rand(5, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    planner = GradientPlanner(model, task, GradientConfig(
        horizon=5, num_samples=1, iterations=15, learning_rate=0.05, init_std=0.0, seed=0))
    result = planner.plan(state, goals, prev_plan=start)
    with torch.no_grad():
        before = float(planner.scorer.scores(state, start[None], goals))
    assert result.predicted_score > before + 1e-3
    assert not torch.equal(result.actions, start)


def test_gradient_planner_refines_an_mppi_plan():
    task, model = PointMassTask(), PointMassModel()
    mppi = MPPIPlanner(model, task, MPPIConfig(horizon=6, num_samples=50, seed=3))
    refine = GradientPlanner(model, task, GradientConfig(horizon=6, iterations=30,
                                                         learning_rate=0.1, seed=3),
                             init_planner=mppi)
    state, goals = torch.tensor([3.0, 7.0]), torch.full((6, 1), 7.0)
    result = refine.plan(state, goals)
    mppi_only = MPPIPlanner(model, task, MPPIConfig(horizon=6, num_samples=50, seed=3))
    assert result.predicted_score >= mppi_only.plan(state, goals).predicted_score
    assert "init_time_ms" in result.stats


def test_plan_prediction_is_lazy_and_frozen_on_the_planning_model():
    task = PointMassTask()
    planner = point_mass_planner("mppi", PointMassModel(gains_pos=(1.0, 1.0)), task)
    state = torch.tensor([3.0, 7.0])
    result = planner.plan(state, torch.full((6, 1), 7.0))
    assert "evaluation_ms" not in result.stats
    planner.set_model(PointMassModel(gains_pos=(0.5, 0.5)))
    state[0] = 100.0  # the caller reusing its buffer must not change the prediction
    expected = 3.0 + torch.cumsum(result.actions[:, 0], dim=0)
    torch.testing.assert_close(result.predicted_states[1:, 0], expected)
    assert result.predicted_return == pytest.approx(float(-(expected - 7.0).abs().sum()), abs=1e-4)
    assert result.predicted_score == pytest.approx(result.predicted_return)
    assert result.stats["evaluation_ms"] > 0


def test_mppi_filter_matches_hand_computed_recurrence():
    noisy = torch.tensor([[[1.0], [-1.0], [0.5]]])
    out = filter_actions(noisy, torch.tensor([0.2]), beta=0.5)
    # u0 = .5*1 + .5*.2 = .6; u1 = .5*(-1) + .5*.6 = -.2; u2 = .5*.5 + .5*(-.2) = .15
    torch.testing.assert_close(out, torch.tensor([[[0.6], [-0.2], [0.15]]]))


def test_mppi_samples_are_filtered_clipped_noise_with_low_noise_tail():
    task, model = PointMassTask(dim=2), PointMassModel(dim=2)
    cfg = MPPIConfig(horizon=4, num_samples=20, beta=0.7, sigma=0.9, seed=11)
    planner = MPPIPlanner(model, task, cfg)
    mean = torch.tensor([[0.1, -0.2], [0.3, 0.0], [0.5, 0.9], [-0.4, 0.2]])
    prev = torch.tensor([0.5, -0.5])
    replay = torch.Generator().set_state(planner.generator.get_state())
    samples = planner.sample_actions(mean, prev)
    noise = torch.randn(20, 4, 2, generator=replay)
    scale = torch.full((20, 1, 1), 0.9)
    scale[18:] = 0.27  # 10% of the samples at 0.3 sigma
    expected = torch.empty(20, 4, 2)
    last = prev.expand(20, 2)
    for i in range(4):  # the recurrence, step by step
        last = 0.7 * (mean[i] + noise[:, i] * scale[:, 0]) + 0.3 * last
        expected[:, i] = last
    torch.testing.assert_close(samples, expected.clamp(-1, 1))
    assert float(samples.abs().max()) <= 1.0


def test_mppi_with_huge_gamma_returns_the_best_sample():
    task, model = PointMassTask(), PointMassModel()
    planner = MPPIPlanner(model, task, MPPIConfig(horizon=6, num_samples=64, gamma=1e6, seed=5))
    result = planner.plan(torch.tensor([3.0, 7.0]), torch.full((6, 1), 7.0))
    best = int(torch.argmax(planner.last_scores))
    torch.testing.assert_close(result.actions, planner.last_samples[best])
    assert result.stats["ess"] == pytest.approx(1.0)
    soft = MPPIPlanner(model, task, MPPIConfig(horizon=6, num_samples=64, gamma=0.0, seed=5))
    result = soft.plan(torch.tensor([3.0, 7.0]), torch.full((6, 1), 7.0))
    torch.testing.assert_close(result.actions, soft.last_samples.mean(dim=0))


def test_termination_rule_books_penalty_after_first_termination():
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    terminated = torch.tensor([[False, False], [True, False], [False, False], [False, True]])
    out = mask_after_termination(rewards, terminated, -500.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [2.0, 2.0], [-500.0, 3.0],
                                                  [-500.0, 4.0]]))


def test_pessimism_prefers_the_sequence_members_agree_on():
    # Positive actions: members move 0.5a and 1.5a (mean a, they disagree). Negative actions
    # move every member +0.9|a| (they agree). Goal far right: reward ~ x.
    task = PointMassTask()
    model = PointMassModel(gains_pos=(0.5, 1.5), gains_neg=(-0.9, -0.9))
    state, goals = torch.tensor([0.0, 100.0]), torch.full((1, 1), 100.0)
    neutral = point_mass_planner("random", model, task, horizon=1, num_samples=500)
    careful = point_mass_planner("random", model, task, horizon=1, num_samples=500,
                                 risk_lambda=1.0)
    assert float(neutral.plan(state, goals).actions[0, 0]) > 0.9
    result = careful.plan(state, goals)
    assert float(result.actions[0, 0]) < -0.9
    assert result.disagreement == 0.0
    scorer = TrajectoryScorer(model, task, risk_lambda=1.0)
    with torch.no_grad():
        scores = scorer.scores(state, torch.tensor([[[1.0]], [[-1.0]]]), goals)
    torch.testing.assert_close(scores, torch.tensor([1.0 - 0.5, 0.9]) - 100.0)


def test_particles_average_sampled_rollouts():
    class NoisyModel(PointMassModel):
        def predict(self, state, action, sample=False, generator=None):
            nxt = super().predict(state, action)
            if sample:
                noise = torch.randn((*nxt.shape[:-1], 1), generator=generator)
                nxt = nxt + torch.cat((noise, torch.zeros_like(noise)), dim=-1)
            return nxt

    task, model = PointMassTask(), NoisyModel(gains_pos=(1.0,))
    gen = torch.Generator().manual_seed(0)
    scorer = TrajectoryScorer(model, task, particles=8, sample_dynamics=True, generator=gen)
    state, goals = torch.tensor([0.0, 0.0]), torch.zeros(3, 1)
    actions = torch.zeros(5, 3, 1)
    with torch.no_grad():
        states, returns = scorer.rollout(state, actions, goals)
        assert states.shape == (3, 1, 40, 2) and returns.shape == (1, 8, 5)
        assert float(returns.std()) > 0.0
        expected = -(states[..., 0].abs().sum(dim=0)).view(1, 8, 5).mean(dim=1)[0]
        torch.testing.assert_close(scorer.score_returns(returns), expected)


def test_planners_reject_bad_inputs_and_configs():
    planner = point_mass_planner("mppi")
    with pytest.raises(ValueError, match="state must have shape"):
        planner.plan(torch.zeros(3), torch.zeros(6, 1))
    with pytest.raises(ValueError, match="goals must have shape"):
        planner.plan(torch.zeros(2), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="non-finite"):
        planner.plan(torch.tensor([float("nan"), 0.0]), torch.zeros(6, 1))
    with pytest.raises(ValueError, match="action box"):
        planner.plan(torch.zeros(2), torch.zeros(6, 1), prev_plan=torch.full((6, 1), 2.0))
    with pytest.raises(ValueError, match="num_elites"):
        CEMConfig(num_samples=10, num_elites=20)
    with pytest.raises(ValueError, match="beta"):
        MPPIConfig(beta=0.0)
    with pytest.raises(ValueError, match="particles"):
        RandomShootingConfig(particles=4)
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("ilqr", PointMassModel(), PointMassTask())
    with pytest.raises(ValueError, match="do not match"):
        MPPIPlanner(PointMassModel(dim=2), PointMassTask(dim=1))
    with pytest.raises(TypeError):
        RandomShootingPlanner(PointMassModel(), PointMassTask(), MPPIConfig())
    assert isinstance(point_mass_planner("cem"), CEMPlanner)
