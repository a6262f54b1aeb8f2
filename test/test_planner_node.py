"""``mpc_planner`` as a real process, driven with real task states, schedules and models."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from helpers.models import ensemble, serialized, with_nan_weight
from helpers.ros import spinning_node, start_process, stop_process
from helpers.waiting import call_service, wait_for
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64, Float64MultiArray
from visualization_msgs.msg import MarkerArray

from mbrl_ros.core.models.serialization import checksum
from mbrl_ros.core.tasks import BaodingTask
from mbrl_ros.launch.packages import executable
from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, StateField, TaskState
from mbrl_ros.sim import HAND_JOINT_NAMES, HandSim, build_scene
from mbrl_ros.srv import GetStatus

pytestmark = pytest.mark.ros
TASK = BaodingTask()  # the task_params defaults
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)


def _real_states(count: int) -> np.ndarray:
    """Task observations of the simulated hand under small random commands."""
    sim = HandSim("baoding")
    rng = np.random.default_rng(0)
    states = [sim.reset(seed=0).task_obs]
    for _ in range(count - 1):
        states.append(sim.step(rng.uniform(-0.2, 0.2, 24)).observation.task_obs)
    return np.array(states)


STATES = _real_states(8)


def start_planner(ns: str, *params: str):
    args = [str(executable("mbrl_ros", "mpc_planner")), "--ros-args", "-r", f"__ns:={ns}"]
    for p in params:
        args += ["-p", p]
    return start_process(args)


class PlannerClient:
    """Feeds the planner under ``ns`` and collects everything it publishes."""

    def __init__(self, node, ns: str) -> None:
        self.node, self.ns = node, ns
        self._lock = threading.Lock()
        self.commands: list[tuple[float, list[float]]] = []
        self.actions: list[PlannedAction] = []
        self.versions: list[float] = []
        self.markers: list[MarkerArray] = []
        self.statuses: list = []
        self.pub_state = node.create_publisher(TaskState, f"{ns}/task_state", 10)
        self.pub_schedule = node.create_publisher(GoalSchedule, f"{ns}/goal_schedule", LATCHED)
        self.pub_model = node.create_publisher(ModelUpdate, f"{ns}/model_update", LATCHED)
        node.create_subscription(Float64MultiArray, f"{ns}/joint_commands", self._on_command, 50)
        node.create_subscription(PlannedAction, f"{ns}/planned_action", self._add(self.actions),
                                 50)
        node.create_subscription(Float64, f"{ns}/mpc_planner/model_version",
                                 lambda m: self._add(self.versions)(m.data), 50)
        node.create_subscription(MarkerArray, f"{ns}/mpc_planner/plan_markers",
                                 self._add(self.markers), 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.status_client = node.create_client(GetStatus, f"{ns}/mpc_planner/get_status")
        self.param_client = node.create_client(SetParameters,
                                               f"{ns}/mpc_planner/set_parameters")
        wait_for(lambda: self.status_client.wait_for_service(timeout_sec=0.1), 60,
                 "the planner's get_status service")
        wait_for(lambda: self.pub_state.get_subscription_count() > 0, 20,
                 "the planner's task_state subscription")

    def _add(self, store: list):
        def append(msg) -> None:
            with self._lock:
                store.append(msg)
        return append

    def _on_command(self, msg: Float64MultiArray) -> None:
        with self._lock:
            self.commands.append((time.monotonic(), list(msg.data)))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self.statuses += [s for s in msg.status if s.name == f"{self.ns}/mpc_planner"]

    # ----- inputs -------------------------------------------------------------------------
    def schedule(self, episode: int, length: int) -> np.ndarray:
        goals = TASK.episode_goals(0, length + 1).numpy().astype(np.float64)
        msg = GoalSchedule(task="baoding", episode_id=episode, episode_length=length,
                           goal_dim=TASK.goal_dim, goals=goals.ravel().tolist())
        self.pub_schedule.publish(msg)
        return goals

    def state(self, episode: int, step: int, goal=None, stale: bool = False,
              dropped: bool = False) -> None:
        state = STATES[step % len(STATES)].copy()
        if dropped:  # ball 1 on the floor, below the task's drop height
            state[TASK.layout.start("ball1_pos") + 2] = 0.028
        goal = TASK.episode_goals(0, step + 1).numpy()[step] if goal is None else goal
        TASK.insert_goal_(torch.from_numpy(state), torch.as_tensor(goal, dtype=torch.float64))
        msg = TaskState(task="baoding", episode_id=episode, step=step,
                        state=state.tolist(), goal=[float(g) for g in goal], stale=stale)
        msg.layout = [StateField(name=n, start=s, size=z)
                      for n, s, z in TASK.layout.to_msg_fields()]
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = "world"
        self.pub_state.publish(msg)

    def model(self, version: int, data: bytes, **overrides) -> None:
        msg = ModelUpdate(format_version=ModelUpdate.FORMAT_VERSION, version=version,
                          task="baoding", state_fields=list(TASK.layout.names),
                          weights=data, checksum=checksum(data))
        for key, value in overrides.items():
            setattr(msg, key, value)
        self.pub_model.publish(msg)

    def set_params(self, **values):
        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return call_service(self.param_client, request, "set_parameters").results

    def status(self) -> GetStatus.Response:
        return call_service(self.status_client, GetStatus.Request(), "get_status",
                            idempotent=True)

    def status_value(self, key: str) -> str | None:
        return {kv.key: kv.value for kv in self.status().values}.get(key)

    # ----- outputs ------------------------------------------------------------------------
    def action_for(self, episode: int, step: int, after: int = 0,
                   timeout: float = 30.0) -> PlannedAction:
        def find():
            with self._lock:
                return next((a for a in self.actions[after:]
                             if (a.episode_id, a.step) == (episode, step)), None)
        return wait_for(find, timeout, f"a planned_action for episode {episode} step {step}")

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.commands), len(self.actions)

    def step(self, episode: int, step: int, **kwargs) -> PlannedAction:
        """Publish a state and wait for its one command (lockstep)."""
        _, n_actions = self.counts()
        self.state(episode, step, **kwargs)
        return self.action_for(episode, step, after=n_actions)

    def assert_only_next_episodes_command(self, episode: int, before: int, n_actions: int,
                                          why: str) -> None:
        """Start ``episode`` (length 5) and check that its first command is the only one
        since ``counts()`` returned ``(before, n_actions)``: the state sent last got none."""
        self.schedule(episode=episode, length=5)
        first = self.step(episode, 0)
        wait_for(lambda: self.commands[-1][1] == list(first.joint_targets), 10,
                 f"episode {episode}'s first command")
        assert self.counts()[0] == before + 1, why
        assert all(a.episode_id == episode for a in self.actions[n_actions:])

    def diagnostic_value(self, key: str) -> str | None:
        with self._lock:
            for status in reversed(self.statuses):
                for kv in status.values:
                    if kv.key == key:
                        return kv.value
        return None

    def levels_since(self, index: int) -> list[int]:
        with self._lock:
            return [s.level[0] if isinstance(s.level, bytes) else int(s.level)
                    for s in self.statuses[index:]]


@pytest.fixture(scope="module")
def lockstep():
    proc = start_planner("/hand", "mode:=lockstep")
    try:
        with spinning_node("planner_test") as node:
            yield PlannerClient(node, "/hand"), proc
    finally:
        print(stop_process(proc))


@pytest.fixture(scope="module")
def action_map():
    return build_scene("baoding").action_map()


def test_lockstep_explores_one_command_per_state_until_the_episode_ends(lockstep, action_map):
    client, _ = lockstep
    client.schedule(episode=1, length=5)
    actions = []
    for k in range(5):
        before, _ = client.counts()
        planned = client.step(1, k)
        wait_for(lambda b=before: client.counts()[0] >= b + 1, 10, "the joint command")
        assert client.counts()[0] == before + 1, "one command per state"
        assert planned.stats.planner == "exploration" and planned.stats.model_version == 0
        assert list(planned.joint_names) == list(HAND_JOINT_NAMES)
        action = np.asarray(planned.action)
        assert action.shape == (24,) and np.all(np.abs(action) <= 1.0)
        np.testing.assert_allclose(planned.joint_targets, action_map.to_joint_targets(action))
        np.testing.assert_allclose(client.commands[-1][1], planned.joint_targets)
        actions.append(action)
    steps = np.abs(np.diff(np.array(actions), axis=0))
    inside = np.abs(np.array(actions[1:])) < 1.0
    assert np.all(steps <= 0.15 + 1e-9) and np.all(steps[inside] >= 0.05 - 1e-9)

    # The same (episode, step) again: the same command once more.
    before, n_actions = client.counts()
    resent = client.step(1, 4)
    assert resent.joint_targets == client.actions[n_actions - 1].joint_targets
    wait_for(lambda: client.counts()[0] == before + 1, 10, "the re-sent command")
    assert client.commands[-1][1] == client.commands[-2][1]

    # Step 5 = episode_length: no command. Episode 2's first state shows the order.
    before, n_actions = client.counts()
    client.state(1, 5)
    client.assert_only_next_episodes_command(2, before, n_actions,
                                             "a command was sent at the episode length")


def test_no_command_for_a_state_at_which_a_ball_dropped(lockstep):
    """PDDM: a drop ends the episode. The planner does not act on the dropping state (in
    lockstep nothing runs past it), whatever the schedule's length still says."""
    client, _ = lockstep
    client.schedule(episode=11, length=10)
    client.step(11, 0)
    before, n_actions = client.counts()
    client.state(11, 1, dropped=True)
    client.assert_only_next_episodes_command(12, before, n_actions,
                                             "a command was sent for the dropped state")


