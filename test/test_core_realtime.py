"""The planner's control loop without ROS: lockstep answers, realtime ticks, misses, holds."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from helpers.waiting import wait_for

from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.planning.exploration import ExplorationConfig, RandomVelocityExploration
from mbrl_ros.core.planning.loop import PlanningLoop
from mbrl_ros.core.planning.loop_io import PlannerSettings, StateInput
from mbrl_ros.core.tasks import BaodingTask

TASK = BaodingTask()
SETTINGS = PlannerSettings("mppi", {"horizon": 4, "num_samples": 32, "seed": 0})
GOALS = TASK.episode_goals(0, 101).numpy()


def small_model(seed: int = 0) -> EnsembleDynamics:
    torch.manual_seed(seed)
    return EnsembleDynamics(EnsembleConfig(TASK.state_dim, TASK.action_dim, 2, (32,)))


class GatedModel:
    """A real ensemble whose predictions wait until the test opens the gate (a slow plan)."""

    def __init__(self, model: EnsembleDynamics) -> None:
        self.model = model
        self.num_members, self.state_dim, self.action_dim = (
            model.num_members, model.state_dim, model.action_dim)
        self.gate = threading.Event()

    def predict(self, state, action, sample=False, generator=None):
        self.gate.wait(timeout=30)
        return self.model.predict(state, action, sample=sample, generator=generator)


def state_input(step: int, episode: int = 1, *, stale: bool = False, length: int = 100,
                received: float = 0.0) -> StateInput:
    state = np.zeros(TASK.state_dim)
    state[TASK.layout.slice("ball1_pos")] = (0.0, 0.03, 0.16)
    state[TASK.layout.slice("ball2_pos")] = (0.01, 0.05, 0.16)
    goal = torch.from_numpy(GOALS[min(step, len(GOALS) - 1)]).double()
    TASK.insert_goal_(torch.from_numpy(state), goal)
    return StateInput(episode, step, state, GOALS, goal_start=step + 1, episode_length=length,
                      stale=stale, received=received)


class Collector:
    def __init__(self) -> None:
        self.commands, self.errors = [], []

    def __call__(self, command) -> None:
        self.commands.append(command)


def make_loop(lockstep: bool = True, **kwargs) -> tuple[PlanningLoop, Collector]:
    collected = Collector()
    loop = PlanningLoop(TASK, SETTINGS, ExplorationConfig(), seed=0, lockstep=lockstep,
                        on_plan=collected, on_error=collected.errors.append, **kwargs)
    return loop, collected


@pytest.fixture
def lockstep():
    loop, collected = make_loop()
    yield loop, collected
    loop.close()


def test_lockstep_explores_before_a_model_and_resends_a_duplicate_state(lockstep):
    loop, _ = lockstep
    first = loop.on_state(state_input(0))
    assert first.source == "exploration" and first.model_version == 0
    assert first.key == (1, 0) and first.ticks == 1 and not first.fallback
    assert np.all(np.abs(first.action) <= 1.0)
    again = loop.on_state(state_input(0))
    assert again is first  # the same command again, not a new exploration step
    second = loop.on_state(state_input(1))
    assert second.ticks == 2 and 0.05 - 1e-9 <= np.abs(second.action - first.action).max()
    assert np.abs(second.action - first.action).max() <= 0.15 + 1e-9
    assert loop.status()["state"] == "exploring"


def test_exploration_is_seeded_per_episode(lockstep):
    loop, _ = lockstep
    actions = [loop.on_state(state_input(k, episode=3)).action for k in range(4)]
    reference = RandomVelocityExploration(TASK.action_dim, ExplorationConfig(), seed=0)
    reference.reset(3)
    np.testing.assert_array_equal(np.array(actions), np.array([reference.act()
                                                               for _ in range(4)]))
    other = loop.on_state(state_input(0, episode=4)).action
    assert not np.allclose(other, actions[0])


def test_no_command_at_or_after_the_episode_length(lockstep):
    loop, _ = lockstep
    assert loop.on_state(state_input(99, length=100)) is not None
    assert loop.on_state(state_input(100, length=100)) is None
    assert loop.status()["state"] == "idle"
    assert loop.on_state(state_input(500, length=0)) is not None  # open-ended


def test_lockstep_plans_once_a_model_arrives_and_reports_its_version(lockstep):
    loop, collected = lockstep
    loop.set_model(small_model(1), 1)
    assert loop.on_state(state_input(0)) is None  # queued; the plan comes through on_plan
    wait_for(lambda: collected.commands, 30, "the first plan")
    command = collected.commands[0]
    assert command.source == "mppi" and command.model_version == 1 and not command.fallback
    assert command.key == (1, 0) and command.horizon == 4 and command.num_samples == 32
    np.testing.assert_allclose(command.action, command.plan[0])
    assert np.all(np.abs(command.plan) <= 1.0)
    states = command.result.predicted_states
    assert tuple(states.shape) == (5, TASK.state_dim)
    assert np.isfinite(command.result.predicted_return)
    assert loop.on_state(state_input(0)) is command  # duplicate: re-send
    prev_plan, prev_action = loop._mpc.warm_start()  # what the next plan starts from
    np.testing.assert_allclose(prev_plan.numpy(), np.concatenate([command.plan[1:],
                                                                  command.plan[-1:]]))
    np.testing.assert_allclose(prev_action.numpy(), command.action)
    loop.set_model(small_model(2), 2)
    loop.on_state(state_input(1))
    wait_for(lambda: len(collected.commands) == 2, 30, "the second plan")
    assert collected.commands[1].model_version == 2
    assert loop.model_version == 2 and loop.status()["plans"] == 2
    assert not collected.errors


def test_policy_explore_and_plan_without_a_model(lockstep):
    loop, collected = lockstep
    loop.set_policy("plan")
    command = loop.on_state(state_input(0))
    assert command.source == "exploration" and "no model" in command.note
    loop.set_model(small_model(), 1)
    loop.set_policy("explore")
    assert loop.on_state(state_input(1)).source == "exploration"
    loop.set_policy("auto")
    assert loop.on_state(state_input(2)) is None
    wait_for(lambda: collected.commands, 30, "a plan")
    with pytest.raises(ValueError):
        loop.set_policy("greedy")


def test_stale_state_holds_the_last_action(lockstep):
    loop, _ = lockstep
    first = loop.on_state(state_input(0))
    held = loop.on_state(state_input(1, stale=True))
    assert held.source == "hold" and "stale" in held.note
    np.testing.assert_array_equal(held.action, first.action)
    assert loop.status()["state"] == "holding"
    fresh = loop.on_state(state_input(0, episode=2, stale=True))
    assert fresh.source == "hold" and fresh.action is None  # nothing commanded this episode
    # The estimator re-publishes the last state flagged stale: hold (once), then re-send.
    answered = loop.on_state(state_input(1, episode=2))
    assert answered.source == "exploration"
    repeat = loop.on_state(state_input(1, episode=2, stale=True))
    assert repeat.source == "hold" and repeat.ticks == answered.ticks + 1
    np.testing.assert_array_equal(repeat.action, answered.action)
    assert loop.on_state(state_input(1, episode=2, stale=True)) is repeat


def test_a_stale_repeat_while_planning_holds_and_the_plan_is_dropped(lockstep):
    loop, collected = lockstep
    gated = GatedModel(small_model())
    loop.set_model(gated, 1)
    assert loop.on_state(state_input(0)) is None  # planning, waiting for the gate
    held = loop.on_state(state_input(0, stale=True))
    assert held.source == "hold"
    gated.gate.set()
    wait_for(lambda: loop.status()["plans"] == 1, 30, "the plan to finish")
    assert not collected.commands  # the state was answered by the hold already
    assert loop.on_state(state_input(1)) is None
    wait_for(lambda: collected.commands, 30, "the next plan")


def test_settings_change_between_plans_and_bad_settings_are_refused(lockstep):
    loop, collected = lockstep
    loop.set_model(small_model(), 1)
    loop.on_state(state_input(0))
    wait_for(lambda: collected.commands, 30, "a plan")
    loop.set_settings(PlannerSettings("cem", {"horizon": 6, "num_samples": 40,
                                              "num_elites": 5, "iterations": 2}))
    loop.on_state(state_input(1))
    wait_for(lambda: len(collected.commands) == 2, 30, "a plan with the new settings")
    command = collected.commands[1]
    assert command.source == "cem" and command.horizon == 6 and command.plan.shape == (6, 24)
    assert command.num_samples == 80  # 2 iterations x 40
    loop.set_settings(PlannerSettings("random", {"horizon": 6, "num_samples": 16}))
    loop.on_state(state_input(2))
    wait_for(lambda: len(collected.commands) == 3, 30, "a random-shooting plan")
    assert collected.commands[2].source == "random_shooting"
    for bad in (PlannerSettings("mppi", {"num_samples": 0}),
                PlannerSettings("mppi", {"beta": 2.0}),
                PlannerSettings("mppi", {"bogus": 1}),
                PlannerSettings("ilqr", {})):
        assert bad.problem()
        with pytest.raises(ValueError):
            loop.set_settings(bad)
    assert not collected.errors


def test_realtime_publishes_the_plan_started_at_the_previous_tick():
    loop, _ = make_loop(lockstep=False)
    try:
        assert loop.tick() is None  # no state yet
        loop.set_model(small_model(), 1)
        loop.observe(state_input(0))
        first = loop.tick()  # nothing planned yet: the (zero) start action, not a miss
        assert first.fallback and first.deadline_misses == 0
        np.testing.assert_array_equal(first.action, np.zeros(24))
        wait_for(lambda: loop.plans == 1, 30, "the plan started at tick 0")
        loop.observe(state_input(1))
        on_time = loop.tick()
        assert not on_time.fallback and on_time.deadline_misses == 0
        assert on_time.source == "mppi" and on_time.step == 1 and on_time.model_version == 1
        np.testing.assert_allclose(on_time.action, on_time.result.actions[0].numpy())
        wait_for(lambda: loop.plans == 2, 30, "the plan started at tick 1")
        assert not loop.tick().fallback
        status = loop.status()
        assert status["ticks"] == 3 and status["deadline_misses"] == 0
        assert status["latency_p50_ms"] > 0
    finally:
        loop.close()


def test_realtime_late_plan_falls_back_to_the_previous_plan_and_counts_misses():
    loop, _ = make_loop(lockstep=False)
    gated = GatedModel(small_model())
    try:
        gated.gate.set()
        loop.set_model(gated, 1)
        loop.observe(state_input(0))
        loop.tick()
        wait_for(lambda: loop.plans == 1, 30, "the first plan")
        gated.gate.clear()  # from now on plans wait for the gate
        good = loop.tick()  # on time; starts a plan that will be late
        assert not good.fallback
        plan = good.plan.copy()
        late = loop.tick()
        assert late.fallback and late.deadline_misses == 1
        np.testing.assert_allclose(late.action, plan[1])  # next action of the previous plan
        late2 = loop.tick()
        np.testing.assert_allclose(late2.action, plan[2])
        assert late2.deadline_misses == 2
        gated.gate.set()
        wait_for(lambda: loop.plans == 2, 30, "the late plan")
        used = loop.tick()  # the late plan (started 3 ticks ago), advanced by the ticks missed
        assert used.fallback and used.deadline_misses == 3
        np.testing.assert_allclose(used.action, used.result.actions[2].numpy())
        wait_for(lambda: loop.plans == 3, 30, "an on-time plan again")
        assert not loop.tick().fallback
    finally:
        gated.gate.set()
        loop.close()


def test_realtime_holds_on_stale_or_old_states_and_skips_finished_episodes():
    now = [100.0]
    loop, _ = make_loop(lockstep=False, state_timeout=0.5, clock=lambda: now[0])
    try:
        loop.observe(state_input(0, received=100.0))
        first = loop.tick()
        assert first.source == "exploration"
        now[0] = 100.4
        assert loop.tick().source == "exploration"
        now[0] = 101.0  # no new state for 1 s
        held = loop.tick()
        assert held.source == "hold" and "no new state" in held.note
        loop.observe(state_input(3, stale=True, received=101.0))
        assert loop.tick().source == "hold"
        loop.observe(state_input(4, received=101.0))
        assert loop.tick().source == "exploration"
        loop.observe(state_input(100, length=100, received=101.0))
        assert loop.tick() is None and loop.status()["state"] == "idle"
    finally:
        loop.close()


def test_a_new_episode_drops_the_old_plan():
    loop, _ = make_loop(lockstep=False)
    try:
        loop.set_model(small_model(), 1)
        loop.observe(state_input(0))
        loop.tick()
        wait_for(lambda: loop.plans == 1, 30, "a plan")
        loop.observe(state_input(0, episode=2))
        restart = loop.tick()  # the plan belonged to episode 1
        assert restart.fallback and restart.episode_id == 2 and restart.deadline_misses == 0
        np.testing.assert_array_equal(restart.action, np.zeros(24))
    finally:
        loop.close()


def test_an_early_tick_waits_for_the_rest_of_the_planning_period():
    for period, opens, on_time in ((0.5, 0.05, True), (0.05, 0.5, False)):
        loop, _ = make_loop(lockstep=False, period=period)
        gated = GatedModel(small_model())
        try:
            loop.set_model(gated, 1)
            loop.observe(state_input(0))
            loop.tick()  # submits a plan that waits for the gate
            threading.Timer(opens, gated.gate.set).start()
            early = loop.tick()  # right away, as a timer catching up after a late tick
            assert early.fallback != on_time and early.deadline_misses == int(not on_time)
        finally:
            gated.gate.set()
            loop.close()


def test_a_hold_drops_the_plans_in_progress_without_counting_a_miss():
    now = [0.0]
    loop, _ = make_loop(lockstep=False, state_timeout=0.5, clock=lambda: now[0])
    try:
        loop.set_model(small_model(), 1)
        loop.observe(state_input(0))
        loop.tick()
        wait_for(lambda: loop.plans == 1, 30, "a plan")
        loop.observe(state_input(1))
        assert not loop.tick().fallback
        wait_for(lambda: loop.plans == 2, 30, "a plan")
        now[0] = 1.0  # the states stop for a while: hold
        assert loop.tick().source == "hold"
        loop.observe(state_input(5, received=1.0))
        resumed = loop.tick()  # the plan from before the hold is not used, and not a miss
        assert resumed.source == "mppi" and resumed.deadline_misses == 0
        wait_for(lambda: loop.plans == 3, 30, "a plan")
        assert not loop.tick().fallback and loop.deadline_misses == 0
    finally:
        loop.close()
