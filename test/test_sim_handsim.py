"""HandSim on the real MuJoCo Baoding scene: commands, resets, determinism, guard, geometry."""

from __future__ import annotations

import numpy as np
import pytest

import mbrl_ros.sim as sim
from mbrl_ros.sim.guard import route_mujoco_warnings


@pytest.fixture(scope="module")
def scene() -> sim.BaodingScene:
    return sim.build_scene("baoding")


@pytest.fixture()
def hand(scene) -> sim.HandSim:
    return sim.HandSim(scene)


def test_control_step_is_frame_skip_physics_steps(scene):
    assert sim.HandSim(scene).control_dt == pytest.approx(0.1)
    fast = sim.HandSim(scene, sim.SimConfig(frame_skip=4))
    fast.step()
    assert fast.time == pytest.approx(0.01)
    with pytest.raises(ValueError, match="frame_skip"):
        sim.SimConfig(frame_skip=0)


def test_command_moves_joints_toward_it(hand):
    start = hand.data.qpos[:24].copy()
    action = np.full(24, 0.5)
    target = hand.action_map.to_joint_targets(action)
    for _ in range(10):
        result = hand.step(action)
    q = result.observation.joint_pos
    assert np.linalg.norm(q - target) < 0.5 * np.linalg.norm(start - target)
    for joint in ("WRJ1", "FFJ3", "RFJ3", "THJ4", "THJ0"):  # unloaded, uncoupled joints
        i = hand.joint_names.index(joint)
        assert abs(q[i] - target[i]) < 0.01, joint
    np.testing.assert_allclose(hand.command, target)


def test_applied_target_is_rate_limited_like_pddm(scene):
    hand = sim.HandSim(scene)
    q0 = hand.data.qpos[:24].copy()
    target = hand.action_map.to_joint_targets(np.ones(24))
    hand.step(np.ones(24))
    reach = 3.0 * 0.1  # PDDM's +-3 rad/s velocity bound over one control step
    np.testing.assert_allclose(hand.data.ctrl, np.clip(target, q0 - reach, q0 + reach))
    assert np.any(np.abs(target - q0) > reach)  # the limit was active somewhere
    free = sim.HandSim(scene, sim.SimConfig(command_velocity_limit=None))
    free.step(np.ones(24))
    np.testing.assert_allclose(free.data.ctrl, target)


def test_reset_restores_the_keyframe(hand, scene):
    for _ in range(3):
        hand.step(np.ones(24))
    obs = hand.reset()
    np.testing.assert_array_equal(hand.data.qpos, scene.keyframe_qpos)
    np.testing.assert_array_equal(hand.data.qvel, 0.0)
    assert obs.step == 0 and obs.time == 0.0
    np.testing.assert_array_equal(obs.joint_pos, scene.keyframe_qpos[:24])
    np.testing.assert_array_equal(obs.objects.pos[0], scene.keyframe_qpos[24:27])


def test_same_seed_and_commands_give_identical_states(scene):
    actions = np.random.default_rng(7).uniform(-1, 1, (8, 24))
    config = sim.SimConfig(reset_joint_noise_std=0.02, reset_object_noise_std=0.002,
                           realism=sim.RealismConfig(joint_pos_noise_std=0.01))
    runs = []
    for _ in range(2):
        hand = sim.HandSim(scene, config)
        obs = [hand.reset(seed=11).joint_pos]
        obs += [hand.step(a).observation.joint_pos for a in actions]
        runs.append((hand.data.qpos.copy(), hand.data.qvel.copy(), np.array(obs)))
    for a, b in zip(runs[0], runs[1], strict=True):
        assert np.array_equal(a, b)
    other = sim.HandSim(scene, config)
    other.reset(seed=12)
    assert not np.array_equal(other.data.qpos, sim.HandSim(scene, config).data.qpos)


def test_balls_stay_in_the_palm_at_zero_action(hand):
    for _ in range(10):
        result = hand.step(np.zeros(24))
        assert result.ok
    balls = result.observation.objects.pos
    assert np.all(balls[:, 2] > 0.14), balls  # resting in the hand, not on the floor (0.028)
    palm = hand.data.body("palm").xpos
    assert np.all(np.linalg.norm(balls[:, :2] - palm[:2], axis=1) < 0.16)