def test_a_state_waits_for_its_episodes_schedule(lockstep):
    """The estimator's state of a new episode can overtake the schedule on the way to the
    planner: no command until the schedule is in, then exactly one."""
    client, _ = lockstep
    before, n_actions = client.counts()
    client.state(9, 0)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # a check that nothing happens, not a wait
        assert client.counts()[0] == before, "acted on a state without a schedule"
        time.sleep(0.02)
    client.schedule(episode=9, length=5)
    planned = client.action_for(9, 0, after=n_actions)
    wait_for(lambda: client.counts()[0] == before + 1, 10, "the command for episode 9")
    assert planned.step == 0


def test_models_reach_the_planner_and_their_versions_the_stats(lockstep):
    client, _ = lockstep
    client.schedule(episode=3, length=50)
    client.model(1, serialized(ensemble(TASK.state_dim, TASK.action_dim, seed=1)))
    wait_for(lambda: client.status_value("accepted_model_version") == "1", 30,
             "the planner to accept model 1")
    planned = client.step(3, 0)
    assert planned.stats.planner == "mppi" and planned.stats.model_version == 1
    assert not planned.stats.fallback and planned.stats.plan_latency_ms > 0
    assert planned.stats.num_samples == 700 and planned.horizon == 7
    assert planned.action_dim == 24 and len(planned.planned_actions) == 7 * 24
    np.testing.assert_allclose(planned.action, planned.planned_actions[:24])
    assert list(planned.object_names) == ["ball1", "ball2"]
    assert len(planned.predicted_object_positions) == 7 * 2 * 3
    assert np.all(np.isfinite(planned.predicted_object_positions))
    wait_for(lambda: client.versions and client.versions[-1] == 1.0, 10, "~/model_version 1")
    markers = wait_for(lambda: client.markers, 10, "plan markers")[-1].markers
    assert len(markers) == 2 and all(len(m.points) == 8 for m in markers)
    assert {m.header.frame_id for m in markers} == {"world"}

    client.model(2, serialized(ensemble(TASK.state_dim, TASK.action_dim, seed=2)))
    wait_for(lambda: client.status_value("accepted_model_version") == "2", 30,
             "the planner to accept model 2")
    planned = client.step(3, 1)
    assert planned.stats.model_version == 2
    wait_for(lambda: client.versions[-1] == 2.0, 10, "~/model_version 2")
    status = client.status()
    assert status.state == "planning" and status.model_version == 2


