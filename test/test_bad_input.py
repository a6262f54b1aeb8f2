"""Bad input to every node, as real node processes: each item is rejected with a log line
and a diagnostic (``rejected_<kind>`` on /diagnostics), and the node keeps running.

One process per class (class-scoped fixture, stopped before the next class starts, so only
two DDS participants exist at a time); each class ends by stopping its process and reading
its log. docs/bad_input.md lists every item, where it is checked and its diagnostic key.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.models import ensemble, serialized, with_nan_weight
from helpers.ros import spinning_node, start_process, stop_process
from helpers.sim_client import SimClient
from helpers.untrusted import flipped, npz_with_object_array, pickle_bomb, truncated
from helpers.waiting import Inbox, call_service, wait_for

from mbrl_ros.launch.packages import executable

pytestmark = pytest.mark.ros
_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length (serialization.py)


# ----- shared plumbing ---------------------------------------------------------------------
class Proc:
    """A node process whose output is read once, when it is stopped."""

    def __init__(self, exe: str, ns: str, *params: str) -> None:
        args = [str(executable("mbrl_ros", exe)), "--ros-args", "-r", f"__ns:={ns}"]
        for p in params:
            args += ["-p", p]
        self.proc = start_process(args)
        self.output: str | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        if self.output is None:
            self.output = stop_process(self.proc)
        return self.output


class Watch:
    """The newest /diagnostics values of one node, its parameter service, its status."""

    def __init__(self, node, fqn: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import SetParameters

        from mbrl_ros.srv import GetStatus

        self.node, self.fqn = node, fqn
        self._lock = threading.Lock()
        self.values: dict[str, str] = {}
        self.levels: list[int] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.param_client = node.create_client(SetParameters, f"{fqn}/set_parameters")
        self.status_client = node.create_client(GetStatus, f"{fqn}/get_status")
        wait_for(lambda: self.param_client.wait_for_service(timeout_sec=0.1), 60,
                 f"{fqn}/set_parameters")

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == self.fqn:
                with self._lock:
                    self.values.update({kv.key: kv.value for kv in status.values})
                    self.levels.append(status.level[0])

    def value(self, key: str) -> str | None:
        with self._lock:
            return self.values.get(key)

    def count(self, kind: str) -> int:
        return int(self.value(f"rejected_{kind}") or 0)

    def wait_count(self, kind: str, expected: int, timeout: float = 20.0) -> None:
        wait_for(lambda: self.count(kind) == expected, timeout,
                 f"rejected_{kind} == {expected} on /diagnostics (now {self.count(kind)})")

    def call(self, client, request, what: str, idempotent: bool = False):
        return call_service(client, request, what, timeout=60, idempotent=idempotent)

    def set_params(self, **values) -> list:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self.call(self.param_client, request, "set_parameters").results

    def status(self):
        from mbrl_ros.srv import GetStatus

        return self.call(self.status_client, GetStatus.Request(), "get_status", idempotent=True)

    def status_values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.status().values}


def _refuse_runtime_parameters(watch: Watch, bad: list[tuple[str, object, str]]) -> None:
    """Each change is refused with a reason and counted as one parameter problem."""
    before = watch.count("parameter")
    for i, (name, value, reason) in enumerate(bad, start=1):
        (result,) = watch.set_params(**{name: value})
        assert not result.successful and reason in result.reason.lower(), (name, result.reason)
        watch.wait_count("parameter", before + i)


def _task():
    from mbrl_ros.nodes.task_params import default_task_values, task_from_params

    return task_from_params(default_task_values())


@pytest.fixture(scope="module")
def sim_states() -> np.ndarray:
    """Real Baoding task states and the sim's qpos size."""
    from mbrl_ros.sim import HandSim

    sim = HandSim("baoding")
    rng = np.random.default_rng(0)
    states = [sim.reset(seed=0).task_obs]
    for _ in range(11):
        states.append(sim.step(rng.uniform(-0.3, 0.3, 24)).observation.task_obs)
    return np.array(states)


# ----- the simulator -----------------------------------------------------------------------
SIM_NS = "/bad_sim"


@pytest.fixture(scope="class")
def sim():
    proc = Proc("shadow_hand_sim", SIM_NS, "mode:=lockstep", "marker_rate_hz:=0.0",
                "joints:=[a,b]", "frame_skip:=abc")
    try:
        with spinning_node("bad_sim_test") as node:
            yield SimClient(node, SIM_NS), Watch(node, f"{SIM_NS}/shadow_hand_sim"), proc
    finally:
        print(proc.stop())