@pytest.fixture()
def warnings_captured(monkeypatch, tmp_path):
    """Collect MuJoCo's warning texts (and keep MUJOCO_LOG.TXT out of the repository)."""
    monkeypatch.chdir(tmp_path)
    messages: list[str] = []
    route_mujoco_warnings(messages.append)
    yield messages
    route_mujoco_warnings(None)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_physics_guard_trips_on_nan_and_resets(hand, scene, warnings_captured):
    hand.step(np.ones(24))
    hand.data.qvel[3] = np.nan
    result = hand.step()
    assert not result.ok and result.reset
    assert "BADQVEL" in result.fault
    assert hand.fault_count == 1
    np.testing.assert_array_equal(hand.data.qpos, scene.keyframe_qpos)
    assert result.observation.step == 0
    assert np.all(np.isfinite(result.observation.task_obs))
    assert hand.step().ok  # the new episode runs normally
    assert any("QVEL" in m for m in warnings_captured)


def test_guard_reports_without_reset_when_asked(scene, warnings_captured):
    hand = sim.HandSim(scene, sim.SimConfig(reset_on_fault=False))
    hand.data.qpos[30] = np.inf
    result = hand.step()
    assert not result.ok and not result.reset
    assert "BADQPOS" in result.fault


def test_joint_limits_clamp_or_reject(hand):
    hi = hand.joint_limits[:, 1]
    q = hi + 0.3
    applied = hand.set_joint_targets(q)
    np.testing.assert_array_equal(applied, hi)
    assert hand.joints_out_of_limits(q) == list(hand.joint_names)
    with pytest.raises(ValueError, match="outside limits"):
        hand.set_joint_targets(q, strict=True)
    with pytest.raises(ValueError, match="shape"):
        hand.set_joint_targets(np.zeros(23))
    with pytest.raises(ValueError, match="non-finite"):
        hand.set_joint_targets(np.full(24, np.nan))
    with pytest.raises(ValueError, match="shape"):
        hand.step(np.zeros(5))


def test_goal_moves_targets_and_enters_task_obs(hand, scene):
    goal = np.array([[0.01, 0.02, 0.2], [-0.03, 0.04, 0.2]])
    hand.set_goal(goal, "world")
    obs = hand.step().observation
    task = scene.obs_layout.split(obs.task_obs)
    np.testing.assert_array_equal(task["target1_xy"], goal[0, :2])
    np.testing.assert_array_equal(task["target2_xy"], goal[1, :2])
    np.testing.assert_allclose(obs.target_pos, goal)
    with pytest.raises(ValueError, match="goal must have shape"):
        hand.set_goal(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        hand.set_goal(np.full((2, 3), np.nan))
    hand.reset()
    assert hand.goal_frame == "palm"
    np.testing.assert_allclose(hand.goal, sim.scene_baoding.PDDM_START_TARGETS_PALM)


def test_get_set_state_continues_exactly(hand):
    rng = np.random.default_rng(1)
    for _ in range(3):
        hand.step(rng.uniform(-1, 1, 24))
    snapshot = hand.get_state()
    tail = rng.uniform(-1, 1, (3, 24))
    for a in tail:
        hand.step(a)
    end = hand.data.qpos.copy()
    hand.set_state(snapshot)
    assert hand.step_index == snapshot.step
    for a in tail:
        hand.step(a)
    assert np.array_equal(hand.data.qpos, end)


def test_reset_from_given_state(hand, scene):
    qpos = scene.keyframe_qpos
    qpos[26] += 0.01  # ball 1 a little higher
    obs = hand.reset(initial_state=sim.SimState(qpos=qpos, qvel=np.zeros(scene.model.nv)))
    assert obs.objects.pos[0, 2] == pytest.approx(qpos[26])
    with pytest.raises(ValueError, match="qpos must have shape"):
        hand.reset(initial_state=sim.SimState(qpos=qpos[:-1], qvel=np.zeros(scene.model.nv)))


def test_geometry_export_lists_hand_objects_and_targets(hand):
    prims = hand.geometry()
    roles = {p.role for p in prims}
    assert roles == {"hand", "object", "target"}
    assert {p.shape for p in prims} <= {"sphere", "box", "cylinder"}
    ball = next(p for p in prims if p.name == "ball1")
    assert ball.size == pytest.approx((0.056, 0.056, 0.056))
    np.testing.assert_allclose(ball.pos, hand.data.qpos[24:27])
    target = next(p for p in prims if p.name == "target2")
    np.testing.assert_allclose(target.pos, hand.data.mocap_pos[hand.scene.target_mocap_ids[1]])
    palm = next(p for p in prims if p.name == "C_palm0")
    assert palm.shape == "box" and palm.size == pytest.approx((0.064, 0.0222, 0.098))
    # exporting geometry must not perturb the simulation
    a = np.full(24, 0.3)
    twin = sim.HandSim(hand.scene)
    hand.reset()
    for _ in range(3):
        hand.geometry()
        hand.step(a)
        twin.step(a)
    assert np.array_equal(hand.data.qpos, twin.data.qpos)
