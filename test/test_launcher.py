"""The ``mbrl-ros launch`` runner: the launch-YAML subset, and real processes under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from helpers.processes import OutputProcess
from helpers.waiting import wait_for

from mbrl_ros.launch import launch_file
from mbrl_ros.launch.launch_file import LaunchFileError

TALKER = """
import sys, rclpy
from rclpy.node import Node
from std_msgs.msg import String
rclpy.init(args=sys.argv)
node = Node("talker")
greeting = node.declare_parameter("greeting", "hello").value
rate = node.declare_parameter("rate", 1.0).value
pub = node.create_publisher(String, "chatter", 10)
node.create_timer(0.05, lambda: pub.publish(String(data=greeting)))
print(f"talker name={node.get_name()} ns={node.get_namespace()} rate={rate!r}", flush=True)
try:
    rclpy.spin(node)
except BaseException:
    pass
print("talker clean exit", flush=True)
"""
LISTENER = """
import sys, rclpy
from rclpy.node import Node
from std_msgs.msg import String
rclpy.init(args=sys.argv)
node = Node("listener")
seen = set()
def on_msg(msg):
    if msg.data not in seen:
        seen.add(msg.data)
        print(f"heard: {msg.data}", flush=True)
node.create_subscription(String, "heard", on_msg, 10)
try:
    rclpy.spin(node)
except BaseException:
    pass
print("listener clean exit", flush=True)
"""
QUITTER = """
print("quitter ran", flush=True)
"""
LAUNCH = """
launch:
- arg: {name: greeting, default: hello}
- arg: {name: with_listener, default: "true"}
- let: {name: rate, value: "2.5"}
- node:
    pkg: fakepkg
    exec: talker
    name: speaker
    namespace: demo
    output: screen
    param:
    - from: $(find-pkg-share fakepkg)/config/talker.yaml
    - {name: greeting, value: $(var greeting)}
    - {name: rate, value: $(var rate)}
- node:
    pkg: fakepkg
    exec: listener
    name: ear
    namespace: demo
    output: screen
    if: $(var with_listener)
    remap:
    - {from: heard, to: chatter}
"""


@pytest.fixture()
def fake_prefix(tmp_path, monkeypatch) -> Path:
    """An install prefix holding a package 'fakepkg' laid out as ament installs it."""
    prefix = tmp_path / "prefix"
    (prefix / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (prefix / "share/ament_index/resource_index/packages/fakepkg").touch()
    for sub in ("lib/fakepkg", "share/fakepkg/launch", "share/fakepkg/config"):
        (prefix / sub).mkdir(parents=True)
    for name, body in (("talker", TALKER), ("listener", LISTENER), ("quitter", QUITTER)):
        exe = prefix / "lib/fakepkg" / name
        exe.write_text(f"#!{sys.executable}\n{body}")
        exe.chmod(0o755)
    (prefix / "share/fakepkg/launch/two.launch.yaml").write_text(LAUNCH)
    (prefix / "share/fakepkg/config/talker.yaml").write_text(
        "/**:\n  ros__parameters:\n    greeting: from-file\n    rate: 1.0\n")
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{prefix}{os.pathsep}{sys.prefix}")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "log"))
    return prefix


def _write(tmp_path: Path, text: str, name: str = "x.launch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


class Launcher(OutputProcess):
    """``mbrl-ros launch`` as a real process, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        super().__init__([sys.executable, "-m", "mbrl_ros.launch.cli", "launch", *args],
                         cwd=Path(__file__).parent)

    def child_pids(self) -> list[int]:
        return [int(line.rsplit("pid ", 1)[1]) for line in self.lines if "process started" in line]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ---- the launch-file subset --------------------------------------------------------------

def test_arguments_defaults_overrides_and_typed_params(fake_prefix):
    path = fake_prefix / "share/fakepkg/launch/two.launch.yaml"
    plan = launch_file.load(path, {"greeting": "hola", "with_listener": "false"})
    assert [n.label for n in plan.nodes] == ["speaker"]
    talker = plan.nodes[0]
    assert talker.params == {"greeting": "hola", "rate": 2.5}
    assert talker.param_files == [str(fake_prefix / "share/fakepkg/config/talker.yaml")]
    assert talker.namespace == "/demo" and talker.output == "screen"
    full = launch_file.load(path, {"bogus": "1"})
    assert [n.label for n in full.nodes] == ["speaker", "ear"]
    assert full.nodes[1].remaps == [("heard", "chatter")]
    assert full.unused_arguments == ["bogus"]


def test_package_relative_launch_path(fake_prefix):
    path = launch_file.resolve_path("fakepkg two.launch.yaml")
    assert path == fake_prefix / "share/fakepkg/launch/two.launch.yaml"