class TestSimulator:
    def test_bad_start_parameters_are_refused_and_the_defaults_run(self, sim):
        from mbrl_ros.sim import HAND_JOINT_NAMES

        client, watch, proc = sim
        client.reset(seed=0)
        assert list(client.latest_state().name) == list(HAND_JOINT_NAMES)  # default order
        watch.wait_count("parameter", 2)  # joints (unknown names, wrong count), frame_skip
        _refuse_runtime_parameters(watch, [
            ("marker_rate_hz", "fast", "type"), ("marker_rate_hz", -1.0, "range"),
            ("out_of_limit", "explode", "not one of"), ("frame_skip", 10, "read-only"),
            ("joints", ["rh_A"], "read-only")])
        (ok,) = watch.set_params(lockstep_republish_s=5.0)
        assert ok.successful and watch.count("parameter") == 7
        assert proc.alive()

    def test_nan_inf_and_wrong_length_commands_are_rejected(self, sim):
        client, watch, proc = sim
        client.reset(seed=0)
        key = np.asarray(client.latest_state().position)
        stamp = client.latest_stamp()
        before = watch.count("command")
        bad = [np.full(24, np.inf), np.where(np.arange(24) == 5, -np.inf, key),
               np.where(np.arange(24) == 0, np.nan, key), key[:23], np.append(key, 0.0), []]
        for q in bad:
            client.send(q)
        watch.wait_count("command", before + len(bad))
        assert client.latest_stamp() == stamp, "a rejected command advanced the simulation"
        client.step(key)
        assert proc.alive()

    def test_invalid_resets_are_refused_with_a_reason_and_change_nothing(self, sim, sim_states):
        from mbrl_ros.sim import HandSim
        from mbrl_ros.srv import ResetEpisode

        client, watch, proc = sim
        nq = HandSim("baoding").model.nq
        good = client.reset(seed=3)
        stamp = client.latest_stamp()

        def reset(**fields) -> ResetEpisode.Response:
            return watch.call(client.reset_client, ResetEpisode.Request(**fields), "reset")

        bad = [({"task": "pen"}, "unknown task"),
               ({"initial_qpos": [0.0] * 3}, "initial_qpos has 3 values"),
               ({"initial_qpos": [0.0] * (nq - 1) + [math.nan]}, "non-finite"),
               ({"task": "cube", "initial_qpos": [0.0] * 3}, "initial_qpos has 3 values")]
        for i, (fields, reason) in enumerate(bad, start=1):
            res = reset(**fields)
            assert not res.success and reason in res.message, res.message
            watch.wait_count("reset", i)
        assert client.latest_stamp() == stamp, "a refused reset published a new episode"
        # the refused switch to the cube left the balls in place
        assert list(client.latest_objects().names) == ["ball1", "ball2"]

        last = reset(seed=1, episode_id=2**32 - 1)  # the largest id is valid ...
        assert last.success and last.episode_id == 2**32 - 1 > good.episode_id
        exhausted = reset(seed=1)  # ... but there is no next one to pick
        assert not exhausted.success and "exhausted" in exhausted.message
        watch.wait_count("reset", len(bad) + 1)
        assert reset(seed=1, episode_id=7).episode_id == 7
        assert proc.alive()

    def test_every_rejection_left_a_log_line(self, sim):
        _, _, proc = sim
        out = proc.stop()
        assert "parameter joints=['a', 'b'] rejected at start-up" in out
        assert "parameter frame_skip rejected at start-up" in out and "using default" in out
        assert out.count("parameter change rejected") == 5
        assert "command: joint command has non-finite values" in out
        assert "command: joint command has 23 values, expected 24" in out
        assert "reset: unknown task 'pen'" in out and "exhausted" in out


# ----- the state estimator -----------------------------------------------------------------
EST_NS = "/bad_est"


