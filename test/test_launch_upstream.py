"""The launch files and ``mbrl-ros launch`` against the real ``ros2 launch``.

The upstream tools (ROS 2 Jazzy: launch 3.4.3, launch_ros 0.26.6, ros2cli 0.32.2) come from
the kit beside the project, ``../shared/tools/ros2-upstream``; the session fixture
``ros2env`` (conftest.py, helpers/ros2_upstream.py) installs it once into
``~/.cache/mbrl_ros/ros2-upstream/<hash of the kit and this venv>`` (about a minute, the
first time only). Every test here skips, naming the reason, where that folder is absent.

To compare without running any node, ``ros2 launch`` runs under a driver that replaces only
the last step of launching a process (``ExecuteLocal.execute``) by recording the fully
resolved command line, environment, respawn and output settings: everything before it
(argument handling, includes, substitutions, conditions, launch_ros' command line) is
upstream's own code, the same code ``ros2 launch`` runs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers.ros2_upstream import upstream_env

from mbrl_ros.launch import launch_file

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted(p.name for p in (REPO / "launch").glob("*.launch.yaml"))
SHARE = Path(sys.prefix) / "share" / "mbrl_ros"

# Runs `ros2 launch` (ros2launch's own entry point) with ExecuteLocal.execute replaced by a
# recorder: argv = OUT.json, then what `ros2 launch` takes (PACKAGE FILE or FILE, name:=value).
DRIVER = r'''
import json, os, sys
from launch.actions.execute_local import ExecuteLocal
from launch.utilities import perform_substitutions
from ros2launch.api import get_share_file_path_from_package, launch_a_launch_file

out_path, *argv = sys.argv[1:]
words = [a for a in argv if ":=" not in a]
before = dict(os.environ)
nodes = []

def record(self, context):
    self.prepare(context)
    desc = self.process_description
    cmd = list(desc.final_cmd)
    temp_params = {}
    for flag, path in zip(cmd, cmd[1:]):
        if flag == "--params-file" and os.path.basename(path).startswith("launch_params_"):
            with open(path) as handle:
                temp_params[path] = handle.read()
    on_exit = self._ExecuteLocal__on_exit
    nodes.append({
        "cmd": cmd, "temp_params": temp_params,
        "env": {k: v for k, v in desc.final_env.items() if before.get(k) != v},
        "respawn": self._ExecuteLocal__respawn,
        "respawn_delay": self._ExecuteLocal__respawn_delay or 0.0,
        "output": perform_substitutions(context, self._ExecuteLocal__output),
        "on_exit_shutdown": bool(on_exit) and type(on_exit[0]).__name__ == "Shutdown",
    })

ExecuteLocal.execute = record
path = words[0] if len(words) == 1 else get_share_file_path_from_package(
    package_name=words[0], file_name=words[1])
code = launch_a_launch_file(launch_file_path=path, noninteractive=True,
                            launch_file_arguments=[a for a in argv if ":=" in a])
with open(out_path, "w") as handle:
    json.dump({"code": code, "nodes": nodes}, handle)
'''


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    """The environment of both launchers: this run's random domain, loopback discovery, logs
    and temporary files inside the test's folder, this venv's packages only."""
    return upstream_env(tmp_path)


def _ours(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbrl_ros.launch.cli", "launch", *args],
                          env={**env, "AMENT_PREFIX_PATH": sys.prefix}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _upstream(ros2env: Path, env: dict, cwd: Path, *args: str) -> tuple[int, dict, str]:
    """Runs the driver: (exit code, {"code", "nodes"} as recorded, output)."""
    driver, out, tmp = cwd / "upstream_driver.py", cwd / "upstream.json", cwd / "upstream_tmp"
    driver.write_text(DRIVER)
    out.unlink(missing_ok=True)
    tmp.mkdir(exist_ok=True)  # launch_ros leaves its launch_params_* files: not in env's TMPDIR
    result = subprocess.run([str(ros2env), "python", str(driver), str(out), *args],
                            env={**env, "TMPDIR": str(tmp)}, cwd=cwd, capture_output=True,
                            text=True, timeout=60)
    recorded = json.loads(out.read_text()) if out.exists() else {"code": None, "nodes": []}
    return recorded["code"], recorded, result.stdout + result.stderr


# ---- canonical forms of both launchers' node command lines ---------------------------------

def _canonical_upstream(node: dict) -> list:
    out, cmd, i = [], node["cmd"], 0
    while i < len(cmd):
        if cmd[i] == "--params-file" and cmd[i + 1] in node["temp_params"]:
            (scope, body), = yaml.safe_load(node["temp_params"][cmd[i + 1]]).items()
            out += [("-p", scope, name, value)
                    for name, value in body["ros__parameters"].items()]
            i += 2
            continue
        out.append(cmd[i])
        i += 1
    return out


def _show_lines(stdout: str) -> list[tuple[dict, dict, list[str]]]:
    """``--show`` output as (set_env so far, node env, argv) per node."""
    set_env: dict[str, str] = {}
    nodes = []
    for line in stdout.splitlines():
        words = shlex.split(line)
        if words[0] == "set_env":
            name, value = words[1].split("=", 1)
            set_env[name] = value
            continue
        node_env = {}
        if words[0] == "env":
            words.pop(0)
            while "=" in words[0] and not words[0].startswith("/"):
                name, value = words.pop(0).split("=", 1)
                node_env[name] = value
        nodes.append((dict(set_env), node_env, words))
    return nodes


def _canonical_ours(argv: list[str], scope: str) -> list:
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "-p":
            name, value = argv[i + 1].split(":=", 1)
            out.append(("-p", scope, name, yaml.safe_load(value)))
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _compare(ros2env: Path, env: dict, cwd: Path, monkeypatch, *args: str) -> None:
    """``mbrl-ros launch --show`` and ``launch_file.load`` against what ros2 launch does."""
    code, upstream, log = _upstream(ros2env, env, cwd, *args)
    assert code == 0, f"ros2 launch failed on {args}:\n{log[-3000:]}"
    shown = _ours(env, cwd, *args, "--show")
    assert shown.returncode == 0, shown.stderr
    assert not list(Path(env["TMPDIR"]).iterdir()), "--show left files behind"
    ours = _show_lines(shown.stdout)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)
    words = [a for a in args if ":=" not in a]
    plan = launch_file.load(launch_file.resolve_path(" ".join(words)),
                            dict(a.split(":=", 1) for a in args if ":=" in a))
    assert len(ours) == len(plan.nodes) == len(upstream["nodes"]), (
        [n["cmd"][0] for n in upstream["nodes"]], [argv[0] for _, _, argv in ours])
    for theirs, (set_env, node_env, argv), spec in zip(upstream["nodes"], ours, plan.nodes,
                                                       strict=True):
        scope = spec.full_name or "/**"
        assert _canonical_ours(argv, scope) == _canonical_upstream(theirs)
        effective = {k: v for k, v in {**set_env, **node_env}.items() if env.get(k) != v}
        assert effective == theirs["env"], argv[0]
        assert (spec.respawn, spec.respawn_delay, spec.output, spec.on_exit_shutdown) == (
            theirs["respawn"], theirs["respawn_delay"], theirs["output"],
            theirs["on_exit_shutdown"]), argv[0]


# ---- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_every_launch_file_parses_under_ros2_launch(ros2env, env, tmp_path, name):
    assert (SHARE / "launch" / name).read_text() == (REPO / "launch" / name).read_text(), (
        "the installed launch file differs from launch/: run make build")
    result = subprocess.run([str(ros2env), "ros2", "launch", "mbrl_ros", name, "--show-args"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Arguments (pass arguments as '<name>:=<value>')" in result.stdout


def test_optenv_is_refused_like_ros2_launch(ros2env, env, tmp_path):
    # Even where it would never be evaluated: both launchers read the whole file first.
    for text in ("launch:\n- arg: {name: x, default: $(optenv MBRL_X fallback)}\n",
                 "launch:\n- node: {pkg: mbrl_ros, exec: experiment, if: 'false',"
                 " name: $(optenv MBRL_X n)}\n"):
        path = tmp_path / "optenv.launch.yaml"
        path.write_text(text)
        ours = _ours(env, tmp_path, str(path), "--show")
        assert ours.returncode == 2 and not ours.stdout
        assert "Unknown substitution: optenv" in ours.stderr and "$(env" in ours.stderr
        theirs = subprocess.run([str(ros2env), "ros2", "launch", str(path)], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert theirs.returncode != 0
        assert "Unknown substitution: optenv" in theirs.stdout + theirs.stderr


def test_command_line_arguments_reach_included_files_and_show_leaves_nothing(env, tmp_path):
    result = _ours(env, tmp_path, "mbrl_ros", "demo.launch.yaml", "runs_dir:=/x",
                   "experiment:=false", "--show")
    assert result.returncode == 0, result.stderr
    assert "not declared" not in result.stderr  # runs_dir, experiment: declared by includes
    nodes = _show_lines(result.stdout)
    executables = [Path(argv[0]).name for _, _, argv in nodes]
    assert executables == ["dynamics_trainer", "shadow_hand_sim", "state_estimator",
                           "mpc_planner"]  # experiment:=false reached robot.launch.yaml
    trainer = nodes[0][2]
    assert "dataset_dir:=/x/demo/dataset" in trainer  # runs_dir:=/x reached learner.launch.yaml
    assert str(SHARE / "config" / "demo.yaml") in trainer  # demo's own include argument
    profiles = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE",
                              str(SHARE / "config" / "fastdds_profiles.xml"))
    assert result.stdout.startswith(f"set_env FASTDDS_DEFAULT_PROFILES_FILE={profiles}\n")
    assert not list(Path(env["TMPDIR"]).iterdir()), "--show left files behind"


CASES = [(name,) for name in LAUNCH_FILES] + [
    ("demo.launch.yaml", "runs_dir:=/x", "experiment:=false", "mode:=realtime"),
    ("stack.launch.yaml", "task:=cube", "mode:=realtime", "respawn:=false", "namespace:=arm/"),
    ("baoding.launch.yaml", "overrides:=no_such_file.yaml", "run_name:=b 1"),
    ("sim.launch.yaml", "task:=cube", "namespace:=/"),
    ("baoding.launch.yaml", "record:=true", "respawn:=false", "run_name:=rec"),
    ("cube.launch.yaml", "live_view:=true", "record:=true", "respawn:=false"),
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_show_matches_ros2_launch(ros2env, env, tmp_path, monkeypatch, args):
    _compare(ros2env, env, tmp_path, monkeypatch, "mbrl_ros", *args)


GRAMMAR = """
launch:
- arg: {name: who, default: "a b", description: "with a space"}
- arg: {name: num, default: "5"}
- arg: {name: flag, default: "True"}
- let: {name: dir_before, value: $(dirname)}
- set_env: {name: MBRL_T_ONE, value: "$(var who)"}
- node:
    pkg: mbrl_ros
    exec: shadow_hand_sim
    name: first
    namespace: "ns/"
    args: "--x $(var who) 'q r' $(var num)tail \\\\$(var who) end"
    ros_args: "--log-level warn"
    respawn: $(var flag)
    respawn_delay: 0.5
    output: both
    env: [{name: MBRL_T_NODE, value: "$(env MBRL_T_ONE)!"}]
    remap: [{from: "in", to: "/$(var num)/y"}]
    param:
    - {name: plain, value: "5"}
    - {name: typed, value: $(var num)}
    - {name: text, value: "x$(var num)"}
    - {name: flt, value: "$(var num).5"}
    - {name: empty, value: "$(env MBRL_T_UNSET '')"}
    - {name: list, value: ["$(var num)", "$(var num)"]}
    - {name: lit, value: [1.5, 2.5]}
    - {name: esc, value: "a\\\\$b"}
    - {name: quoted, value: "$(var missing 'c d')"}
    - {name: dq, value: '$(var missing "e $(var num)")'}
    - {name: b, value: true}
    - from: $(dirname)/params.yaml