def test_malformed_model_updates_are_rejected_and_the_old_model_stays(lockstep):
    client, proc = lockstep
    wait_for(lambda: client.status().model_version >= 1, 60, "a model from the previous test")
    version = client.status().model_version
    good = serialized(ensemble(TASK.state_dim, TASK.action_dim, seed=3, hidden=(32,)))
    bad_fields = list(TASK.layout.names)
    bad_fields[-1] = "target3_xy"
    nan = with_nan_weight(good)
    cases = [({"checksum": "0" * 64}, good), ({"state_fields": bad_fields}, good),
             ({}, nan), ({"format_version": ModelUpdate.FORMAT_VERSION + 1}, good)]
    for i, (overrides, data) in enumerate(cases, start=1):
        client.model(10 + i, data, **overrides)
        wait_for(lambda i=i: client.diagnostic_value("rejected_model_update") == str(i), 30,
                 f"rejection {i} in diagnostics")
    client.schedule(episode=4, length=10)
    planned = client.step(4, 0)
    assert planned.stats.planner == "mppi" and planned.stats.model_version == version
    values = {kv.key: kv.value for kv in client.status().values}
    assert values["rejected_models"] == "4" and values["accepted_model_version"] == str(version)
    assert proc.poll() is None


def test_a_stale_state_holds_the_last_command_with_an_error(lockstep):
    client, _ = lockstep
    client.schedule(episode=5, length=10)
    client.step(5, 0)
    last = client.commands[-1][1]
    with client._lock:
        mark = len(client.statuses)
    held = client.step(5, 1, stale=True)
    assert held.stats.planner == "hold"
    np.testing.assert_array_equal(held.joint_targets, last)
    wait_for(lambda: client.counts()[0] and client.commands[-1][1] == last, 10, "the hold")
    wait_for(lambda: 2 in client.levels_since(mark), 10, "an ERROR diagnostic")
    assert client.status().state == "holding"
    fresh = client.step(5, 2)
    assert fresh.stats.planner != "hold" and client.status().state != "holding"
    # The estimator repeats its last state flagged stale when its inputs stop: hold too.
    repeat = client.step(5, 2, stale=True)
    assert repeat.stats.planner == "hold" and repeat.joint_targets == fresh.joint_targets