class EstimatorClient:
    def __init__(self, node) -> None:
        from sensor_msgs.msg import JointState

        from mbrl_ros.msg import GoalSchedule, ObjectStates, TaskState
        from mbrl_ros.nodes.conversions import LATCHED_QOS as latched
        from mbrl_ros.srv import ResetEpisode

        self.node = node
        self.states = Inbox()
        node.create_subscription(TaskState, f"{EST_NS}/task_state", self.states.add, 50)
        self.joints = node.create_publisher(JointState, f"{EST_NS}/joint_states", 10)
        self.objects = node.create_publisher(ObjectStates, f"{EST_NS}/object_states", 10)
        self.schedules = node.create_publisher(GoalSchedule, f"{EST_NS}/goal_schedule", latched)
        self.reset_client = node.create_client(ResetEpisode, f"{EST_NS}/state_estimator/reset")
        for pub in (self.joints, self.objects, self.schedules):
            wait_for(lambda p=pub: p.get_subscription_count() > 0, 20, "estimator subscriptions")
        self.t0 = node.get_clock().now().nanoseconds

    def stamp(self, step: int):
        from mbrl_ros.nodes.conversions import time_from_ns

        return time_from_ns(self.t0 + step * 100_000_000)

    def send_objects(self, step: int, names=("ball1", "ball2"), positions=None, quats=None):
        from mbrl_ros.msg import ObjectStates
        from mbrl_ros.nodes.conversions import pose

        n = len(names)
        positions = [(0.01 * i, 0.05, 0.16) for i in range(n)] if positions is None else positions
        quats = [(1.0, 0.0, 0.0, 0.0)] * n if quats is None else quats
        msg = ObjectStates(names=list(names), poses=[pose(p, q) for p, q in zip(
            positions, quats, strict=True)])
        msg.header.stamp, msg.header.frame_id = self.stamp(step), "world"
        self.objects.publish(msg)

    def send_joints(self, step: int, names, position, velocity=(), effort=()):
        from sensor_msgs.msg import JointState

        msg = JointState(name=list(names), position=[float(v) for v in position],
                         velocity=[float(v) for v in velocity], effort=[float(v) for v in effort])
        msg.header.stamp = self.stamp(step)
        self.joints.publish(msg)

    def state(self, step: int):
        return self.states.wait_first(lambda m: m.step == step and not m.stale, 20,
                                      f"the task state of step {step}")


@pytest.fixture(scope="class")
def estimator():
    proc = Proc("state_estimator", EST_NS, "use_sim_time:=false", "control_period_s:=abc",
                "joints:=[rh_FFJ4]", "object_wait_s:=0.5", "stale_timeout_s:=60.0")
    try:
        with spinning_node("bad_est_test") as node:
            watch = Watch(node, f"{EST_NS}/state_estimator")
            yield EstimatorClient(node), watch, proc
    finally:
        print(proc.stop())


