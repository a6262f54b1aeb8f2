"""Read a ROS 2 YAML launch file into process specifications, as ``ros2 launch`` reads it.

The supported subset, each element with its meaning under ``ros2 launch`` (checked against
the ROS 2 Jazzy sources: launch 3.4.3, launch_ros 0.26.6):

- ``arg``: ``name`` (taken literally), ``default``, ``description``; sets the launch
  configuration ``name`` unless something set it already (the command line, an include's
  ``arg``, an earlier action); without a default and unset it is an error;
- ``let``: ``name``, ``value``;
- ``set_env``: ``name``, ``value``; seen by ``$(env)`` and the nodes that come after it;
- ``include``: ``file``, ``arg`` (list of ``name``/``value``). A relative ``file`` is relative
  to the working directory (write ``$(dirname)/x.launch.yaml``). The ``arg`` entries become
  launch configurations in order, just before the included file runs, so they win over the
  command line. An include opens no scope: the included file sees every configuration set so
  far (command-line arguments included) and what it sets stays set after it;
- ``node``: ``pkg``, ``exec``, ``name``, ``namespace``, ``param`` (list of ``from`` files,
  skipped with a warning when not a file, or ``name``/``value`` pairs; a value with
  substitutions is read as YAML after them), ``remap`` (list of ``from``/``to``), ``args``,
  ``ros_args``, ``env`` (list of ``name``/``value``), ``output`` (screen | log | both),
  ``respawn``, ``respawn_delay`` (a float), ``on_exit: shutdown`` (when this node ends,
  everything stops);
- on every action ``if`` or ``unless`` (true/false/1/0 after substitution, any case);
- substitutions: see ``substitutions.SUPPORTED``.

Attribute values are YAML strings, except ``respawn_delay`` (a float) and parameter values;
the whole file is checked before anything runs. Anything else raises ``LaunchFileError``
naming it.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mbrl_ros.launch import packages
from mbrl_ros.launch.substitutions import (
    Context,
    SubstitutionError,
    Template,
    evaluate,
    has_substitutions,
    parse,
    unescape,
)


class LaunchFileError(ValueError):
    """The launch file is malformed or uses something outside the supported subset."""


@dataclass
class NodeSpec:
    """One node process to run, with everything already resolved."""

    package: str
    executable: str
    name: str | None = None
    namespace: str | None = None  # absolute, as ros2 launch passes it in __ns
    # in launch-file order: a parameter file (its path) or one name/value entry ({name: value})
    parameters: list[str | dict[str, Any]] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    ros_args: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)  # the node's own env entries
    launch_env: dict[str, str] = field(default_factory=dict)  # set_env values before the node
    output: str = "log"
    respawn: bool = False
    respawn_delay: float = 0.0
    on_exit_shutdown: bool = False

    @property
    def label(self) -> str:
        """The name shown in front of the node's output lines."""
        return self.name or self.executable

    @property
    def full_name(self) -> str | None:
        """``/namespace/name`` when both are given (what ros2 launch keys parameters by)."""
        if self.name is None or self.namespace is None:
            return None
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def param_files(self) -> list[str]:
        return [p for p in self.parameters if isinstance(p, str)]

    @property
    def params(self) -> dict[str, Any]:
        """The name/value parameters (later entries win)."""
        out: dict[str, Any] = {}
        for entry in self.parameters:
            if isinstance(entry, dict):
                out.update(entry)
        return out


@dataclass
class LaunchPlan:
    """The result of reading a launch file: nodes in order, and the environment to add."""

    nodes: list[NodeSpec] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # every set_env, last value wins
    arguments: dict[str, str] = field(default_factory=dict)  # declared argument -> value
    unused_arguments: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Action:
    kind: str
    where: str
    attrs: dict[str, Any]
    condition: tuple[str, Template] | None = None


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
_SCALARS = (bool, int, float, str)


