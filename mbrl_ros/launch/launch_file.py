"""Read a ROS 2 YAML launch file into process specifications.

The supported subset (identical meaning under ``ros2 launch``):

- ``arg``: ``name``, ``default``, ``description``
- ``let``: ``name``, ``value``
- ``set_env``: ``name``, ``value``
- ``include``: ``file``, ``arg`` (list of ``name``/``value``)
- ``node``: ``pkg``, ``exec``, ``name``, ``namespace``, ``param`` (list of ``from`` files or
  ``name``/``value`` pairs), ``remap`` (list of ``from``/``to``), ``args``, ``ros_args``,
  ``env`` (list of ``name``/``value``), ``output`` (screen | log | both), ``respawn``,
  ``respawn_delay``, ``on_exit: shutdown`` (when this node ends, everything stops and the
  launcher returns its exit code)
- on every action: ``if`` and ``unless`` (true/false/1/0 after substitution)
- substitutions: see ``substitutions.SUPPORTED``

Anything else raises ``LaunchFileError`` naming the unsupported key.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mbrl_ros.launch import packages
from mbrl_ros.launch.substitutions import Context, SubstitutionError, resolve


class LaunchFileError(ValueError):
    """The launch file is malformed or uses something outside the supported subset."""


@dataclass
class NodeSpec:
    """One node process to run, with everything already resolved."""

    package: str
    executable: str
    name: str | None = None
    namespace: str | None = None
    param_files: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    ros_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    output: str = "log"
    respawn: bool = False
    respawn_delay: float = 0.0
    on_exit_shutdown: bool = False

    @property
    def label(self) -> str:
        """The name shown in front of the node's output lines."""
        return self.name or self.executable


@dataclass
class LaunchPlan:
    """The result of reading a launch file: nodes in order, and the environment to add."""

    nodes: list[NodeSpec] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    arguments: dict[str, str] = field(default_factory=dict)
    unused_arguments: list[str] = field(default_factory=list)


_ACTION_KEYS = {
    "arg": {"name", "default", "description"},
    "let": {"name", "value"},
    "set_env": {"name", "value"},
    "include": {"file", "arg"},
    "node": {
        "pkg", "exec", "name", "namespace", "param", "remap", "args", "ros_args", "env",
        "output", "respawn", "respawn_delay", "on_exit",
    },
}
_CONDITION_KEYS = {"if", "unless"}
_OUTPUTS = {"screen", "log", "both"}


def resolve_path(spec: str) -> Path:
    """A launch file given as a path, or as ``PACKAGE FILE`` (looked up in share/launch)."""
    parts = spec.split()
    if len(parts) == 2:
        return packages.package_share(parts[0]) / "launch" / parts[1]
    return Path(spec)


def load(path: str | os.PathLike, arguments: dict[str, str] | None = None) -> LaunchPlan:
    """Read ``path`` with command-line ``arguments`` (name -> value) into a ``LaunchPlan``."""
    arguments = dict(arguments or {})
    plan = LaunchPlan()
    declared: set[str] = set()
    root = Path(path).resolve()
    ctx = Context({}, root)
    try:
        _read_file(root, ctx, arguments, plan, declared, is_root=True)
    except (SubstitutionError, packages.PackageNotFoundError) as exc:
        raise LaunchFileError(str(exc)) from exc
    plan.unused_arguments = sorted(set(arguments) - declared)
    return plan


