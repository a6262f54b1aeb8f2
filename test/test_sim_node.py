"""``shadow_hand_sim`` as a real process, driven over topics and services."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.ros import spinning_node, start_process, stop_process
from helpers.sim_client import SimClient, positions
from helpers.waiting import wait_for

from mbrl_ros.launch.packages import executable

pytestmark = pytest.mark.ros
NS = "/hand"


def _start_sim(mode: str, *extra: str, ns: str = NS):
    return start_process([
        str(executable("mbrl_ros", "shadow_hand_sim")), "--ros-args", "-r", f"__ns:={ns}",
        "-p", f"mode:={mode}", "-p", "marker_rate_hz:=5.0", *extra])


@pytest.fixture(scope="module")
def lockstep():
    proc = _start_sim("lockstep")
    try:
        with spinning_node("sim_test") as node:
            yield SimClient(node, NS), proc
    finally:
        out = stop_process(proc)
        print(out)


def _keyframe_command(client: SimClient) -> np.ndarray:
    client.reset(seed=0)
    return positions(client.latest_state())


def test_joint_states_and_markers_carry_frame_and_names(lockstep):
    from mbrl_ros.sim import HAND_JOINT_NAMES

    client, _ = lockstep
    client.reset(seed=0)
    state = client.latest_state()
    assert list(state.name) == list(HAND_JOINT_NAMES)
    assert state.header.frame_id == "world" and len(state.velocity) == 24
    wait_for(lambda: client.markers, 10, "scene markers")
    markers = client.markers[-1].markers
    assert {m.header.frame_id for m in markers} == {"world"}
    assert {"hand", "object", "target"} <= {m.ns for m in markers}
    objects = client.latest_objects()
    assert list(objects.names) == ["ball1", "ball2"] and objects.header.frame_id == "world"


def test_a_command_moves_the_joints_toward_it_and_reset_restores_keyframe(lockstep):
    client, _ = lockstep
    key = _keyframe_command(client)
    target = key.copy()
    target[3] += 0.4  # FFJ2 (index finger flexion), inside its range [0, 1.6]
    for _ in range(5):
        state = client.step(target)
    moved = positions(state)
    assert abs(moved[3] - target[3]) < 0.5 * 0.4, "joint did not move most of the way"
    client.reset(seed=0)
    np.testing.assert_allclose(positions(client.latest_state()), key, atol=1e-12)


def test_lockstep_same_seed_same_commands_identical_states(lockstep):
    client, _ = lockstep
    rng = np.random.default_rng(1)
    key = _keyframe_command(client)
    commands = [key + rng.uniform(-0.2, 0.2, 24) for _ in range(6)]

    def run():
        client.reset(seed=7)
        states = [positions(client.step(q)) for q in commands]
        return np.array(states), np.array([p.position.z for p in client.latest_objects().poses])

    first, second = run(), run()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_balls_stay_in_the_palm_for_a_second_at_zero_action(lockstep):
    client, _ = lockstep
    key = _keyframe_command(client)  # zero normalized action = the keyframe pose
    for _ in range(10):
        client.step(key)
    heights = [p.position.z for p in client.latest_objects().poses]
    assert min(heights) > 0.06, f"a ball dropped: z = {heights}"


def test_bad_commands_are_rejected_counted_and_the_node_keeps_running(lockstep):
    client, proc = lockstep
    key = _keyframe_command(client)
    stamp = client.latest_stamp()
    bad = [key[:10], np.full(24, np.nan), np.where(np.arange(24) == 3, np.inf, key)]
    for q in bad:
        client.send(q)
    wait_for(lambda: client.diagnostic_value("rejected_command") == str(len(bad)), 10,
             "the rejections to be counted in diagnostics")
    assert client.latest_stamp() == stamp, "a rejected command advanced the simulation"
    client.step(key)  # still alive and stepping
    assert proc.poll() is None


def test_out_of_limit_commands_rejected_when_configured():
    proc = _start_sim("lockstep", "-p", "out_of_limit:=reject", ns="/strict")
    try:
        with spinning_node("strict_test") as node:
            client = SimClient(node, "/strict")
            key = _keyframe_command(client)
            stamp = client.latest_stamp()
            client.send(key + 10.0)
            wait_for(lambda: client.diagnostic_value("rejected_command") == "1", 10,
                     "the out-of-limit rejection")
            assert client.latest_stamp() == stamp
    finally:
        out = stop_process(proc)
    assert "outside the joint limits" in out


def test_realtime_mode_steps_on_the_wall_clock():
    proc = _start_sim("realtime", ns="/rt")
    try:
        with spinning_node("rt_test") as node:
            client = SimClient(node, "/rt")
            wait_for(lambda: len(client.joint_states) >= 12, 20, "a second of joint states")
            stamps = [s.header.stamp.sec + s.header.stamp.nanosec * 1e-9
                      for s in client.joint_states[-10:]]
            period = np.median(np.diff(stamps))
            assert 0.08 < period < 0.12, f"control period {period:.3f} s, expected 0.1 s"
    finally:
        stop_process(proc)


def test_bad_start_parameter_is_rejected_and_the_node_runs():
    proc = _start_sim("lockstep", "-p", "frame_skip:=-5", "-p", "mode:=warp", ns="/badparam")
    try:
        with spinning_node("badparam_test") as node:
            client = SimClient(node, "/badparam")
            client.reset(seed=0)
    finally:
        out = stop_process(proc)
    assert "frame_skip" in out and "mode" in out and "using default" in out
