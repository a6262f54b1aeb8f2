"""Scenes built from gymnasium-robotics' Adroit hand carry PDDM's settings and layouts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

import mbrl_ros.sim as sim
from mbrl_ros.core.tasks.layouts import StateLayout
from mbrl_ros.sim.adroit import HAND_JOINT_NAMES, PDDM_CTRL_RANGE, adroit_asset_dir
from mbrl_ros.sim.scene_baoding import PDDM_BAODING_KEY
from mbrl_ros.sim.scene_cube import PDDM_CUBE_KEY


@pytest.fixture(scope="module")
def baoding() -> sim.BaodingScene:
    return sim.build_scene("baoding")


@pytest.fixture(scope="module")
def cube() -> sim.CubeScene:
    return sim.build_scene("cube")


def test_sim_package_needs_neither_ros_nor_torch():
    code = ("import sys, mbrl_ros.sim; "
            "print(sorted(m for m in ('torch', 'rclpy', 'gymnasium_robotics') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "[]"


def test_hand_comes_from_the_installed_package_not_the_repo():
    assert (adroit_asset_dir() / "adroit_pen.xml").is_file()
    assert "gymnasium_robotics" in str(adroit_asset_dir())


def test_baoding_scene_has_pddm_physics(baoding):
    m = baoding.model
    assert m.opt.timestep == 0.0025
    assert m.opt.noslip_iterations == 0
    assert baoding.joint_names == HAND_JOINT_NAMES
    for i, joint in enumerate(HAND_JOINT_NAMES):
        assert m.joint(int(m.actuator_trnid[i, 0])).name == joint
    np.testing.assert_allclose(m.actuator_gainprm[:2, 0], [5.0, 5.0])
    np.testing.assert_allclose(m.actuator_biasprm[:2, 1], [-5.0, -5.0])
    np.testing.assert_allclose(m.actuator_gainprm[2:, 0], 1.0)
    np.testing.assert_allclose(m.actuator_ctrlrange, PDDM_CTRL_RANGE)
    np.testing.assert_allclose(m.key_qpos[baoding.key_id], PDDM_BAODING_KEY)
    # wrist where PDDM's is: hand mount (0, -0.4, 0.2) + forearm 0.01 + 0.256 along +y
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    np.testing.assert_allclose(d.body("wrist").xpos, [0.0, -0.144, 0.19], atol=2e-3)


def test_baoding_balls_and_targets(baoding):
    m = baoding.model
    for name in ("ball1", "ball2"):
        g = m.geom(name)
        assert g.type[0] == mujoco.mjtGeom.mjGEOM_SPHERE
        assert g.size[0] == pytest.approx(0.028)
        assert g.condim[0] == 4
        assert m.body(name).mass[0] == pytest.approx(0.043)
    for name in ("target1", "target2"):
        g = m.geom(name)
        assert g.contype[0] == 0 and g.conaffinity[0] == 0
        assert m.body(name).mocapid[0] >= 0
    assert baoding.obs_layout.dim == 40
    assert baoding.obs_layout.names == (
        "joints", "ball1_pos", "ball1_vel", "ball2_pos", "ball2_vel", "target1_xy",
        "target2_xy",
    )
    assert baoding.obs_layout["target1_xy"] == slice(36, 38)


def test_scene_layouts_are_the_core_tasks_state_layouts(baoding, cube):
    """One layout per task: the simulator's observation is the core task's state (the very
    same object, defined once in the torch-free ``core.tasks.layouts``)."""
    from mbrl_ros.core.tasks import make_task

    for scene in (baoding, cube):
        assert scene.obs_layout is make_task(scene.name).layout, scene.name


def test_cube_scene_builds_steps_and_observes_39(cube):
    m = cube.model
    assert m.nq == 30 and m.nu == 24
    assert m.body("cube").mass[0] == pytest.approx(0.05)
    assert m.geom("target").contype[0] == 0 and m.geom("target").conaffinity[0] == 0
    assert cube.action_scale == 1.0
    np.testing.assert_allclose(m.key_qpos[cube.key_id], PDDM_CUBE_KEY)
    hand = sim.HandSim(cube)
    obs = hand.reset()
    assert obs.task_obs.shape == (39,)
    for _ in range(5):
        result = hand.step(np.zeros(24))
    assert result.ok
    task = cube.obs_layout.split(result.observation.task_obs)
    assert task["cube_pos"][2] > -0.05  # still held (PDDM counts a drop below -0.1)
    np.testing.assert_array_equal(task["desired_euler"], np.zeros(3))
    np.testing.assert_array_equal(task["joints"], result.observation.joint_pos)
    shapes = {(p.role, p.shape) for p in hand.geometry()}
    assert ("object", "box") in shapes and ("target", "box") in shapes
    assert hand.describe()["obs_size"] == 39


def test_cube_target_orientation_matches_cube_hinges(cube):
    goal = np.array([0.3, -1.2, 1.5])
    d = mujoco.MjData(cube.model)
    d.qpos[27:30] = goal  # OBJRx, OBJRy, OBJRz
    cube.place_targets(d, goal, "world")
    mujoco.mj_forward(cube.model, d)
    q_cube, q_target = d.body("cube").xquat, d.body("target").xquat
    assert abs(np.dot(q_cube, q_target)) == pytest.approx(1.0, abs=1e-12)


def test_registry_adds_a_scene_without_touching_the_simulator(baoding):
    name = "baoding_copy_for_test"
    sim.register_scene(name, lambda: baoding)
    try:
        assert sim.HandSim(name).scene is baoding
        with pytest.raises(ValueError, match="already registered"):
            sim.register_scene(name, lambda: baoding)
    finally:
        sim.SCENES.pop(name)
    with pytest.raises(ValueError, match="unknown scene"):
        sim.build_scene("no_such_scene")


def test_layout_split_compose_round_trip(baoding):
    layout = baoding.obs_layout
    batch = np.arange(2 * 40, dtype=float).reshape(2, 40)
    parts = layout.split(batch)
    assert parts["ball2_vel"].shape == (2, 3)
    np.testing.assert_array_equal(layout.compose(parts), batch)
    with pytest.raises(ValueError, match="last dimension 40"):
        layout.split(np.zeros(39))
    with pytest.raises(ValueError, match="missing"):
        layout.compose({"joints": np.zeros(24)})
    with pytest.raises(ValueError, match="must be unique"):
        StateLayout((("a", 1), ("a", 2)))


def test_describe_is_plain_data(baoding):
    info = baoding.describe()
    assert info["obs_size"] == 40 and info["goal_shape"] == [2, 3]
    assert info["goal_frames"] == ["palm", "world"]
    assert len(info["joint_names"]) == 24 and len(info["ctrl_range"]) == 24