def _read_file(
    path: Path,
    ctx: Context,
    cli_args: dict[str, str],
    plan: LaunchPlan,
    declared: set[str],
    is_root: bool,
) -> None:
    if not path.is_file():
        raise LaunchFileError(f"launch file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise LaunchFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"launch"} or not isinstance(doc["launch"], list):
        raise LaunchFileError(f"{path}: expected a top-level 'launch:' list of actions")
    for index, entry in enumerate(doc["launch"]):
        where = f"{path.name}: action {index}"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise LaunchFileError(f"{where}: each action is a one-key mapping like 'node: {{...}}'")
        (kind, body), = entry.items()
        if kind not in _ACTION_KEYS:
            raise LaunchFileError(
                f"{where}: action '{kind}' is not supported by mbrl-ros launch "
                f"(supported: {', '.join(_ACTION_KEYS)})"
            )
        if not isinstance(body, dict):
            raise LaunchFileError(f"{where}: '{kind}' needs a mapping of attributes")
        unknown = set(body) - _ACTION_KEYS[kind] - _CONDITION_KEYS
        if unknown:
            raise LaunchFileError(
                f"{where}: '{kind}' attribute(s) {sorted(unknown)} not supported by mbrl-ros launch"
            )
        if not _condition_holds(body, ctx, where):
            continue
        where = f"{where} ({kind})"
        if kind == "arg":
            name = _text(body, "name", ctx, where)
            declared.add(name)
            if is_root and name in cli_args:
                ctx.variables[name] = cli_args[name]
            elif name not in ctx.variables:
                if "default" not in body:
                    raise LaunchFileError(f"{where}: argument '{name}' is required (name:=value)")
                ctx.variables[name] = _text(body, "default", ctx, where)
            plan.arguments.setdefault(name, ctx.variables[name])
        elif kind == "let":
            ctx.variables[_text(body, "name", ctx, where)] = _text(body, "value", ctx, where)
        elif kind == "set_env":
            plan.env[_text(body, "name", ctx, where)] = _text(body, "value", ctx, where)
        elif kind == "include":
            child_path = Path(_text(body, "file", ctx, where))
            if not child_path.is_absolute():
                child_path = path.parent / child_path
            extra = {
                _text(a, "name", ctx, where): _text(a, "value", ctx, where)
                for a in _pairs(body.get("arg", []), ("name", "value"), where)
            }
            _read_file(child_path, ctx.child(child_path, extra), cli_args, plan, declared, False)
        else:
            plan.nodes.append(_node(body, ctx, where))


def _node(body: dict, ctx: Context, where: str) -> NodeSpec:
    node = NodeSpec(
        package=_text(body, "pkg", ctx, where), executable=_text(body, "exec", ctx, where)
    )
    if "name" in body:
        node.name = _text(body, "name", ctx, where)
    if "namespace" in body:
        node.namespace = _text(body, "namespace", ctx, where)
    for param in body.get("param", []) or []:
        if not isinstance(param, dict):
            raise LaunchFileError(f"{where}: each 'param' entry is a mapping")
        if "from" in param and set(param) == {"from"}:
            node.param_files.append(_text(param, "from", ctx, where))
        elif set(param) == {"name", "value"}:
            node.params[_text(param, "name", ctx, where)] = _param_value(param["value"], ctx, where)
        else:
            raise LaunchFileError(f"{where}: 'param' needs 'from' or 'name'+'value': {param}")
    for remap in _pairs(body.get("remap", []), ("from", "to"), where):
        node.remaps.append((_text(remap, "from", ctx, where), _text(remap, "to", ctx, where)))
    for key in ("args", "ros_args"):
        if key in body:
            setattr(node, key, shlex.split(_text(body, key, ctx, where)))
    for env in _pairs(body.get("env", []), ("name", "value"), where):
        node.env[_text(env, "name", ctx, where)] = _text(env, "value", ctx, where)
    if "output" in body:
        node.output = _text(body, "output", ctx, where)
        if node.output not in _OUTPUTS:
            raise LaunchFileError(f"{where}: output must be one of {sorted(_OUTPUTS)}")
    if "respawn" in body:
        node.respawn = _truth(_text(body, "respawn", ctx, where), where)
    if "respawn_delay" in body:
        try:
            node.respawn_delay = float(_text(body, "respawn_delay", ctx, where))
        except ValueError as exc:
            raise LaunchFileError(f"{where}: respawn_delay must be a number") from exc
        if node.respawn_delay < 0:
            raise LaunchFileError(f"{where}: respawn_delay must be >= 0")
    if "on_exit" in body:
        if _text(body, "on_exit", ctx, where) != "shutdown":
            raise LaunchFileError(f"{where}: on_exit supports only 'shutdown'")
        node.on_exit_shutdown = True
    return node


def _pairs(items: Any, keys: tuple[str, str], where: str) -> list[dict]:
    if not isinstance(items, list) or any(
        not isinstance(i, dict) or set(i) != set(keys) for i in items
    ):
        raise LaunchFileError(f"{where}: expected a list of {{{keys[0]}, {keys[1]}}} mappings")
    return items


def _text(body: dict, key: str, ctx: Context, where: str) -> str:
    if key not in body:
        raise LaunchFileError(f"{where}: missing '{key}'")
    value = body[key]
    if isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(value, (str, int, float)):
        raise LaunchFileError(f"{where}: '{key}' must be a scalar")
    return resolve(str(value), ctx)


def _param_value(value: Any, ctx: Context, where: str) -> Any:
    """Literal YAML values keep their type; substituted strings are re-read as YAML."""
    if isinstance(value, str):
        text = resolve(value, ctx)
        if text == value:
            return value
        try:
            return yaml.safe_load(text) if text else text
        except yaml.YAMLError:
            return text
    if isinstance(value, list):
        return [_param_value(v, ctx, where) for v in value]
    if isinstance(value, (bool, int, float)):
        return value
    raise LaunchFileError(f"{where}: unsupported parameter value {value!r}")


def _condition_holds(body: dict, ctx: Context, where: str) -> bool:
    if "if" in body and not _truth(_text(body, "if", ctx, where), where):
        return False
    return not ("unless" in body and _truth(_text(body, "unless", ctx, where), where))


def _truth(text: str, where: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LaunchFileError(f"{where}: expected true/false/1/0, got '{text}'")