def resolve_path(spec: str) -> Path:
    """A launch file given as a path, or as ``PACKAGE FILE``: the one file of that name
    anywhere under the package's share directory (as ``ros2 launch`` finds it)."""
    parts = spec.split()
    if len(parts) != 2:
        return Path(spec)
    package, name = parts
    share = packages.package_share(package)
    found = sorted(Path(root) / name for root, _, files in os.walk(share) if name in files)
    if not found:
        raise LaunchFileError(f"file '{name}' was not found in the share directory of package "
                              f"'{package}' ({share})")
    if len(found) > 1:
        raise LaunchFileError(f"file '{name}' was found more than once in the share directory "
                              f"of package '{package}': {', '.join(map(str, found))}")
    return found[0]


def load(path: str | os.PathLike, arguments: dict[str, str] | None = None) -> LaunchPlan:
    """Read ``path`` with command-line ``arguments`` (name -> value) into a ``LaunchPlan``.

    As ``ros2 launch`` does, the command-line arguments are the arguments of an include of
    ``path``: launch configurations that every file, included ones too, sees."""
    arguments = dict(arguments or {})
    plan = LaunchPlan()
    ctx = Context()
    given = [([name], [value]) for name, value in arguments.items()]
    _include(Path(os.path.abspath(path)), given, ctx, plan, "the command line")
    plan.unused_arguments = sorted(set(arguments) - set(plan.arguments))
    return plan


# ---- reading a file: structure, types and substitution syntax, before anything runs ------