def test_include_passes_arguments(tmp_path, fake_prefix):
    _write(tmp_path, """
        launch:
        - arg: {name: who}
        - node: {pkg: fakepkg, exec: talker, name: $(var who), respawn: "true", respawn_delay: 0.5}
        """, "child.launch.yaml")
    top = _write(tmp_path, """
        launch:
        - include:
            file: $(dirname)/child.launch.yaml
            arg: [{name: who, value: first}]
        - include:
            file: $(dirname)/child.launch.yaml
            arg: [{name: who, value: second}]
        - set_env: {name: MBRL_TEST_ENV, value: $(env HOME)}
        """)
    plan = launch_file.load(top)
    assert [n.name for n in plan.nodes] == ["first", "second"]
    assert plan.nodes[0].respawn is True and plan.nodes[0].respawn_delay == 0.5
    assert plan.env == {"MBRL_TEST_ENV": os.environ["HOME"]}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("launch:\n- group: []\n", "'group'"),
        ("launch:\n- node: {pkg: fakepkg, exec: talker, launch-prefix: gdb}\n", "launch-prefix"),
        ("launch:\n- node: {pkg: fakepkg, exec: $(eval 1+1)}\n", "'$(eval ...)'"),
        ("launch:\n- arg: {name: needed}\n", "argument 'needed' is required"),
        ("launch:\n- node: {pkg: fakepkg, exec: talker, output: loud}\n", "output must be"),
        ("launch:\n- node: {pkg: fakepkg, exec: talker, if: maybe}\n", "true/false"),
        ("launch:\n- node: {pkg: nopkg, exec: x, name: $(find-pkg-share nopkg)}\n", "'nopkg'"),
        ("nodes: []\n", "top-level 'launch:'"),
        ("launch:\n- node: {pkg: fakepkg, exec: $(var undefined)}\n", "'undefined'"),
    ],
)
def test_outside_the_subset_fails_naming_the_feature(tmp_path, fake_prefix, text, named):
    with pytest.raises(LaunchFileError, match=named.replace("$", r"\$").replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.").replace("+", r"\+")):
        launch_file.load(_write(tmp_path, text))


# ---- real processes ------------------------------------------------------------------------

def test_two_nodes_args_params_and_clean_sigint(fake_prefix):
    run = Launcher("fakepkg", "two.launch.yaml", "greeting:=hola")
    try:
        wait_for(lambda: run.saw("[ear] heard: hola"), 30, "the listener to hear the talker")
        assert run.saw("[speaker] talker name=speaker ns=/demo rate=2.5")
        pids = run.child_pids()
        assert len(pids) == 2
        run.proc.send_signal(signal.SIGINT)
        assert run.finish() == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert run.saw("[speaker] talker clean exit") and run.saw("[ear] listener clean exit")
    assert all(_gone(pid) for pid in pids)


def test_children_die_with_a_killed_launcher(fake_prefix):
    run = Launcher("fakepkg", "two.launch.yaml")
    try:
        wait_for(lambda: len(run.child_pids()) == 2, 30, "both nodes to start")
        pids = run.child_pids()
        run.proc.kill()
        run.finish()
        wait_for(lambda: all(_gone(p) for p in pids), 10, "orphaned nodes to exit")
    finally:
        for pid in run.child_pids():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_respawn_and_exit_with(tmp_path, fake_prefix):
    path = _write(tmp_path, """
        launch:
        - node: {pkg: fakepkg, exec: quitter, name: again, output: screen,
                 respawn: "true", respawn_delay: 0.1}
        - node: {pkg: fakepkg, exec: talker, name: main, output: both}
        """)
    run = Launcher(str(path), "--exit-with", "main")
    try:
        wait_for(lambda: run.saw("process started [again-3]"), 30, "two respawns")
        wait_for(lambda: run.saw("[main] talker name=main"), 30, "the main node")
        main_pid = next(int(line.rsplit("pid ", 1)[1]) for line in run.lines
                        if "process started [main-1]" in line)
        os.kill(main_pid, signal.SIGINT)
        assert run.finish() == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert run.saw("process [main] finished cleanly")
    logs = list((tmp_path / "log").glob("mbrl_ros_launch_*/main.log"))
    assert logs and "talker name=main" in logs[0].read_text()


def test_on_exit_shutdown_stops_everything_with_that_nodes_code(tmp_path, fake_prefix):
    path = _write(tmp_path, """
        launch:
        - node: {pkg: fakepkg, exec: talker, name: stays, output: screen}
        - node: {pkg: fakepkg, exec: quitter, name: job, output: screen, on_exit: shutdown}
        """)
    run = Launcher(str(path))
    try:
        assert run.finish() == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert run.saw("quitter ran") and run.saw("process [job] finished cleanly")


def test_unknown_file_is_a_clean_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mbrl_ros.launch.cli", "launch", str(tmp_path / "none.yaml")],
        capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent)
    assert result.returncode == 2
    assert "launch file not found" in result.stderr
