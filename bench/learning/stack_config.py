"""The settings the ROS stack would run with, read from the package's own config files.

The learning benchmark runs PDDM's loop in-process, without nodes, but with exactly the
parameter values a launch of the stack gives each node: the declared defaults, then
``config/<node file>.yaml``, then ``config/<task>.yaml`` (the ``/**`` section and the node's
own), then explicit overrides, as the launcher layers them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mbrl_ros.launch.packages import package_share
from mbrl_ros.nodes.parameters import Param


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def yaml_values(path: Path, node: str) -> dict[str, Any]:
    """Parameter values a params file gives ``node`` (``/**`` first, then ``/**/<node>``)."""
    doc = yaml.safe_load(path.read_text()) or {}
    values: dict[str, Any] = {}
    for section in ("/**", f"/**/{node}", node, f"/{node}"):
        body = doc.get(section)
        if isinstance(body, Mapping):
            values.update(_flatten(body.get("ros__parameters", {}) or {}))
    return values


def node_values(node: str, params: Sequence[Param], files: Sequence[str],
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``params`` layered with the installed ``config/<file>.yaml`` files and
    ``overrides``. Unknown keys are an error (a typo must not silently do nothing)."""
    values = {p.name: p.default for p in params}
    config = package_share("mbrl_ros") / "config"
    layers = [yaml_values(config / f"{name}.yaml", node) for name in files]
    layers.append(dict(overrides or {}))
    for layer in layers:
        unknown = sorted(set(layer) - set(values))
        if unknown:
            raise ValueError(f"unknown {node} parameters: {unknown}")
        values.update(layer)
    for p in params:
        problem = p.problem(values[p.name])
        if problem:
            raise ValueError(problem)
    return values