- include:
    file: $(dirname)/sub/child.launch.yaml
    arg:
    - {name: inner, value: $(var who)}
    - {name: chained, value: "$(var inner)+"}
    - {name: there, value: $(dirname)}
- node:
    pkg: mbrl_ros
    exec: state_estimator
    name: after
    args: "$(var leaked) $(var chained) $(filename) $(var dir_before) $(var there) $(var cli)"
    unless: "FALSE"
- node: {pkg: mbrl_ros, exec: mpc_planner, if: "0"}
- node: {pkg: mbrl_ros, exec: mpc_planner, namespace: "/", respawn: "yes"}
"""
GRAMMAR_CHILD = """
launch:
- arg: {name: inner}
- arg: {name: who, default: unused}
- let: {name: leaked, value: "from-$(var inner)"}
- set_env: {name: MBRL_T_ONE, value: changed}
- node:
    pkg: mbrl_ros
    exec: experiment
    name: child
    namespace: $(var inner_ns 'deep/er')
    on_exit: shutdown
    param: [{name: who, value: $(var who)}, {name: cli, value: $(var cli)}]
"""


def test_grammar_matches_ros2_launch(ros2env, env, tmp_path, monkeypatch):
    """Quoting, escapes, argument splitting, parameter types, include arguments in order,
    configurations and $(dirname) that outlive an include, set_env order, conditions."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.launch.yaml").write_text(GRAMMAR_CHILD)
    (tmp_path / "params.yaml").write_text("/**:\n  ros__parameters: {p: 1}\n")
    path = tmp_path / "grammar.launch.yaml"
    path.write_text(textwrap.dedent(GRAMMAR))
    _compare(ros2env, env, tmp_path, monkeypatch, str(path), "cli:=from cli", "num:=7")