def test_runtime_parameters_are_validated_and_applied_between_plans(lockstep):
    client, _ = lockstep
    assert not client.set_params(num_samples=0)[0].successful
    assert not client.set_params(beta=2.0)[0].successful
    assert not client.set_params(planner="ilqr")[0].successful
    assert client.set_params(num_samples=128, horizon=5)[0].successful
    client.schedule(episode=6, length=10)
    planned = client.step(6, 0)
    assert planned.stats.num_samples == 128 and planned.horizon == 5
    assert client.set_params(planner="cem")[0].successful
    planned = client.step(6, 1)
    assert planned.stats.planner == "cem"
    assert client.set_params(policy="explore", planner="mppi", num_samples=700,
                             horizon=7)[0].successful
    assert client.step(6, 2).stats.planner == "exploration"
    assert client.set_params(policy="auto")[0].successful


class StateStream:
    """Publishes task states of episode 0 (no schedule) at 10 Hz from a timer."""

    def __init__(self, client: PlannerClient) -> None:
        self.client, self.step = client, 0
        self.goal = TASK.episode_goals(0, 1).numpy()[0]
        self.timer = client.node.create_timer(0.1, self._publish)

    def _publish(self) -> None:
        self.client.state(0, self.step, goal=self.goal)
        self.step += 1

    def stop(self) -> None:
        self.client.node.destroy_timer(self.timer)


def _window(client: PlannerClient, ticks: int) -> tuple[list[PlannedAction], int]:
    """The next ``ticks`` planned actions (consecutive, none lost) and the joint commands
    received meanwhile."""
    start_commands, start_actions = client.counts()
    wait_for(lambda: len(client.actions) >= start_actions + ticks, 20, f"{ticks} commands")
    with client._lock:
        actions = client.actions[start_actions:start_actions + ticks]
        n_commands = len(client.commands) - start_commands
        n_commands -= len(client.actions) - start_actions - ticks  # received after the window
    numbers = [a.stats.ticks for a in actions]
    assert numbers == list(range(numbers[0], numbers[0] + ticks)), "lost messages"
    return actions, n_commands


