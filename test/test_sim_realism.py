"""Optional encoder/tracker noise, latency, dropout and action delay: off by default, seeded."""

from __future__ import annotations

import numpy as np
import pytest

import mbrl_ros.sim as sim


@pytest.fixture(scope="module")
def baoding() -> sim.BaodingScene:
    return sim.build_scene("baoding")


def _hand(scene, **realism) -> sim.HandSim:
    config = sim.SimConfig(realism=sim.RealismConfig(**realism), command_velocity_limit=None)
    return sim.HandSim(scene, config)


def test_everything_exact_by_default(baoding):
    hand = sim.HandSim(baoding, sim.SimConfig(command_velocity_limit=None))
    assert not hand.config.realism.enabled
    for _ in range(3):
        obs = hand.step(np.full(24, 0.2)).observation
    d = hand.data
    np.testing.assert_array_equal(obs.joint_pos, d.qpos[:24])
    np.testing.assert_array_equal(obs.joint_vel, d.qvel[:24])
    np.testing.assert_array_equal(obs.objects.pos, d.qpos[[24, 25, 26, 31, 32, 33]].reshape(2, 3))
    np.testing.assert_allclose(obs.objects.linvel, d.qvel[[24, 25, 26, 30, 31, 32]].reshape(2, 3),
                               atol=1e-12)
    assert obs.objects_step == obs.step == 3
    np.testing.assert_array_equal(hand.data.ctrl, hand.command)
    task = baoding.obs_layout.split(obs.task_obs)
    np.testing.assert_array_equal(task["ball2_pos"], obs.objects.pos[1])


def test_encoder_noise_has_the_configured_spread(baoding):
    hand = _hand(baoding, joint_pos_noise_std=0.01, joint_vel_noise_std=0.1)
    truth_q, truth_v = hand.data.qpos[:24].copy(), hand.data.qvel[:24].copy()
    readings = [hand.observe() for _ in range(60)]
    dq = np.array([r.joint_pos for r in readings]) - truth_q
    dv = np.array([r.joint_vel for r in readings]) - truth_v
    assert dq.std() == pytest.approx(0.01, rel=0.1)
    assert dv.std() == pytest.approx(0.1, rel=0.1)
    assert abs(dq.mean()) < 3 * 0.01 / np.sqrt(dq.size)
    # objects are untouched by encoder noise
    np.testing.assert_array_equal(readings[0].objects.pos[0], hand.data.qpos[24:27])


def test_tracker_noise_has_the_configured_spread(baoding):
    hand = _hand(baoding, object_pos_noise_std=0.004, object_rot_noise_std=0.05)
    truth = hand.data.qpos[[24, 25, 26, 31, 32, 33]].reshape(2, 3)
    readings = [hand.observe() for _ in range(100)]
    dp = np.array([r.objects.pos for r in readings]) - truth
    assert dp.std() == pytest.approx(0.004, rel=0.12)
    # a random rotation with 0.05 rad per axis: mean angle 0.05 * sqrt(8 / pi)
    angles = [2 * np.arccos(min(1.0, abs(r.objects.quat[0, 0]))) for r in readings]
    assert np.mean(angles) == pytest.approx(0.05 * np.sqrt(8 / np.pi), rel=0.15)
    np.testing.assert_allclose(np.linalg.norm(readings[0].objects.quat, axis=1), 1.0)
    # task observation is built from the same noisy reading
    task = baoding.obs_layout.split(readings[-1].task_obs)
    np.testing.assert_array_equal(task["ball1_pos"], readings[-1].objects.pos[0])
    np.testing.assert_array_equal(readings[0].joint_pos, hand.data.qpos[:24])


def test_cube_hinge_noise_reaches_the_euler_fields():
    cube = sim.build_scene("cube")
    hand = _hand(cube, object_rot_noise_std=0.02)
    readings = np.array([hand.observe().task_obs for _ in range(80)])
    euler = readings[:, cube.obs_layout["cube_euler"]]
    assert euler.std() == pytest.approx(0.02, rel=0.15)


def test_tracker_latency_reports_old_states(baoding):
    hand = _hand(baoding, tracker_latency_steps=2)
    truth, seen = [], []
    truth.append(hand.data.qpos[24:27].copy())
    for _ in range(5):
        obs = hand.step(np.full(24, -0.3)).observation
        truth.append(hand.data.qpos[24:27].copy())
        seen.append((obs.step, obs.objects_step, obs.objects.pos[0].copy()))
    for step, objects_step, pos in seen:
        assert objects_step == max(0, step - 2)
        np.testing.assert_array_equal(pos, truth[objects_step])
    np.testing.assert_array_equal(obs.joint_pos, hand.data.qpos[:24])  # joints are current


def test_tracker_dropout_reports_none(baoding):
    hand = _hand(baoding, tracker_dropout_rate=0.4)
    readings = [hand.observe() for _ in range(200)]
    missing = [r for r in readings if not r.objects_valid]
    assert 0.3 < len(missing) / len(readings) < 0.5
    assert all(r.objects is None and r.task_obs is None for r in missing)
    assert all(r.joint_pos.shape == (24,) for r in missing)


def test_action_delay_applies_old_commands(baoding):
    hand = _hand(baoding, action_delay_steps=2)
    hold = hand.command
    commands = [hand.action_map.to_joint_targets(np.full(24, v)) for v in (0.1, 0.2, 0.3)]
    applied = []
    for q in commands:
        hand.set_joint_targets(q)
        hand.step()
        applied.append(hand.data.ctrl.copy())
    np.testing.assert_array_equal(applied[0], hold)
    np.testing.assert_array_equal(applied[1], hold)
    np.testing.assert_array_equal(applied[2], commands[0])


def test_noise_is_reproducible_from_the_seed(baoding):
    runs = []
    for _ in range(2):
        hand = _hand(baoding, joint_pos_noise_std=0.01, tracker_dropout_rate=0.3,
                     object_pos_noise_std=0.001)
        hand.reset(seed=5)
        runs.append([hand.observe() for _ in range(10)])
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a.joint_pos, b.joint_pos)
        assert a.objects_valid == b.objects_valid
        if a.objects_valid:
            assert np.array_equal(a.objects.pos, b.objects.pos)


def test_config_validation():
    with pytest.raises(ValueError, match="tracker_dropout_rate"):
        sim.RealismConfig(tracker_dropout_rate=1.0)
    with pytest.raises(ValueError, match="joint_pos_noise_std"):
        sim.RealismConfig(joint_pos_noise_std=-0.1)
    with pytest.raises(ValueError, match="integer"):
        sim.RealismConfig(action_delay_steps=1.5)
    with pytest.raises(ValueError, match="unknown realism settings"):
        sim.RealismConfig.from_dict({"joint_noise": 0.1})
    cfg = sim.RealismConfig.from_dict({"tracker_latency_steps": 2.0, "joint_pos_noise_std": 0.1})
    assert cfg.tracker_latency_steps == 2 and cfg.enabled
