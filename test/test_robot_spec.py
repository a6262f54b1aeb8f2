"""The robot as configuration (core/robot/spec.py): the built-in Adroit hand file says what
the simulated scene is, and a robot description is checked when it is loaded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from mbrl_ros.core.robot.spec import DEFAULT_ROBOT_FILE, load_robot, robot_from_dict
from mbrl_ros.core.tasks.palm_kinematics import ADROIT_WRIST_CHAIN, WristChain
from mbrl_ros.sim import HAND_JOINT_NAMES, build_scene
from mbrl_ros.sim.scene_cube import CUBE_SPAWN_POS


def test_the_built_in_hand_is_the_simulated_one():
    robot = load_robot()
    assert robot.joints == tuple(HAND_JOINT_NAMES)
    for task in ("baoding", "cube"):
        scene_map = build_scene(task).action_map()
        robot_map = robot.action_map(task)
        np.testing.assert_array_equal(robot_map.low, scene_map.low)
        np.testing.assert_array_equal(robot_map.high, scene_map.high)
        np.testing.assert_array_equal(robot_map.mid, scene_map.mid)
        assert robot_map.scale == scene_map.scale
    np.testing.assert_array_equal(robot.object_origins["cube"], CUBE_SPAWN_POS)
    origins = robot.origins_of(["cube", "ball1"])  # balls: measured from the world origin
    assert list(origins) == ["cube"]
    np.testing.assert_array_equal(origins["cube"], CUBE_SPAWN_POS)
    chain = {k: tuple(v) if isinstance(v, list) else v for k, v in robot.wrist_chain.items()}
    assert WristChain(**chain) == ADROIT_WRIST_CHAIN
    assert load_robot(DEFAULT_ROBOT_FILE) is robot  # loaded once, shared read-only
    with pytest.raises(ValueError):
        robot.command_low[0] = 1.0


def test_joint_order_is_a_checked_permutation():
    robot = load_robot()
    names = list(reversed(robot.joints))
    order = robot.order_of(names)
    assert [robot.joints[i] for i in order] == names
    with pytest.raises(ValueError, match=r"unknown \['elbow'\], missing \['WRJ1'\]"):
        robot.order_of(["elbow", *robot.joints[1:]])


def toy() -> dict:
    return {"name": "two_finger", "joints": ["a", "b"], "command_low": [-1.0, 0.0],
            "command_high": [1.0, 2.0], "poses": {"reach": [0.5, 1.0]},
            "action_scale": {"reach": 0.5}}


def test_a_two_joint_robot_from_a_file(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy()))
    robot = load_robot(path)
    amap = robot.action_map("reach")
    np.testing.assert_allclose(amap.to_joint_targets(np.array([1.0, -1.0])), [0.75, 0.5])
    np.testing.assert_allclose(robot.pose("other"), [0.0, 1.0])  # no pose: mid-range
    assert robot.action_map("other").scale == 1.0


@pytest.mark.parametrize("change, message", [
    ({"elbow": 1}, "unknown robot keys"),
    ({"command_low": [1.0, 0.0]}, "below command_high"),
    ({"poses": {"reach": [0.0]}}, "has 1 values, expected 2"),
    ({"action_scale": {"reach": 1.5}}, r"action_scale must be in \(0, 1\]"),
    ({"joints": ["a", "a"]}, "distinct"),
    ({"object_origins": {"puck": [0.0, float("nan"), 0.0]}}, "non-finite"),
])
def test_bad_descriptions_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        robot_from_dict({**toy(), **change})


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read robot description"):
        load_robot(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="not a YAML mapping"):
        load_robot(tmp_path / "list.yaml")
    assert dataclasses.is_dataclass(load_robot())


def test_baoding_places_its_targets_with_the_robots_wrist_chain(tmp_path):
    """The task reads the palm kinematics from the robot file the stack is given: a hand
    mounted 5 cm further along world x moves every target by those 5 cm."""
    import torch

    from mbrl_ros.core.tasks.from_values import stack_task

    data = yaml.safe_load(DEFAULT_ROBOT_FILE.read_text())
    data["name"] = "shifted_hand"
    data["wrist_chain"]["mount_pos"] = [0.05, -0.54, 0.19]
    path = tmp_path / "shifted.yaml"
    path.write_text(yaml.safe_dump(data))
    built_in, shifted = stack_task("baoding"), stack_task("baoding", values={"robot": str(path)})
    assert built_in.wrist_chain == ADROIT_WRIST_CHAIN
    assert shifted.wrist_chain.mount_pos == (0.05, -0.54, 0.19)
    state = torch.zeros(3, built_in.state_dim, dtype=torch.float64)
    state[:, :2] = torch.tensor([[0.0, 0.0], [0.2, -0.3], [-0.4, 0.5]])
    goals = built_in.episode_goals(0, 3).double()
    moved = shifted.target_world_xy(state, goals) - built_in.target_world_xy(state, goals)
    torch.testing.assert_close(moved[..., 0], torch.full_like(moved[..., 0], 0.05))
    torch.testing.assert_close(moved[..., 1], torch.zeros_like(moved[..., 1]))


def test_baoding_refuses_a_robot_it_cannot_use(tmp_path):
    from mbrl_ros.core.tasks.from_values import stack_task

    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy()))
    with pytest.raises(ValueError, match="24-joint hand"):
        stack_task("baoding", values={"robot": str(path)})
    data = yaml.safe_load(DEFAULT_ROBOT_FILE.read_text())
    del data["wrist_chain"]
    path = tmp_path / "no_wrist.yaml"  # another file: a loaded robot file is cached by path
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="no wrist_chain"):
        stack_task("baoding", values={"robot": str(path)})
    assert stack_task("cube", values={"robot": str(path)}).name == "cube"