class TestEstimator:
    def test_bad_start_parameters_are_refused_and_the_defaults_run(self, estimator):
        _, watch, proc = estimator
        watch.wait_count("parameter", 2)  # control_period_s (type), joints (count)
        assert proc.alive()

    def test_joint_states_in_any_order_are_mapped_by_name(self, estimator):
        from mbrl_ros.sim import HAND_JOINT_NAMES

        client, _, _ = estimator
        task = _task()
        names = list(HAND_JOINT_NAMES)
        q = 0.01 * np.arange(1, 25)
        orders = (np.arange(24)[::-1], np.random.default_rng(1).permutation(24))
        for step, order in enumerate(orders):
            client.send_objects(step)
            client.send_joints(step, [names[i] for i in order], (q + step)[order],
                               velocity=np.zeros(24))
            state = np.asarray(client.state(step).state)
            np.testing.assert_allclose(state[task.layout.slice("joints")], q + step, atol=1e-12)

    def test_bad_joint_states_are_rejected(self, estimator):
        from mbrl_ros.sim import HAND_JOINT_NAMES

        client, watch, proc = estimator
        names, q = list(HAND_JOINT_NAMES), 0.01 * np.arange(1, 25)
        before = watch.count("joint_states")
        bad = [
            ([*names[:23], "bogus_joint"], q, ()),           # unknown name
            (names[:23], q[:23], ()),                         # a joint missing
            ([names[0], *names[:23]], q, ()),                 # a duplicate name
            (names, q[:23], ()),                              # 24 names, 23 positions
            (names, q, np.zeros(5)),                          # 24 names, 5 velocities
            (names, np.where(np.arange(24) == 4, np.nan, q), ()),
            (names, np.where(np.arange(24) == 9, np.inf, q), ()),
            (names, q, np.where(np.arange(24) == 2, -np.inf, 0.0)),  # a velocity
        ]
        for step_names, position, velocity in bad:
            client.send_joints(2, step_names, position, velocity)
        watch.wait_count("joint_states", before + len(bad))
        client.send_objects(2)
        client.send_joints(2, names, q)
        assert client.state(2).episode_id == 0 and proc.alive()

    def test_extra_joints_are_ignored_only_when_configured(self, estimator):
        from mbrl_ros.sim import HAND_JOINT_NAMES

        client, watch, _ = estimator
        names, q = [*HAND_JOINT_NAMES, "arm_elbow"], np.append(0.02 * np.arange(1, 25), 1.5)
        before = watch.count("joint_states")
        client.send_objects(4)
        client.send_joints(4, names, q)
        watch.wait_count("joint_states", before + 1)
        assert watch.set_params(ignore_extra_joints=True)[0].successful
        client.send_joints(4, names, q)
        state = np.asarray(client.state(4).state)
        np.testing.assert_allclose(state[_task().layout.slice("joints")], q[:24], atol=1e-12)
        assert watch.set_params(ignore_extra_joints=False)[0].successful

    def test_bad_object_states_are_rejected(self, estimator):
        client, watch, proc = estimator
        before = watch.count("object_states")
        client.send_objects(3, names=("ball1", "ball1"))
        client.send_objects(3, positions=[(0.0, math.nan, 0.1), (0.0, 0.0, 0.1)])
        client.send_objects(3, positions=[(0.0, 0.0, math.inf), (0.0, 0.0, 0.1)])
        client.send_objects(3, quats=[(2.0, 0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)])
        client.send_objects(3, names=("cube",), positions=[(0, 0, 0)])
        watch.wait_count("object_states", before + 5)
        assert proc.alive()

    def test_resets_for_another_task_or_an_older_episode_are_refused(self, estimator):
        from mbrl_ros.msg import GoalSchedule
        from mbrl_ros.srv import ResetEpisode

        client, watch, proc = estimator
        task = _task()

        def reset(**fields):
            return watch.call(client.reset_client, ResetEpisode.Request(**fields), "reset")

        wrong = reset(task="cube")
        assert not wrong.success and "this estimator runs 'baoding'" in wrong.message
        goals = task.episode_goals(0, 11).double().numpy()
        schedule = GoalSchedule(task="baoding", episode_id=5, episode_length=10,
                                goal_dim=task.goal_dim, goals=goals.ravel().tolist())
        schedule.header.stamp = client.stamp(20)
        client.schedules.publish(schedule)
        wait_for(lambda: watch.value("episode") == "5", 20, "the estimator in episode 5")
        old = reset(episode_id=3)
        assert not old.success and "older than the current episode 5" in old.message
        watch.wait_count("reset", 2)
        assert reset(episode_id=5).success and reset().success and reset(task="baoding").success
        assert watch.count("reset") == 2 and proc.alive()

    def test_every_rejection_left_a_log_line(self, estimator):
        _, _, proc = estimator
        out = proc.stop()
        assert "parameter control_period_s rejected at start-up" in out
        assert "parameter joints=['rh_FFJ4'] rejected at start-up" in out
        assert "unknown ['bogus_joint']" in out and "duplicate joint names" in out
        assert "24 names but 24 positions, 5 velocities" in out
        assert "duplicate object names" in out and "not unit quaternions" in out
        assert "reset: reset for episode 3, older than the current episode 5" in out


# ----- the planner -------------------------------------------------------------------------
PLAN_NS = "/bad_plan"


class PlannerClient:
    def __init__(self, node) -> None:
        from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, TaskState
        from mbrl_ros.nodes.conversions import LATCHED_QOS as latched

        self.node = node
        self.actions = Inbox()
        self.states = node.create_publisher(TaskState, f"{PLAN_NS}/task_state", 10)
        self.schedules = node.create_publisher(GoalSchedule, f"{PLAN_NS}/goal_schedule", latched)
        self.models = node.create_publisher(ModelUpdate, f"{PLAN_NS}/model_update", latched)
        node.create_subscription(PlannedAction, f"{PLAN_NS}/planned_action", self.actions.add, 50)
        wait_for(lambda: self.states.get_subscription_count() > 0, 20, "planner subscriptions")

    def state_msg(self, step: int, state: np.ndarray, episode: int = 1, task: str = "baoding"):
        return _state_msg(step, state, episode, task)

    def action(self, step: int, episode: int = 1):
        return self.actions.wait_first(lambda a: (a.episode_id, a.step) == (episode, step), 30,
                                       f"the planned action of step {step}")

    def model(self, version: int, data: bytes, **overrides) -> None:
        from mbrl_ros.core.models.serialization import checksum
        from mbrl_ros.msg import ModelUpdate

        msg = ModelUpdate(format_version=ModelUpdate.FORMAT_VERSION, version=version,
                          task="baoding", state_fields=list(_task().layout.names),
                          weights=data, checksum=checksum(data))
        for key, value in overrides.items():
            setattr(msg, key, value)
        self.models.publish(msg)


