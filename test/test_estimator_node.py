"""``state_estimator`` as a real process next to a real ``shadow_hand_sim`` process."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from helpers.ros import spinning_node, start_process, stop_process
from helpers.sim_client import SimClient, positions
from helpers.waiting import wait_for

from mbrl_ros.launch.packages import executable
from mbrl_ros.nodes.conversions import ns_from_time

pytestmark = pytest.mark.ros
REPUBLISH_S = 0.3  # the lockstep sim re-publishes its state after this long without a command


def _start_pair(ns: str, mode: str, sim_args=(), est_args=()):
    sim_time = "true" if mode == "lockstep" else "false"
    sim = start_process([
        str(executable("mbrl_ros", "shadow_hand_sim")), "--ros-args", "-r", f"__ns:={ns}",
        "-p", f"mode:={mode}", "-p", "marker_rate_hz:=0.0",
        "-p", f"lockstep_republish_s:={REPUBLISH_S}", *sim_args])
    est = start_process([
        str(executable("mbrl_ros", "state_estimator")), "--ros-args", "-r", f"__ns:={ns}",
        "-p", f"use_sim_time:={sim_time}", *est_args])
    return sim, est


class Collector:
    """What the estimator under ``ns`` publishes, plus a schedule publisher."""

    def __init__(self, node, ns: str, schedule_subscribers: int = 2) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64

        from mbrl_ros.msg import GoalSchedule, TaskState
        from mbrl_ros.srv import ResetEpisode

        self.ns = ns
        self._lock = threading.Lock()
        self.states: list[tuple[float, TaskState]] = []  # (wall receipt time, message)
        self.latencies: list[float] = []
        self.diagnostics: list = []
        node.create_subscription(TaskState, f"{ns}/task_state", self._on_state, 100)
        node.create_subscription(Float64, f"{ns}/state_estimator/latency_ms",
                                 lambda m: self._append(self.latencies, m.data), 100)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.schedule_pub = node.create_publisher(GoalSchedule, f"{ns}/goal_schedule", latched)
        self.joint_pub = node.create_publisher(JointState, f"{ns}/joint_states", 10)
        self.reset_client = node.create_client(ResetEpisode, f"{ns}/state_estimator/reset")
        wait_for(lambda: self.reset_client.wait_for_service(timeout_sec=0.1), 60,
                 "the state estimator")
        wait_for(lambda: self.schedule_pub.get_subscription_count() >= schedule_subscribers,
                 20, "the nodes to subscribe to goal_schedule")

    def _append(self, store, item) -> None:
        with self._lock:
            store.append(item)

    def _on_state(self, msg) -> None:
        self._append(self.states, (time.monotonic(), msg))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == f"{self.ns}/state_estimator":
                self._append(self.diagnostics, status)

    def episode(self, episode_id: int) -> list:
        with self._lock:
            return [m for _, m in self.states if m.episode_id == episode_id]

    def diag_value(self, key: str) -> str | None:
        with self._lock:
            for status in reversed(self.diagnostics):
                for kv in status.values:
                    if kv.key == key:
                        return kv.value
        return None

    def start_episode(self, client: SimClient, task, episode_id: int, length: int):
        """Protocol steps 1-2: reset the simulator, publish the episode's goal schedule."""
        from mbrl_ros.msg import GoalSchedule
        from mbrl_ros.srv import ResetEpisode

        future = client.reset_client.call_async(ResetEpisode.Request(seed=1,
                                                                     episode_id=episode_id))
        res = wait_for(lambda: future.done() and future.result(), 30, "the reset response")
        assert res.success, res.message
        t0 = ns_from_time(res.first_observation_stamp)
        wait_for(lambda: client.latest_stamp() >= t0, 10, "the first observation")
        goals = task.episode_goals(0, length + 1).double().numpy() + 0.001 * episode_id
        schedule = GoalSchedule(task=task.name, episode_id=episode_id, episode_length=length,
                                goal_dim=task.goal_dim, goals=goals.ravel().tolist())
        schedule.header.stamp = res.first_observation_stamp
        schedule.header.frame_id = task.goal_frame
        self.schedule_pub.publish(schedule)
        return res, goals


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _wait_state(col: Collector, episode_id: int, step: int):
    return wait_for(lambda: next((m for m in col.episode(episode_id) if m.step == step), None),
                    20, f"TaskState of episode {episode_id} step {step}")