def test_realtime_publishes_at_the_control_rate_and_falls_back_when_plans_are_late():
    proc = start_planner("/rt", "mode:=realtime", "num_samples:=50", "control_rate_hz:=10.0",
                         "state_timeout_s:=2.0",  # not what this test is about
                         "act_without_schedule:=true")  # its states are episode 0
    try:
        with spinning_node("planner_rt_test") as node:
            client = PlannerClient(node, "/rt")
            client.model(1, serialized(ensemble(TASK.state_dim, TASK.action_dim, seed=1)))
            stream = StateStream(client)
            try:
                first = wait_for(lambda: next((a.stats.ticks for a in client.actions
                                               if a.stats.planner == "mppi"
                                               and not a.stats.fallback), None), 60,
                                 "on-time plans")
                # One second to settle (first plans pay torch's one-off costs), then 3 s.
                wait_for(lambda: client.actions[-1].stats.ticks >= first + 10, 20, "warm-up")
                for attempt in range(3):
                    actions, n_commands = _window(client, ticks=31)
                    stamps = np.array([a.header.stamp.sec + 1e-9 * a.header.stamp.nanosec
                                       for a in actions])
                    periods = np.diff(stamps)
                    late = [(a.stats.ticks, round(a.stats.plan_latency_ms, 1)) for a in actions
                            if a.stats.fallback]
                    misses = actions[-1].stats.deadline_misses - actions[0].stats.deadline_misses
                    # A window in which the planner process itself was starved of CPU by other
                    # work on the machine (a tick 1.5 periods late) says nothing about the
                    # planner: measure again. Misses without that are a failure at once.
                    if (misses or late) and periods.max() > 0.15 and attempt < 2:
                        print(f"window {attempt} disturbed (period {periods.max():.3f} s)")
                        continue
                    break
                assert misses == 0 and not late, (late, periods.round(3).tolist())
                # The planner's own publication times (its header stamps), so that the test
                # process's scheduling does not count against the planner.
                rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
                assert abs(rate - 10.0) <= 1.0, f"{rate:.2f} Hz: {periods.round(3).tolist()}"
                assert abs(n_commands - len(actions)) <= 2, "one joint command per tick"
                assert all(a.stats.planner == "mppi" and a.stats.num_samples == 50
                           for a in actions)
                misses_before = actions[-1].stats.deadline_misses

                # A plan that takes several periods: the timer keeps the rate, falls back on
                # the previous plan and counts misses.
                assert client.set_params(num_samples=3000, horizon=30)[0].successful
                n_commands, n_actions = client.counts()
                wait_for(lambda: any(a.stats.fallback and a.stats.deadline_misses
                                     >= misses_before + 3 for a in client.actions[n_actions:]),
                         30, "fallback commands and counted misses")
                wait_for(lambda: client.counts()[0] >= n_commands + 20, 10,
                         "commands at the control rate while plans are late")
                slow = wait_for(lambda: [a for a in client.actions[n_actions:]
                                         if a.stats.horizon == 30], 30, "a slow plan in use")
                assert min(a.stats.plan_latency_ms for a in slow) > 100.0
                wait_for(lambda: client.diagnostic_value("recent_deadline_misses") not in
                         (None, "0"), 10, "misses in diagnostics")
                assert 1 in client.levels_since(0), "no WARN for deadline misses"

                # A new control rate takes effect on the running timer.
                assert client.set_params(num_samples=50, horizon=7,
                                         control_rate_hz=20.0)[0].successful
                wait_for(lambda: [a.stats.horizon for a in client.actions[-10:]] == [7] * 10
                         and not any(a.stats.fallback for a in client.actions[-10:]), 30,
                         "on-time plans at the new rate")
                actions, _ = _window(client, ticks=21)
                stamps = [a.header.stamp.sec + 1e-9 * a.header.stamp.nanosec for a in actions]
                assert abs(20 / (stamps[-1] - stamps[0]) - 20.0) <= 2.0
            finally:
                stream.stop()
    finally:
        out = stop_process(proc)
    assert "Traceback" not in out, out
