"""Every parameter file in config/ sets only parameters its nodes declare, with values they
accept: a typo or an out-of-range value in a shipped file fails here, not at a user's
start-up (where the node would log it and keep its default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mbrl_ros.nodes import (
    estimator_node,
    experiment_node,
    foxglove_bridge_node,
    mcap_recorder_node,
    planner_params,
    sim_params,
    trainer_params,
)
from mbrl_ros.nodes.parameters import Param

CONFIG = Path(__file__).resolve().parents[1] / "config"
NODES: dict[str, list[Param]] = {
    "shadow_hand_sim": sim_params.PARAMS,
    "state_estimator": estimator_node.PARAMS,
    "dynamics_trainer": trainer_params.PARAMS,
    "mpc_planner": planner_params.PARAMS,
    "experiment": experiment_node.PARAMS,
    "mcap_recorder": mcap_recorder_node.PARAMS,
    "foxglove_bridge": foxglove_bridge_node.PARAMS,
}
ROS_BUILT_IN = {"use_sim_time"}


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML mappings as ROS parameter names (``a: {b: 1}`` -> ``a.b``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        out.update(flat(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return out


def settings(path: Path) -> list[tuple[str, str, Any]]:
    """(node pattern, parameter, value) of every parameter the file sets."""
    data = yaml.safe_load(path.read_text())
    return [(pattern, name, value) for pattern, body in data.items()
            for name, value in flat(body["ros__parameters"]).items()]


@pytest.mark.parametrize("path", sorted(CONFIG.glob("*.yaml")), ids=lambda p: p.name)
def test_every_setting_is_declared_and_accepted(path):
    problems = []
    for pattern, name, value in settings(path):
        if name in ROS_BUILT_IN:
            continue
        node = pattern.rsplit("/", 1)[-1]
        targets = list(NODES.values()) if node == "**" else [NODES.get(node)]
        if targets == [None]:
            problems.append(f"{pattern}: no such node")
            continue
        declared = [p for params in targets for p in params if p.name == name]
        if not declared:
            problems.append(f"{pattern}: {name} is declared by no node it reaches")
        problems += [f"{pattern}: {reason}" for p in declared
                     if (reason := p.problem(value)) is not None]
    assert not problems, problems


def test_the_task_files_reach_every_node_that_builds_the_task():
    """``robot`` and the task settings sit under ``/**``: every node that builds the task
    reads the same ones."""
    for task in ("baoding", "cube"):
        shared = {name for pattern, name, _ in settings(CONFIG / f"{task}.yaml")
                  if pattern == "/**"}
        assert {"task", "robot", "episode_length"} <= shared
        for node in ("state_estimator", "dynamics_trainer", "mpc_planner", "experiment"):
            names = {p.name for p in NODES[node]}
            assert shared <= names, (task, node, shared - names)