def _check_one_state_per_step(states, length: int) -> dict:
    by_step: dict[int, list] = {}
    for m in states:
        by_step.setdefault(m.step, []).append(m)
    assert sorted(by_step) == list(range(length + 1))
    for step, repeats in by_step.items():  # repeats are lockstep re-publishes: identical
        assert len({_stamp_ns(m) for m in repeats}) == 1, f"step {step} has several stamps"
        assert all(list(m.state) == list(repeats[0].state) for m in repeats)
    return {k: v[0] for k, v in by_step.items()}


@contextmanager
def running_pair(ns: str, mode: str, sim_args=(), est_args=()):
    """A simulator/estimator pair under ``ns`` and a test node, for one test or class.

    One pair at a time: Fast DDS on localhost discovery reaches only a few participants
    per domain by their well-known ports, so a test keeps its process count small.
    """
    sim, est = _start_pair(ns, mode, sim_args, est_args)
    try:
        with spinning_node(f"test_{ns.strip('/')}") as node:
            yield node, sim, est
    finally:
        for proc in (sim, est):
            print(stop_process(proc))


@pytest.fixture(scope="class")
def lockstep():
    with running_pair("/est", "lockstep") as (node, _, est):
        yield SimClient(node, "/est"), Collector(node, "/est"), est


class TestLockstep:
    """Episode protocol on one lockstep simulator/estimator pair."""

    def test_one_state_per_step_with_the_schedules_goals_and_nothing_after_the_end(self, lockstep):
        from mbrl_ros.nodes.task_params import default_task_values, task_from_params

        client, col, est = lockstep
        task = task_from_params(default_task_values())
        length, episode = 6, 5
        res, goals = col.start_episode(client, task, episode, length)
        key = positions(client.latest_state())
        first = _wait_state(col, episode, 0)
        assert _stamp_ns(first) == ns_from_time(res.first_observation_stamp)
        joint_stamps = {0: client.latest_stamp()}
        for k in range(1, length + 2):  # one step beyond the end
            client.step(key)
            joint_stamps[k] = client.latest_stamp()
            if k <= length:
                _wait_state(col, episode, k)
        wait_for(lambda: int(col.diag_value("after_episode") or 0) >= 1, 20,
                 "the estimator to see the joint state after the episode's end")
        states = _check_one_state_per_step(col.episode(episode), length)
        expected_layout = task.layout.to_msg_fields()
        for k, m in states.items():
            assert [(f.name, f.start, f.size) for f in m.layout] == expected_layout
            assert m.task == task.name and m.header.frame_id == "world" and not m.stale
            assert _stamp_ns(m) == joint_stamps[k]
            np.testing.assert_allclose(m.goal, goals[k], rtol=0, atol=1e-12)
            state = np.asarray(m.state)
            assert state.shape == (task.state_dim,) and np.all(np.isfinite(state))
            # the goal fields: the targets' world xy for this state's wrist (palm frame)
            fields = task.goal_field_values(torch.from_numpy(state), torch.from_numpy(goals[k]))
            np.testing.assert_allclose(state[task.goal_slice], fields.numpy(), rtol=0, atol=1e-12)
        joints = np.asarray(states[length].state)[task.layout.slice("joints")]
        np.testing.assert_allclose(joints, positions(client.latest_state()), atol=0.05)
        assert col.latencies and np.median(col.latencies) < 50.0, col.latencies[-10:]
        assert est.poll() is None


    def test_a_republished_joint_stamp_repeats_the_same_state(self, lockstep):
        from mbrl_ros.nodes.task_params import default_task_values, task_from_params

        client, col, _ = lockstep
        task = task_from_params(default_task_values())
        col.start_episode(client, task, 6, 10)
        client.step(positions(client.latest_state()))
        first = _wait_state(col, 6, 1)
        # no command: the lockstep simulator publishes the same stamp again after REPUBLISH_S
        repeats = wait_for(lambda: [m for m in col.episode(6) if m.step == 1][1:], 20,
                           "a re-published state")
        again = repeats[0]
        assert _stamp_ns(again) == _stamp_ns(first) and list(again.state) == list(first.state)
        assert list(again.goal) == list(first.goal) and again.stale == first.stale
        assert not [m for m in col.episode(6) if m.step > 1]


    def test_bad_joint_states_are_rejected_with_a_diagnostic_and_the_node_runs(self, lockstep):
        from sensor_msgs.msg import JointState

        from mbrl_ros.nodes.task_params import default_task_values, task_from_params
        from mbrl_ros.sim import HAND_JOINT_NAMES

        client, col, est = lockstep
        names = list(HAND_JOINT_NAMES)
        short = JointState(name=names, position=[0.0] * 10)
        nan = JointState(name=names, position=[0.0] * 23 + [float("nan")])
        col.joint_pub.publish(short)
        col.joint_pub.publish(nan)
        wait_for(lambda: col.diag_value("rejected_joint_states") == "2", 20,
                 "the two rejections in diagnostics")
        task = task_from_params(default_task_values())
        col.start_episode(client, task, 7, 3)
        client.step(positions(client.latest_state()))
        _wait_state(col, 7, 1)
        assert est.poll() is None