def _state_msg(step: int, state: np.ndarray, episode: int = 1, task: str = "baoding"):
    """A TaskState of the default Baoding task (its goal: the schedule's goal of ``step``)."""
    from mbrl_ros.msg import StateField, TaskState
    from mbrl_ros.nodes.conversions import time_from_ns

    layout = _task().layout.to_msg_fields()
    msg = TaskState(task=task, episode_id=episode, step=step, state=[float(v) for v in state],
                    layout=[StateField(name=n, start=s, size=z) for n, s, z in layout])
    msg.goal = [float(v) for v in _task().episode_goals(0, step + 1)[step]]
    msg.header.stamp = time_from_ns(1_000_000_000 * (100 * episode) + 100_000_000 * step)
    return msg


def _rewrite_header(data: bytes, change) -> bytes:
    """``data`` with its JSON header changed by ``change(header)`` (payload untouched)."""
    magic, version, length = _PREFIX.unpack_from(data)
    header = json.loads(data[_PREFIX.size:_PREFIX.size + length])
    change(header)
    encoded = json.dumps(header, sort_keys=True).encode()
    return _PREFIX.pack(magic, version, len(encoded)) + encoded + data[_PREFIX.size + length:]


def _with_wrong_tensor_shape(data: bytes) -> bytes:
    def change(header):
        header["tensors"][0]["shape"] = [7, 7]
    return _rewrite_header(data, change)


def _with_payload_format(data: bytes, version: int) -> bytes:
    magic, _, length = _PREFIX.unpack_from(data)
    return _PREFIX.pack(magic, version, length) + data[_PREFIX.size:]


@pytest.fixture(scope="class")
def planner():
    proc = Proc("mpc_planner", PLAN_NS, "horizon:=2.5", "policy:=warp", "num_samples:=64")
    try:
        with spinning_node("bad_plan_test") as node:
            watch = Watch(node, f"{PLAN_NS}/mpc_planner")
            yield PlannerClient(node), watch, proc
    finally:
        print(proc.stop())


class TestPlanner:
    def test_bad_start_and_runtime_parameters_are_refused(self, planner):
        _, watch, proc = planner
        watch.wait_count("parameter", 2)  # horizon (a float for an int), policy (choice)
        assert watch.status_values()["policy"] == "auto"
        _refuse_runtime_parameters(watch, [
            ("num_samples", 0, "range"), ("num_samples", "many", "type"),
            ("gamma", math.nan, "range"), ("policy", "warp", "not one of"),
            ("mode", "realtime", "read-only"), ("bogus", 1, "undeclared")])
        (ok,) = watch.set_params(num_samples=32)
        assert ok.successful and proc.alive()

    def test_bad_task_states_are_rejected(self, planner, sim_states):
        from mbrl_ros.msg import GoalSchedule, StateField

        client, watch, proc = planner
        task = _task()
        goals = task.episode_goals(0, 11).double().numpy()
        client.schedules.publish(GoalSchedule(task="baoding", episode_id=1, episode_length=10,
                                              goal_dim=task.goal_dim,
                                              goals=goals.ravel().tolist()))
        client.states.publish(client.state_msg(0, sim_states[0]))
        client.action(0)  # the schedule is in: every state below is checked at once
        before = watch.count("task_state")
        nan, inf = sim_states[1].copy(), sim_states[1].copy()
        nan[30], inf[3] = math.nan, -math.inf
        layout = client.state_msg(1, sim_states[1])
        layout.layout[1] = StateField(name="ball9_pos", start=24, size=3)
        bad = [client.state_msg(1, nan), client.state_msg(1, inf),
               client.state_msg(1, sim_states[1][:39]), layout,
               client.state_msg(1, sim_states[1], task="cube")]
        for msg in bad:
            client.states.publish(msg)
        watch.wait_count("task_state", before + len(bad))
        client.states.publish(client.state_msg(1, sim_states[1]))
        assert np.all(np.isfinite(client.action(1).action)) and proc.alive()

    def test_bad_model_updates_are_rejected_never_unpickled_and_the_old_model_stays(
            self, planner, sim_states, tmp_path):
        from mbrl_ros.msg import ModelUpdate

        client, watch, proc = planner
        task = _task()
        good = serialized(ensemble(task.state_dim, task.action_dim, seed=1, members=2,
                                   hidden=(16,)))
        client.model(1, good)
        wait_for(lambda: watch.status_values().get("accepted_model_version") == "1", 30,
                 "the planner to accept model 1")
        marker = tmp_path / "unpickled"
        bomb = pickle_bomb(marker)
        other_dims = serialized(ensemble(task.state_dim - 1, task.action_dim, members=2,
                                         hidden=(16,)))
        bad = [
            (good, {"checksum": hashlib.sha256(b"other").hexdigest()}),   # bad checksum
            (_with_wrong_tensor_shape(good), {}),                          # wrong shapes
            (other_dims, {}),                                              # wrong dims
            (with_nan_weight(good), {}),                                   # non-finite weight
            (_with_payload_format(good, 2), {}),                           # newer payload
            (good, {"format_version": ModelUpdate.FORMAT_VERSION + 1}),    # newer message
            (bomb, {}),                                                    # a pickle
            (truncated(good), {}),                                         # cut in half
            (flipped(good, at=0.9), {}),                                   # bytes flipped
        ]
        before = watch.count("model_update")
        for i, (data, overrides) in enumerate(bad, start=1):
            client.model(10 + i, data, **overrides)
            watch.wait_count("model_update", before + i, timeout=30)
        assert not marker.exists(), "the planner unpickled a model update"
        values = watch.status_values()
        assert values["accepted_model_version"] == "1"
        assert values["rejected_models"] == str(len(bad))
        client.states.publish(client.state_msg(2, sim_states[2]))
        planned = client.action(2)
        assert planned.stats.planner == "mppi" and planned.stats.model_version == 1
        assert planned.stats.horizon == 7  # the default: horizon:=2.5 was refused
        assert proc.alive()

    def test_every_rejection_left_a_log_line(self, planner):
        _, _, proc = planner
        out = proc.stop()
        assert "parameter horizon rejected at start-up" in out
        assert "parameter rejected at start-up: policy='warp'" in out
        assert "unknown parameter bogus" in out
        assert "task_state: TaskState.state has non-finite values" in out
        assert "state of task 'cube'" in out and "differs from the task's" in out
        for reason in ("checksum mismatch", "has shape [7, 7]", "model dims", "non-finite",
                       "model format version 2 is newer", "format_version 2 is newer",
                       "bad magic", "truncated model data"):
            assert reason in out, reason
        assert out.count("keeping model version 1") == 9