@pytest.mark.parametrize(("text", "named"), [
    ("- node: {pkg: mbrl_ros, exec: experiment, respawn: true}", "'respawn' must be a string"),
    ("- node: {pkg: mbrl_ros, exec: experiment, respawn_delay: 2}", "respawn_delay"),
    ("- arg: {name: x, default: 5}", "'default' must be a string"),
    ("- node: {pkg: mbrl_ros, exec: experiment, prefix: x}", "'prefix'"),
    ("- node: {pkg: mbrl_ros, exec: experiment, if: 'true', unless: 'false'}", "'unless'"),
    ("- node: {pkg: mbrl_ros, exec: experiment, name: $(env MBRL_T_UNSET)}", "MBRL_T_UNSET"),
    ("- node: {pkg: mbrl_ros, exec: experiment, name: $(var  x)}", "substitution"),
    ("- node: {pkg: mbrl_ros, exec: experiment, name: a-b}", "node name"),
    ("- include: {file: child.launch.yaml}", "child.launch.yaml"),
])
def test_both_refuse(ros2env, env, tmp_path, text, named):
    """What ros2 launch refuses, ours refuses too, naming it. A relative include is relative
    to the working directory in both (here: not the launch file's folder)."""
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "child.launch.yaml").write_text("launch:\n- arg: {name: y, default: z}\n")
    path = folder / "bad.launch.yaml"
    path.write_text(f"launch:\n{text}\n")
    ours = _ours(env, tmp_path, str(path), "--show")
    assert ours.returncode == 2 and named in ours.stderr, ours.stderr
    code, recorded, log = _upstream(ros2env, env, tmp_path, str(path))
    assert code != 0 and not recorded["nodes"], log