def test_tracker_dropouts_are_bridged_with_finite_velocities():
    from mbrl_ros.nodes.task_params import default_task_values, task_from_params

    task = task_from_params(default_task_values())
    with running_pair("/drop", "lockstep",
                      sim_args=["-p", "realism.tracker_dropout_rate:=0.5"]) as (node, _, _):
        client = SimClient(node, "/drop")
        col = Collector(node, "/drop")
        length = 20
        col.start_episode(client, task, 3, length)
        key = positions(client.latest_state())
        _wait_state(col, 3, 0)  # a dropped first reading is retried on the re-publish
        rng = np.random.default_rng(0)
        for k in range(1, length + 1):
            client.step(key + rng.uniform(-0.05, 0.05, 24))
            _wait_state(col, 3, k)
        states = _check_one_state_per_step(col.episode(3), length)
        stamps = {_stamp_ns(o) for o in client.objects}
        missing = [k for k, m in states.items() if _stamp_ns(m) not in stamps]
        assert missing, "the tracker never dropped a reading (rate 0.5)"
        lay = task.layout
        for k in missing:
            state = np.asarray(states[k].state)
            for field in ("ball1_pos", "ball1_vel", "ball2_pos", "ball2_vel"):
                assert np.all(np.isfinite(state[lay.slice(field)])), (k, field)
            assert np.all(np.abs(state[lay.slice("ball1_vel")]) < 5.0)
        wait_for(lambda: int(col.diag_value("dropouts") or 0) >= 1, 20,
                 "the dropouts to be counted in diagnostics")


def test_realtime_state_goes_stale_within_the_timeout_when_joint_states_stop():
    with running_pair("/rt_est", "realtime") as (node, sim, est):
        col = Collector(node, "/rt_est")
        wait_for(lambda: len(col.episode(0)) >= 5, 30, "states of the open-ended episode 0")
        fresh_steps = [m.step for m in col.episode(0) if not m.stale]
        assert fresh_steps == sorted(set(fresh_steps)), "steps repeated or out of order"
        # (a start-up hiccup of the simulator may legitimately produce a stale state here)
        marker = time.monotonic()
        wait_for(lambda: any(t > marker and not m.stale for t, m in list(col.states)), 10,
                 "a fresh state while the simulator runs")
        sim.send_signal(signal.SIGINT)  # running_pair collects its output
        stopped = time.monotonic()
        stale, msg = wait_for(lambda: next(((t, m) for t, m in list(col.states)
                                            if m.stale and t > stopped), None),
                              10, "a stale state after the stop")
        fresh, last = max(((t, m) for t, m in list(col.states) if not m.stale),
                          key=lambda e: e[0])
        timeout, period = 0.5, 0.1
        # The stale timer ticks at the control rate on ROS time: the estimator flags the
        # state within timeout + 1 period of the newest joint reading (the message's age
        # says when, on the estimator's own clock); receipt times get generous slack for a
        # loaded machine.
        print(f"stale after {stale - fresh:.3f} s (wall), age {msg.age:.3f} s")
        assert msg.step == last.step and list(msg.state) == list(last.state)
        assert timeout < msg.age < timeout + period + 0.5, msg.age
        assert stale - fresh < timeout + period + 2.0, (stale - fresh)
        wait_for(lambda: any(s.level == b"\x02" for s in list(col.diagnostics)[-3:]), 10,
                 "an ERROR diagnostic")
        assert est.poll() is None