# ----- the trainer -------------------------------------------------------------------------
TRAIN_NS = "/bad_train"
GOOD_EPISODES = 2
STEPS = 10


def _prepare_disk(root: Path, sim_states: np.ndarray, marker: Path) -> dict:
    """Two good episodes and four bad episode files; checkpoints 1-2 good, 3-5 bad."""
    from mbrl_ros.core.data.dataset import EpisodeDataset
    from mbrl_ros.core.models.model_store import ModelStore
    from mbrl_ros.core.models.serialization import checksum

    task = _task()
    dataset_dir, models_dir = root / "dataset", root / "models"
    dataset = EpisodeDataset(dataset_dir)
    rng = np.random.default_rng(0)
    for _ in range(GOOD_EPISODES):
        states = sim_states[: STEPS + 1]
        dataset.append_episode(state=states[:-1], action=rng.uniform(-1, 1, (STEPS, 24)),
                               next_state=states[1:], reward=np.zeros(STEPS),
                               time=0.1 * np.arange(STEPS), meta={"policy": "exploration"})
    good = sorted(dataset_dir.glob("episode_*.npz"))
    (dataset_dir / "episode_000002.npz").write_bytes(pickle_bomb(marker))
    arrays = {"action": np.zeros((2, 24)), "next_state": sim_states[:2], "reward": np.zeros(2),
              "done": np.zeros(2, bool), "time": np.zeros(2), "meta": np.array("{}")}
    (dataset_dir / "episode_000003.npz").write_bytes(  # every member: the loader gets as
        npz_with_object_array(marker, **arrays))       # far as the object array
    (dataset_dir / "episode_000004.npz").write_bytes(truncated(good[0].read_bytes()))
    (dataset_dir / "episode_000005.npz").write_bytes(flipped(good[1].read_bytes(), at=0.0))

    store = ModelStore(models_dir)
    meta = {"task": "baoding", "state_fields": list(task.layout.names), "metrics": {}}
    for version in (1, 2):
        model = ensemble(task.state_dim, task.action_dim, seed=version, members=2, hidden=(16,))
        stored = store.save(version, model, {**meta, "architecture": model.config.to_dict()})
    (models_dir / "model_000003.mbrl").write_bytes(flipped(stored.data, at=0.7))
    (models_dir / "model_000004.mbrl").write_bytes(truncated(stored.data))
    (models_dir / "model_000005.mbrl").write_bytes(pickle_bomb(marker))
    return {"dataset": dataset_dir, "models": models_dir, "checksum": checksum(stored.data)}