def test_exit_code_of_a_required_node_differs_from_ros2_launch(ros2env, env, tmp_path):
    """Documented difference: when an ``on_exit: shutdown`` node fails, ros2 launch exits 0,
    ``mbrl-ros launch`` with that node's code."""
    prefix = tmp_path / "prefix"
    (prefix / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (prefix / "share/ament_index/resource_index/packages/fakepkg").touch()
    (prefix / "share/fakepkg").mkdir()
    (prefix / "lib/fakepkg").mkdir(parents=True)
    (prefix / "lib/fakepkg/fails").write_text("#!/bin/sh\nexit 3\n")
    (prefix / "lib/fakepkg/fails").chmod(0o755)
    path = tmp_path / "required.launch.yaml"
    path.write_text("launch:\n- node: {pkg: fakepkg, exec: fails, name: job, on_exit: shutdown}\n")
    theirs = subprocess.run([str(ros2env), "ros2", "launch", str(path)],
                            env={**env, "AMENT_PREFIX_PATH": str(prefix)}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert "exit code 3" in theirs.stdout + theirs.stderr and theirs.returncode == 0
    ours = subprocess.run([sys.executable, "-m", "mbrl_ros.launch.cli", "launch", str(path)],
                          env={**env, "AMENT_PREFIX_PATH": f"{prefix}{os.pathsep}{sys.prefix}"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "exit code 3" in ours.stdout and ours.returncode == 3