def _parse_file(path: Path) -> list[_Action]:
    if not path.is_file():
        raise LaunchFileError(f"launch file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise LaunchFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"launch"} or not isinstance(doc["launch"], list):
        raise LaunchFileError(f"{path}: expected a top-level 'launch:' list of actions")
    actions = []
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
        where = f"{where} ({kind})"
        if "if" in body and "unless" in body:
            raise LaunchFileError(f"{where}: 'if' and 'unless' cannot be used together")
        condition = next(((key, _template(body, key, where)) for key in ("if", "unless")
                          if key in body), None)
        actions.append(_Action(kind, where, _PARSERS[kind](body, where), condition))
    return actions


def _string(body: dict, key: str, where: str) -> str:
    if key not in body:
        raise LaunchFileError(f"{where}: missing '{key}'")
    value = body[key]
    if not isinstance(value, str):
        raise LaunchFileError(f"{where}: '{key}' must be a string: quote it ({value!r} is a "
                              f"YAML {type(value).__name__}, which ros2 launch rejects here)")
    return value


def _template(body: dict, key: str, where: str) -> Template:
    return _parse(_string(body, key, where), where, key)


def _parse(text: str, where: str, key: str) -> Template:
    try:
        return parse(text)
    except SubstitutionError as exc:
        raise LaunchFileError(f"{where}: '{key}': {exc}") from exc


def _optional(body: dict, key: str, where: str) -> Template | None:
    return _template(body, key, where) if key in body else None


def _entries(body: dict, key: str, keys: set[str], where: str) -> list[dict]:
    """A list attribute of mappings, each with exactly ``keys``."""
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not items or any(not isinstance(i, dict) for i in items):
        raise LaunchFileError(f"{where}: '{key}' must be a non-empty list of mappings")
    for item in items:
        if set(item) != keys:
            raise LaunchFileError(f"{where}: each '{key}' entry needs exactly {sorted(keys)} "
                                  f"(mbrl-ros launch), got {sorted(item)}")
    return items


def _pairs(body: dict, key: str, names: tuple[str, str], where: str) -> list:
    return [(_template(e, names[0], where), _template(e, names[1], where))
            for e in _entries(body, key, set(names), where)]


def _parse_arg(body: dict, where: str) -> dict:
    if "description" in body:
        _string(body, "description", where)
    return {"name": unescape(_string(body, "name", where)),
            "default": _optional(body, "default", where)}


def _parse_assignment(body: dict, where: str) -> dict:
    return {"name": _template(body, "name", where), "value": _template(body, "value", where)}


def _parse_include(body: dict, where: str) -> dict:
    return {"file": _template(body, "file", where),
            "arg": _pairs(body, "arg", ("name", "value"), where)}


def _parse_node(body: dict, where: str) -> dict:
    attrs: dict[str, Any] = {key: _optional(body, key, where)
                             for key in ("pkg", "exec", "name", "namespace", "output", "respawn")}
    for key in ("pkg", "exec"):
        if attrs[key] is None:
            raise LaunchFileError(f"{where}: missing '{key}'")
    for key in ("args", "ros_args"):
        attrs[key] = _cmdline(_template(body, key, where), where) if key in body else None
    attrs["remap"] = _pairs(body, "remap", ("from", "to"), where)
    attrs["env"] = _pairs(body, "env", ("name", "value"), where)
    attrs["param"] = _parse_params(body.get("param"), where)
    attrs["respawn_delay"] = None
    if "respawn_delay" in body:
        delay = body["respawn_delay"]
        if not isinstance(delay, float):
            raise LaunchFileError(f"{where}: respawn_delay must be a YAML float such as 2.0 "
                                  f"(ros2 launch rejects {delay!r})")
        if delay < 0:
            raise LaunchFileError(f"{where}: respawn_delay must be >= 0")
        attrs["respawn_delay"] = delay
    attrs["on_exit"] = False
    if "on_exit" in body:
        if body["on_exit"] != "shutdown":
            raise LaunchFileError(f"{where}: on_exit supports only 'shutdown'")
        attrs["on_exit"] = True
    return attrs


_PARSERS = {"arg": _parse_arg, "let": _parse_assignment, "set_env": _parse_assignment,
            "include": _parse_include, "node": _parse_node}


def _cmdline(template: Template, where: str) -> list[Template]:
    """``args`` split into arguments as ros2 launch does: text pieces are split like a shell
    would, a substitution's result is never split."""
    result: list[Template] = []
    arg: Template = []

    def push() -> None:
        nonlocal arg
        result.append(arg)
        arg = []

    for part in template:
        if not isinstance(part, str):
            arg.append(part)
            continue
        try:
            tokens = shlex.split(part)
        except ValueError as exc:
            raise LaunchFileError(f"{where}: cannot split '{part}': {exc}") from exc
        if not tokens:
            push()
            continue
        if part[0].isspace() and arg:
            push()
        arg.append(tokens[0])
        if len(tokens) > 1:
            push()
            arg.append(tokens[-1])
        if len(tokens) > 2:
            result.extend([token] for token in tokens[1:-1])
        if part[-1].isspace():
            push()
    if arg:
        result.append(arg)
    return result


def _parse_params(items: Any, where: str) -> list[tuple]:
    if items is None:
        return []
    if not isinstance(items, list) or not items or any(not isinstance(i, dict) for i in items):
        raise LaunchFileError(f"{where}: 'param' must be a non-empty list of mappings")
    out: list[tuple] = []
    for param in items:
        if set(param) == {"from"}:
            out.append(("file", _template(param, "from", where)))
        elif set(param) == {"name", "value"}:
            out.append(("value", _template(param, "name", where),
                        _param_literal(param["value"], where)))
        else:
            raise LaunchFileError(f"{where}: 'param' needs 'from' or 'name'+'value' "
                                  f"(mbrl-ros launch): {param}")
    return out


def _param_literal(value: Any, where: str) -> tuple:
    """("plain", value) or ("yaml", template) or ("yaml-list", templates), as launch_ros
    reads a parameter value: literal YAML keeps its type, substituted text is read as YAML."""
    if isinstance(value, str):
        template = _parse(value, where, "param")
        if has_substitutions(template):
            return ("yaml", template)
        return ("plain", "".join(template))
    if isinstance(value, _SCALARS):
        return ("plain", value)
    if isinstance(value, list) and value and all(isinstance(v, _SCALARS) for v in value):
        parsed = [_param_literal(v, where) for v in value]
        kinds = {kind if kind == "yaml" else type(v) for kind, v in parsed}
        if len(kinds) != 1:
            raise LaunchFileError(f"{where}: parameter list {value!r} is not uniform")
        if parsed[0][0] == "yaml":
            return ("yaml-list", [template for _, template in parsed])
        return ("plain", [v for _, v in parsed])
    raise LaunchFileError(f"{where}: unsupported parameter value {value!r}")


# ---- running the actions ---------------------------------------------------------------------

def _include(path: Path, given: list[tuple[Template, Template]], ctx: Context,
             plan: LaunchPlan, where: str) -> None:
    actions = _parse_file(path)
    ctx.current_file = path  # ros2 launch leaves it here after the include, too
    try:
        names = [evaluate(name, ctx) for name, _ in given]
        for action in actions:
            attrs = action.attrs
            if (action.kind == "arg" and action.condition is None and attrs["default"] is None
                    and attrs["name"] not in names):
                raise LaunchFileError(f"{action.where}: argument '{attrs['name']}' is required "
                                      f"but not given by {where} (name:=value)")
        for name, value in given:
            ctx.variables[evaluate(name, ctx)] = evaluate(value, ctx)
    except (SubstitutionError, packages.PackageNotFoundError) as exc:
        raise LaunchFileError(f"{where}: {exc}") from exc
    for action in actions:
        try:
            _run(action, ctx, plan)
        except (SubstitutionError, packages.PackageNotFoundError) as exc:
            raise LaunchFileError(f"{action.where}: {exc}") from exc


def _run(action: _Action, ctx: Context, plan: LaunchPlan) -> None:
    if action.condition is not None:
        key, template = action.condition
        if _truth(evaluate(template, ctx), action.where) != (key == "if"):
            return
    attrs, where = action.attrs, action.where
    if action.kind == "arg":
        name = attrs["name"]
        if name not in ctx.variables:
            if attrs["default"] is None:
                raise LaunchFileError(f"{where}: argument '{name}' is required (name:=value)")
            ctx.variables[name] = evaluate(attrs["default"], ctx)
        plan.arguments.setdefault(name, ctx.variables[name])
    elif action.kind == "let":
        ctx.variables[evaluate(attrs["name"], ctx)] = evaluate(attrs["value"], ctx)
    elif action.kind == "set_env":
        name, value = evaluate(attrs["name"], ctx), evaluate(attrs["value"], ctx)
        ctx.environment[name] = ctx.set_env[name] = plan.env[name] = value
    elif action.kind == "include":
        child = Path(os.path.abspath(evaluate(attrs["file"], ctx)))
        _include(child, attrs["arg"], ctx, plan, f"the include in {where}")
    else:
        plan.nodes.append(_node(attrs, ctx, plan, where))


def _validate_names(name: str | None, namespace: str | None, where: str) -> None:
    """launch_ros checks node names and namespaces with rclpy (rmw's rules)."""
    try:
        from rclpy.exceptions import InvalidNamespaceException, InvalidNodeNameException
        from rclpy.validate_namespace import validate_namespace
        from rclpy.validate_node_name import validate_node_name
    except ImportError:  # a ROS-free install (--show only): the same rules but length limits
        if name is not None and not _NODE_NAME.fullmatch(name):
            raise LaunchFileError(f"{where}: invalid node name '{name}'") from None
        if namespace is not None and not _NAMESPACE.fullmatch(namespace):
            raise LaunchFileError(f"{where}: invalid namespace '{namespace}'") from None
        return
    try:
        if name is not None:
            validate_node_name(name)
        if namespace is not None:
            validate_namespace(namespace)
    except (InvalidNodeNameException, InvalidNamespaceException) as exc:
        raise LaunchFileError(f"{where}: {exc}") from exc


_NODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAMESPACE = re.compile(r"/|(/[A-Za-z_][A-Za-z0-9_]*)+")


def _node(attrs: dict, ctx: Context, plan: LaunchPlan, where: str) -> NodeSpec:
    def ev(template: Template) -> str:
        return evaluate(template, ctx)

    node = NodeSpec(package=ev(attrs["pkg"]), executable=ev(attrs["exec"]))
    if attrs["name"] is not None:
        node.name = ev(attrs["name"])
    if attrs["namespace"] is not None:
        namespace = ev(attrs["namespace"])
        namespace = namespace if namespace == "/" else namespace.rstrip("/")
        node.namespace = namespace if namespace.startswith("/") else "/" + namespace
    _validate_names(node.name, node.namespace, where)
    for param in attrs["param"]:
        if param[0] == "file":
            path = ev(param[1])
            if not os.path.isfile(path):
                plan.warnings.append(f"{where}: parameter file {path} is not a file: skipped "
                                     f"(as ros2 launch does)")
                continue
            node.parameters.append(str(Path(path)))
        else:
            name = ev(param[1])
            node.parameters.append({name: _param_value(param[2], ctx, f"{where}: '{name}'")})
    node.remaps = [(ev(src), ev(dst)) for src, dst in attrs["remap"]]
    if attrs["args"] is not None:
        node.args = [ev(arg) for arg in attrs["args"]]
    if attrs["ros_args"] is not None:
        node.ros_args = [ev(arg) for arg in attrs["ros_args"]]
    node.env = {ev(name): ev(value) for name, value in attrs["env"]}
    node.launch_env = dict(ctx.set_env)
    if attrs["output"] is not None:
        node.output = ev(attrs["output"])
        if node.output not in _OUTPUTS:
            raise LaunchFileError(f"{where}: output must be one of {sorted(_OUTPUTS)} "
                                  f"(mbrl-ros launch)")
    if attrs["respawn"] is not None:
        node.respawn = _yaml_bool(ev(attrs["respawn"]), where)
    if attrs["respawn_delay"] is not None:
        node.respawn_delay = attrs["respawn_delay"]
    node.on_exit_shutdown = attrs["on_exit"]
    return node


def _param_value(value: tuple, ctx: Context, where: str) -> Any:
    kind, data = value
    if kind == "plain":
        return list(data) if isinstance(data, list) else data
    if kind == "yaml":
        text = evaluate(data, ctx)
        result = _yaml(text, where) if text else ""
        if isinstance(result, _SCALARS) or _uniform(result):
            return result
        raise LaunchFileError(f"{where}: '{text}' reads as a YAML {type(result).__name__}; a "
                              f"parameter must be a scalar or a uniform list")
    result = [_yaml(evaluate(template, ctx), where) for template in data]
    if not _uniform(result):
        raise LaunchFileError(f"{where}: {result!r} is not a uniform list")
    return result


def _uniform(value: Any) -> bool:
    """A non-empty list whose items are all of the first item's type (bool, int, float, str)."""
    return (isinstance(value, list) and bool(value) and type(value[0]) in _SCALARS
            and all(isinstance(v, type(value[0])) for v in value))


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LaunchFileError(f"{where}: '{text}' is not valid YAML: {exc}") from exc


def _yaml_bool(text: str, where: str) -> bool:
    """As launch coerces to bool: '1'/'0', else YAML (true, False, yes, off, ...)."""
    value = {"1": True, "0": False}.get(text)
    if value is None and text:
        value = _yaml(text, where)
    if not isinstance(value, bool):
        raise LaunchFileError(f"{where}: expected a boolean, got '{text}'")
    return value


def _truth(text: str, where: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LaunchFileError(f"{where}: expected true/false/1/0, got '{text}'")