class TrainerClient:
    def __init__(self, node) -> None:

        from rclpy.action import ActionClient

        from mbrl_ros.action import TrainModel
        from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, TaskState

        self.node = node
        self._lock = threading.Lock()
        self.models: list = []
        from mbrl_ros.nodes.conversions import LATCHED_QOS as latched
        self.states = node.create_publisher(TaskState, f"{TRAIN_NS}/task_state", 50)
        self.actions = node.create_publisher(PlannedAction, f"{TRAIN_NS}/planned_action", 50)
        self.schedules = node.create_publisher(GoalSchedule, f"{TRAIN_NS}/goal_schedule", latched)
        node.create_subscription(ModelUpdate, f"{TRAIN_NS}/model_update", self._on_model, latched)
        self.train_client = ActionClient(node, TrainModel, f"{TRAIN_NS}/dynamics_trainer/train")
        self.feedback: list = []  # (goal id, TrainModel.Feedback)
        for pub in (self.states, self.actions, self.schedules):
            wait_for(lambda p=pub: p.get_subscription_count() > 0, 30, "trainer subscriptions")
        wait_for(self.train_client.server_is_ready, 30, "the trainer's train action")

    def _on_model(self, msg) -> None:
        with self._lock:
            self.models.append(msg)

    def _on_feedback(self, msg) -> None:
        with self._lock:
            self.feedback.append((bytes(msg.goal_id.uuid), msg.feedback))

    def feedback_of(self, goal) -> list:
        with self._lock:
            return [f for uuid, f in self.feedback if uuid == bytes(goal.goal_id.uuid)]

    def send_goal(self, epochs: int = 0):
        """The trainer's answer to a ``~/train`` goal: its goal handle (``accepted``)."""
        from mbrl_ros.action import TrainModel

        future = self.train_client.send_goal_async(
            TrainModel.Goal(from_scratch=True, epochs=epochs), feedback_callback=self._on_feedback)
        return wait_for(lambda: future.done() and future.result(), 30, "the goal response")

    def action_msg(self, episode: int, step: int, action):
        from mbrl_ros.msg import PlannedAction

        msg = PlannedAction(episode_id=episode, step=step, action_dim=24,
                            action=[float(v) for v in action])
        msg.stats.planner = "exploration"
        return msg


@pytest.fixture(scope="class")
def trainer(tmp_path_factory, sim_states):
    root = tmp_path_factory.mktemp("bad_train")
    marker = root / "unpickled"
    disk = _prepare_disk(root, sim_states, marker)
    proc = Proc("dynamics_trainer", TRAIN_NS, f"dataset_dir:={disk['dataset']}",
                "ensemble.members:=2", "ensemble.hidden:=[16]", "train.batch_size:=16",
                "action_grace_s:=0.2", "keep_models:=abc", "niceness:=1.5")
    try:
        with spinning_node("bad_train_test") as node:
            watch = Watch(node, f"{TRAIN_NS}/dynamics_trainer")
            yield TrainerClient(node), watch, proc, {**disk, "marker": marker}
    finally:
        print(proc.stop())