def test_old_object_readings_flag_the_state_stale_and_late_ones_are_dropped():
    """The test plays robot and tracker for an estimator alone, with chosen stamps."""
    from geometry_msgs.msg import Pose
    from sensor_msgs.msg import JointState

    from mbrl_ros.msg import GoalSchedule, ObjectStates
    from mbrl_ros.nodes.conversions import time_from_ns
    from mbrl_ros.sim import HAND_JOINT_NAMES

    est = start_process([
        str(executable("mbrl_ros", "state_estimator")), "--ros-args", "-r", "__ns:=/fake",
        "-p", "object_wait_s:=0.2", "-p", "max_measurement_age_s:=0.3"])
    try:
        with spinning_node("fake_robot") as node:
            col = Collector(node, "/fake", schedule_subscribers=1)
            objects_pub = node.create_publisher(ObjectStates, "/fake/object_states", 10)
            wait_for(lambda: objects_pub.get_subscription_count() >= 1
                     and col.joint_pub.get_subscription_count() >= 1, 20, "subscriptions")
            t0 = node.get_clock().now().nanoseconds  # stamps run ahead of the wall clock
            period = 100_000_000

            def objects(k: int, dx: float = 0.0) -> None:
                msg = ObjectStates(names=["ball1", "ball2"])
                msg.header.stamp = time_from_ns(t0 + k * period)
                for x in (-0.03 + dx, 0.04 + dx):
                    p = Pose()
                    p.position.x, p.position.z, p.orientation.w = x, 0.156, 1.0
                    msg.poses.append(p)
                objects_pub.publish(msg)

            def joints(k: int) -> None:
                msg = JointState(name=list(HAND_JOINT_NAMES), position=[0.1] * 24)
                msg.header.stamp = time_from_ns(t0 + k * period)
                col.joint_pub.publish(msg)

            schedule = GoalSchedule(task="baoding", episode_id=4, episode_length=12,
                                    goal_dim=6, goals=[0.0] * 6)
            schedule.header.stamp = time_from_ns(t0)
            col.schedule_pub.publish(schedule)
            objects(0)
            joints(0)
            first = _wait_state(col, 4, 0)
            assert not first.stale and first.age == 0.0
            joints(1)  # its objects come just after the joints: waited for, then fused
            objects(1, dx=0.01)
            s1 = _wait_state(col, 4, 1)
            assert s1.age == 0.0 and s1.state[24] == pytest.approx(-0.02, abs=1e-6)
            for k in range(2, 9):  # the tracker goes silent: predicted, stale after 0.5 s
                joints(k)
                s = _wait_state(col, 4, k)
                assert s.age == pytest.approx((k - 1) * 0.1, abs=1e-9)
                assert s.stale == (s.age > 0.5), (k, s.age, s.stale)
                # predicted on at the velocity estimated at step 1
                assert s.state[24] == pytest.approx(s1.state[24] + s1.state[27] * (k - 1) * 0.1)
                assert s.state[27] == pytest.approx(s1.state[27]) and s1.state[27] > 0.05
            objects(9)
            joints(9)
            assert not _wait_state(col, 4, 9).stale
            objects(8)  # older than the newest fused reading: out of order
            wait_for(lambda: col.diag_value("rejected_out_of_order_object") == "1", 10,
                     "the out-of-order reading in diagnostics")
            objects(5)  # older than max_measurement_age_s before the newest joints: late
            wait_for(lambda: col.diag_value("rejected_late_object") == "1", 10,
                     "the late reading in diagnostics")
            # Step 10's reading comes after its state was bridged; it must not pass for step
            # 11's, which comes after step 11's joints and is waited for.
            joints(10)
            _wait_state(col, 4, 10)
            objects(10, dx=0.02)
            joints(11)
            objects(11, dx=0.03)
            s11 = _wait_state(col, 4, 11)
            assert s11.age == 0.0 and s11.state[24] == pytest.approx(0.0, abs=1e-4)
            assert est.poll() is None
    finally:
        print(stop_process(est))
