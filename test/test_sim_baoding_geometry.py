"""PDDM's palm-attached Baoding targets: the simulator (MuJoCo's kinematics) and the core
task (batched torch forward kinematics from the wrist angles) put them in the same place."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch
import yaml

import mbrl_ros.sim as sim
from mbrl_ros.core.tasks.from_values import stack_task
from mbrl_ros.core.tasks.palm_kinematics import ADROIT_WRIST_CHAIN

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture(scope="module")
def hand() -> sim.HandSim:
    return sim.HandSim("baoding")


def _random_wrist_states(hand: sim.HandSim, count: int, seed: int) -> np.ndarray:
    """Keyframe qpos with the two wrist joints drawn over their whole range."""
    rng = np.random.default_rng(seed)
    lo, hi = hand.model.jnt_range[:2].T
    qpos = np.tile(hand.scene.keyframe_qpos, (count, 1))
    qpos[:, :2] = rng.uniform(lo, hi, size=(count, 2))
    return qpos


def test_sim_and_planner_targets_agree_over_random_wrist_poses(hand):
    task = stack_task("baoding")
    goals = task.episode_goals(0, 60).double()
    qpos = _random_wrist_states(hand, 60, seed=3)
    sim_xy, states = [], []
    for k in range(60):
        state = hand.get_state()
        hand.set_state(sim.SimState(qpos=qpos[k], qvel=np.zeros(hand.model.nv)))
        hand.set_goal(goals[k].numpy().reshape(2, 3), "palm")
        obs = hand.observe()
        states.append(obs.task_obs)
        sim_xy.append(obs.task_obs[-4:])
        hand.set_state(state)
    # the planner's way: one batched call over all states, no MuJoCo
    planner_xy = task.goal_field_values(torch.tensor(np.array(states)), goals).numpy()
    error = np.linalg.norm((np.array(sim_xy) - planner_xy).reshape(-1, 2, 2), axis=-1)
    assert error.max() < 1e-3
    assert error.max() < 1e-9  # the same chain: exact up to rounding


def test_targets_move_with_the_wrist(hand):
    task = stack_task("baoding")
    goal = task.episode_goals(0, 1)[0].double()
    state = torch.tensor(hand.reset(seed=0).task_obs)
    tilted = state.clone()
    tilted[1] += 0.3  # WRJ0: fingers up
    moved = task.goal_field_values(tilted, goal) - task.goal_field_values(state, goal)
    assert float(moved.abs().max()) > 0.01
    # and the sim's markers follow: mocap bodies at the world points
    world = ADROIT_WRIST_CHAIN.palm_points_to_world(state[:24], goal.reshape(2, 3))
    obs = hand.observe()
    np.testing.assert_allclose(obs.target_pos, world.numpy(), atol=1e-7)


def test_pddm_targets_lie_over_the_palm_at_the_keyframe(hand):
    """PDDM's facts: centre about (0.0064, -0.0323), y from -0.066 to 0.001."""
    task = stack_task("baoding")
    state = torch.tensor(hand.scene.keyframe_qpos[:24]).expand(60, 24)
    full = torch.zeros(60, task.state_dim, dtype=torch.float64)
    full[:, :24] = state
    xy = task.target_world_xy(full, task.episode_goals(0, 60).double())[:, 0]  # target 1
    centre = xy.mean(dim=0).numpy()
    np.testing.assert_allclose(centre, (0.0064, -0.0323), atol=5e-4)
    assert abs(float(xy[:, 1].min()) - (-0.066)) < 1e-3
    assert abs(float(xy[:, 1].max()) - 0.001) < 1e-3


def test_world_target_option_sits_where_pddm_targets_are_at_the_keyframe(hand):
    values = yaml.safe_load((CONFIG / "baoding_world_targets.yaml").read_text())
    world_values = {f"baoding.{k}": v
                    for k, v in values["/**"]["ros__parameters"]["baoding"].items()}
    world = stack_task("baoding", values=world_values)
    palm = stack_task("baoding")
    assert world.goal_frame == "world" and palm.goal_frame == "palm"
    full = torch.zeros(60, palm.state_dim, dtype=torch.float64)
    full[:, :24] = torch.tensor(hand.scene.keyframe_qpos[:24])
    steps = torch.arange(60)
    palm_xy = palm.target_world_xy(full, palm.target_positions(steps).double())
    world_xy = world.target_world_xy(full, world.target_positions(steps).double())
    assert float((palm_xy - world_xy).norm(dim=-1).max()) < 1.5e-3


def test_world_frame_goals_in_the_sim(hand):
    hand.reset(seed=0)
    goal = np.array([[0.01, 0.02, 0.2], [-0.01, -0.02, 0.2]])
    hand.set_goal(goal, "world")
    obs = hand.observe()
    np.testing.assert_allclose(obs.task_obs[-4:], goal[:, :2].ravel())
    with pytest.raises(ValueError, match="frames"):
        hand.set_goal(goal, "forearm")
    # a reset returns to the default (palm) frame
    hand.reset(seed=0)
    assert hand.goal_frame == "palm"


def test_mujoco_chain_constants():
    """The torch chain's constants are the compiled scene's (mount, offsets, axes)."""
    scene = sim.build_scene("baoding")
    m = scene.model
    d = mujoco.MjData(m)
    for q in ((0.0, 0.0), (0.1, -0.5), (-0.5, 0.6)):
        mujoco.mj_resetDataKeyframe(m, d, scene.key_id)
        d.qpos[:2] = q
        mujoco.mj_kinematics(m, d)
        pos, rot = ADROIT_WRIST_CHAIN.palm_pose(torch.tensor(q, dtype=torch.float64))
        np.testing.assert_allclose(pos.numpy(), d.body("palm").xpos, atol=1e-9)
        np.testing.assert_allclose(rot.numpy(), d.body("palm").xmat.reshape(3, 3), atol=1e-9)


def test_sim_default_targets_are_the_schedules_first():
    from mbrl_ros.sim.scene_baoding import PDDM_START_TARGETS_PALM

    first = stack_task("baoding").episode_goals(0, 1)[0].double().numpy()
    np.testing.assert_allclose(PDDM_START_TARGETS_PALM.ravel(), first, atol=1e-7)