class TestTrainer:
    def test_damaged_and_hostile_files_are_quarantined_reported_and_the_rest_loads(
            self, trainer):
        client, watch, proc, disk = trainer
        status = watch.status()
        assert (status.num_episodes, status.num_transitions) == (GOOD_EPISODES,
                                                                 GOOD_EPISODES * STEPS)
        assert status.model_version == 2  # 3-5 were unusable
        assert watch.status_values()["quarantined_files"] == "7"
        wait_for(lambda: client.models, 20, "the republished checkpoint")
        assert client.models[-1].version == 2 and client.models[-1].checksum == disk["checksum"]
        watch.wait_count("quarantined_file", 7)
        watch.wait_count("parameter", 2)  # keep_models, niceness: wrong types
        assert sorted(p.name for p in (disk["dataset"] / "quarantine").iterdir()) == [
            f"episode_00000{i}.npz" for i in (2, 3, 4, 5)]
        assert sorted(p.name for p in (disk["models"] / "quarantine").iterdir()) == [
            f"model_00000{i}.mbrl" for i in (3, 4, 5)]
        assert not disk["marker"].exists(), "the trainer unpickled a file"
        assert proc.alive()

    def test_train_requests_at_the_wrong_time_are_refused_and_recording_goes_on(
            self, trainer, sim_states):
        from mbrl_ros.msg import GoalSchedule

        client, watch, proc, _ = trainer

        def refusal() -> str:  # a rejected goal carries no reason: the trainer's status does
            return watch.status_values()["train_refusal"]

        early = client.send_goal()
        assert not early.accepted and "too little data: 20 transitions" in refusal()
        watch.wait_count("train_request", 1)
        (ok,) = watch.set_params(min_transitions=10)
        assert ok.successful
        job = client.send_goal(epochs=1_000_000)  # runs until cancelled below
        assert job.accepted
        wait_for(lambda: len(client.feedback_of(job)) >= 2, 60, "feedback of two epochs")
        first, second = client.feedback_of(job)[:2]
        assert (first.epoch, second.epoch) == (1, 2) and first.epochs == 1_000_000
        assert math.isfinite(first.train_loss)
        job_id = int(watch.status_values()["job_id"])
        busy = client.send_goal()
        assert not busy.accepted and f"job {job_id} is still running" in refusal()
        watch.wait_count("train_request", 2)

        # recording goes on meanwhile, and bad samples are still refused
        task = _task()
        goals = task.episode_goals(0, 4).double().numpy()
        client.schedules.publish(GoalSchedule(task="baoding", episode_id=9, episode_length=3,
                                              goal_dim=task.goal_dim,
                                              goals=goals.ravel().tolist()))
        nan_state = sim_states[0].copy()
        nan_state[0] = math.nan
        client.states.publish(_state_msg(0, nan_state, episode=9))
        client.actions.publish(client.action_msg(9, 0, np.full(24, math.nan)))
        client.actions.publish(client.action_msg(9, 0, np.zeros(23)))
        watch.wait_count("task_state", 1)
        watch.wait_count("planned_action", 2)
        rng = np.random.default_rng(1)
        for k in range(4):
            client.states.publish(_state_msg(k, sim_states[k], episode=9))
            if k < 3:
                client.actions.publish(client.action_msg(9, k, rng.uniform(-1, 1, 24)))
        wait_for(lambda: watch.status().num_transitions == GOOD_EPISODES * STEPS + 3, 30,
                 "the live episode to be stored while training")
        assert watch.status().state == "training" and proc.alive()

        # a cancel stops the job at its next epoch; it publishes no model
        from action_msgs.msg import GoalStatus

        models = len(client.models)
        result = job.get_result_async()
        cancel = job.cancel_goal_async()
        wait_for(lambda: cancel.done() and cancel.result(), 30, "the cancel response")
        assert len(cancel.result().goals_canceling) == 1
        wait_for(result.done, 30, "the cancelled goal's result")
        assert result.result().status == GoalStatus.STATUS_CANCELED
        cancelled = result.result().result
        assert cancelled.job_id == job_id and not cancelled.accepted
        assert cancelled.model_version == 2 and "cancelled" in cancelled.message
        # the result goes out as the job stops; its thread ends right after
        wait_for(lambda: watch.status().state == "idle", 30, "the cancelled job's thread to end")
        assert watch.status().model_version == 2

        # a job run to its end: the typed result, and the model it published
        short = client.send_goal(epochs=3)
        assert short.accepted
        result = short.get_result_async()
        wait_for(result.done, 120, "the short job's result")
        assert result.result().status == GoalStatus.STATUS_SUCCEEDED
        done = result.result().result
        assert done.job_id == job_id + 1 and done.message
        assert done.num_transitions == GOOD_EPISODES * STEPS + 3
        assert done.metrics.epochs == 3 and done.metrics.accepted == done.accepted
        assert [f.epoch for f in client.feedback_of(short)] == [1, 2, 3]
        if done.accepted:  # the next version after the newest file (5, quarantined)
            assert done.model_version == 6
            wait_for(lambda: client.models[-1].version == 6, 20, "the new model")
            # one model since the cancel: the cancelled job published none
            assert len(client.models) == models + 1, "a cancelled job published a model"
        else:
            assert done.model_version == 2
            assert len(client.models) == models, "a cancelled job published a model"
        assert client.send_goal(epochs=1_000_000).accepted  # runs until the node stops

    def test_every_rejection_left_a_log_line(self, trainer):
        _, _, proc, _ = trainer
        started = time.monotonic()
        out = proc.stop()
        assert time.monotonic() - started < 15, "the running job held up the shutdown"
        assert "parameter keep_models rejected at start-up" in out
        assert "parameter niceness rejected at start-up" in out
        assert out.count("quarantined_file: ") == 7
        assert "quarantined unreadable episode file" in out
        assert "quarantined unusable model checkpoint" in out
        assert "republished model version 2" in out
        assert "train_request: train request" in out and "refused: too little data" in out
        assert "is still running" in out
