"""``config.yaml`` of a run: the parameters of every node of the stack, as they run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python

from mbrl_ros.nodes.patient_calls import CallFailed, PatientCaller


def write_run_config(path: Path, own: dict[str, Any], nodes: list[str], node: Node,
                     calls: PatientCaller, group: CallbackGroup) -> None:
    """``own`` (the experiment's parameters) and those of ``nodes`` (names in ``node``'s
    namespace) into ``path``; a node that does not answer is noted as unavailable."""
    config: dict[str, Any] = {"experiment": own}
    for name in nodes:
        try:
            config[name] = node_parameters(name, node, calls, group)
        except CallFailed as exc:
            config[name] = f"unavailable: {exc}"
    with path.open("w") as f:
        yaml.safe_dump(config, f, sort_keys=True)


def node_parameters(name: str, node: Node, calls: PatientCaller, group: CallbackGroup
                    ) -> dict[str, Any]:
    """Every parameter of node ``name`` with its current value (plain Python types)."""
    lister = node.create_client(ListParameters, f"{name}/list_parameters",
                                callback_group=group)
    getter = node.create_client(GetParameters, f"{name}/get_parameters", callback_group=group)
    try:
        names = list(calls.call(lister, ListParameters.Request(), 10.0,
                                f"{name} parameters").result.names)
        values = calls.call(getter, GetParameters.Request(names=names), 10.0,
                            f"{name} parameters").values
        out = {}
        for n, v in zip(names, values, strict=True):
            value = parameter_value_to_python(v)
            out[n] = value.tolist() if hasattr(value, "tolist") else value
        return out
    finally:
        node.destroy_client(lister)
        node.destroy_client(getter)
