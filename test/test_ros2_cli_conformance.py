"""The running stack as a ROS 2 user sees it: started by the real ``ros2 launch``, inspected
with the real ``ros2`` CLI (ROS 2 Jazzy, from the kit beside the project: conftest.py's
``ros2env`` fixture, helpers/ros2_upstream.py; every test that needs it skips, naming the
reason, where ``../shared/tools/ros2-upstream`` is absent).

- ``sim.launch.yaml``: the simulator's topics and types (``ros2 topic list -t``, ``ros2 node
  info``) are those of docs/node_graph.md, and ``ros2 topic hz`` measures joint_states at the
  configured control rate;
- ``demo.launch.yaml`` (``make demo``'s stack, its budget as is; stopped once checked): every
  documented topic with its type and no undocumented one, each node's endpoints as its row of
  the table, the trainer's ``~/train`` action as the text under it says (``ros2 node info``'s
  action servers and clients; ``ros2 action list -t`` / ``ros2 action info`` where the kit
  has ``ros2action``), a planner parameter's description and range (``ros2 param
  describe``), a valid ``ros2 param set`` accepted, an out-of-range or read-only one
  refused, ``get_status`` answered with the node's fully qualified name;
- ``baoding.launch.yaml`` (the stack demo.launch.yaml includes) with a tiny budget in an
  overrides file runs to completion under ``ros2 launch`` (the experiment manager's
  ``on_exit: shutdown`` ends it) and writes its results.

Every process runs in this test run's random ROS_DOMAIN_ID (conftest.py) with loopback
discovery; graph verbs use ``--no-daemon --spin-time 5`` (the kit's README), so no daemon is
left behind; launched process groups are stopped with SIGINT, then killed, and a test fails
when a process outlives that.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import yaml
from helpers.processes import OutputProcess
from helpers.ros2_upstream import upstream_env
from helpers.waiting import wait_for

from mbrl_ros.results import read_metrics

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
SHARE = Path(sys.prefix) / "share" / "mbrl_ros"
NODE_GRAPH = REPO / "docs" / "node_graph.md"
NODES = ("shadow_hand_sim", "state_estimator", "dynamics_trainer", "mpc_planner", "experiment")
NS = "/hand"  # the launch files' namespace (docs/node_graph.md: every node runs in `hand`)
GRAPH = ("--no-daemon", "--spin-time", "5")  # the kit's README: discovery without a daemon
DISCOVERY_S = 60.0  # a graph query that missed an endpoint (a busy machine) is run again

# The message type of every topic docs/node_graph.md's table names (full names in the launch
# files' namespace). The table gives the short name for most of them; where it gives none it
# is the type the node's code publishes. test_the_table_and_these_types_agree keeps both in
# step: a topic added to or removed from the table must be added or removed here.
TOPIC_TYPES = {
    "/clock": "rosgraph_msgs/msg/Clock",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    f"{NS}/joint_commands": "std_msgs/msg/Float64MultiArray",
    f"{NS}/joint_states": "sensor_msgs/msg/JointState",
    f"{NS}/object_states": "mbrl_ros/msg/ObjectStates",
    f"{NS}/scene_markers": "visualization_msgs/msg/MarkerArray",
    f"{NS}/goal_schedule": "mbrl_ros/msg/GoalSchedule",
    f"{NS}/task_state": "mbrl_ros/msg/TaskState",
    f"{NS}/planned_action": "mbrl_ros/msg/PlannedAction",
    f"{NS}/model_update": "mbrl_ros/msg/ModelUpdate",
    f"{NS}/state_estimator/latency_ms": "std_msgs/msg/Float64",
    f"{NS}/dynamics_trainer/metrics": "mbrl_ros/msg/TrainingMetrics",
    **{f"{NS}/dynamics_trainer/{name}": "std_msgs/msg/Float64" for name in (
        "train_loss", "val_loss", "val_one_step_mse", "val_disagreement", "num_transitions")},
    **{f"{NS}/mpc_planner/{name}": "std_msgs/msg/Float64" for name in (
        "latency_ms", "deadline_misses", "predicted_return", "disagreement", "model_version")},
    f"{NS}/mpc_planner/plan_markers": "visualization_msgs/msg/MarkerArray",
    **{f"{NS}/experiment/{name}": "std_msgs/msg/Float64" for name in (
        "score", "return", "tracking_error")},
}
SERVICE_TYPES = {
    f"{NS}/reset_episode": "mbrl_ros/srv/ResetEpisode",
    f"{NS}/set_goal": "mbrl_ros/srv/SetGoal",
    f"{NS}/get_goal": "mbrl_ros/srv/GetGoal",
    f"{NS}/state_estimator/reset": "mbrl_ros/srv/ResetEpisode",
    f"{NS}/dynamics_trainer/store_episode": "mbrl_ros/srv/StoreEpisode",
    f"{NS}/dynamics_trainer/get_status": "mbrl_ros/srv/GetStatus",
    f"{NS}/mpc_planner/get_status": "mbrl_ros/srv/GetStatus",
}
# The actions, as the text under docs/node_graph.md's table names them ("Action: `node`
# serves `~/name` (`type`)"), and the nodes that serve (ACTION_SERVERS) and use them.
ACTION_TYPES = {f"{NS}/dynamics_trainer/train": "mbrl_ros/action/TrainModel"}
ACTION_SERVERS = {"dynamics_trainer": (f"{NS}/dynamics_trainer/train",)}
ACTION_CLIENTS = {"experiment": (f"{NS}/dynamics_trainer/train",)}
# What every rclpy node has besides its own graph: not in the table.
STANDARD_TOPICS = {"/parameter_events", "/rosout"}
STANDARD_SERVICES = ("describe_parameters", "get_parameter_types", "get_parameters",
                     "list_parameters", "set_parameters", "set_parameters_atomically",
                     "get_type_description")
CLOCK_SUBSCRIPTION = "/clock"  # use_sim_time: true (lockstep): rclpy's time source listens

# sim.launch.yaml runs the simulator in real time; its control step is frame_skip physics
# steps of the scenes' MuJoCo timestep (the frame_skip parameter's description: 0.0025 s).
PHYSICS_STEP_S = 0.0025
RATE_BAND = (0.5, 1.5)  # generous: the machine may be busy with other work

# ---- docs/node_graph.md --------------------------------------------------------------------

_ROW = re.compile(r"^\| `(\w+)` \|([^|]*)\|([^|]*)\|([^|]*)\|\s*$")
_ITEM = re.compile(r"`([^`]+)`(?:\s*\(([^)]*)\))?")
_ACTION = re.compile(r"`(\w+)` serves `([^`]+)` \(`([^`]+)`\)")


def documented_graph() -> dict[str, dict[str, dict[str, str]]]:
    """The table of docs/node_graph.md: node -> {"subscribes"|"publishes"|"services": {full
    name: what the parentheses after it say up to a colon, e.g. "Float64", "lockstep", ""}}."""
    graph = {}
    for line in NODE_GRAPH.read_text().splitlines():
        row = _ROW.match(line)
        if row is None:
            continue
        node = row.group(1)
        graph[node] = {}
        for column, cell in zip(("subscribes", "publishes", "services"), row.groups()[1:],
                                strict=True):
            graph[node][column] = {
                _resolve(m.group(1), node): (m.group(2) or "").split(":")[0].strip()
                for m in _ITEM.finditer(cell)}
    assert set(graph) == set(NODES), f"{NODE_GRAPH}: table rows {list(graph)}"
    return graph


def documented_actions() -> dict[str, str]:
    """The actions the text of docs/node_graph.md names: full name -> type."""
    text = " ".join(NODE_GRAPH.read_text().split())
    return {_resolve(name, node): kind for node, name, kind in _ACTION.findall(text)}


def _resolve(name: str, node: str) -> str:
    if name.startswith("~/"):
        return f"{NS}/{node}/{name[2:]}"
    return name if name.startswith("/") else f"{NS}/{name}"


def _lockstep_only(note: str) -> bool:
    return note == "lockstep"


def _expected_endpoints(node: str, lockstep: bool) -> dict[str, dict[str, str]]:
    """``ros2 node info``'s sections as the table's row says them, with types."""
    row = documented_graph()[node]
    keep = {k for k, note in row["publishes"].items() if lockstep or not _lockstep_only(note)}
    return {"Subscribers": {k: TOPIC_TYPES[k] for k in row["subscribes"]},
            "Publishers": {k: TOPIC_TYPES[k] for k in keep},
            "Service Servers": {k: SERVICE_TYPES[k] for k in row["services"]},
            "Action Servers": {k: ACTION_TYPES[k] for k in ACTION_SERVERS.get(node, ())},
            "Action Clients": {k: ACTION_TYPES[k] for k in ACTION_CLIENTS.get(node, ())}}


def test_the_table_and_these_types_agree():
    graph = documented_graph()
    topics = {name: note for row in graph.values() for column in ("subscribes", "publishes")
              for name, note in row[column].items()}
    services = {name: note for row in graph.values() for name, note in row["services"].items()}
    assert set(topics) == set(TOPIC_TYPES)
    assert set(services) == set(SERVICE_TYPES)
    assert documented_actions() == ACTION_TYPES
    assert not set(services) & set(ACTION_TYPES), "an action listed as a service"
    for names, types in ((topics, TOPIC_TYPES), (services, SERVICE_TYPES)):
        for name, note in names.items():
            if note[:1].isupper():  # a type, e.g. (Float64); else a note, e.g. (lockstep)
                assert types[name].rsplit("/", 1)[1] == note, name


# ---- processes -----------------------------------------------------------------------------

# A process started by a non-interactive shell's background job inherits SIGINT ignored;
# ros2 launch must see Ctrl-C (SIGINT) to shut its nodes down, so it gets the default back.
_WITH_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "os.execv(sys.argv[1], sys.argv[1:])")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Running(OutputProcess):
    """``ros2env ARGS`` (``ros2 launch``, ``ros2 topic hz``) as a process group of its own,
    its output (stdout and stderr) collected line by line."""

    def __init__(self, ros2env: Path, env: dict[str, str], *args: str) -> None:
        self.args = args
        super().__init__([sys.executable, "-c", _WITH_SIGINT, str(ros2env), *args],
                         env=env, cwd=env["TMPDIR"], start_new_session=True)

    def wait_for_line(self, pattern: str, timeout: float, what: str) -> re.Match:
        """The first output line matching ``pattern``; fails if the process ends first."""
        regex = re.compile(pattern)

        def found():
            hit = next((m for line in list(self.lines) if (m := regex.search(line))), None)
            if hit is None and self.proc.poll() is not None:
                raise AssertionError(f"{' '.join(self.args)} ended (code "
                                     f"{self.proc.returncode}) before {what}:\n{self.tail()}")
            return hit

        try:
            return wait_for(found, timeout, what, poll=0.1)
        except TimeoutError as error:
            raise AssertionError(f"{error}; output so far:\n{self.tail()}") from None

    def _members(self) -> list[psutil.Process]:
        """Its descendants and whatever else is in its process group (orphans included)."""
        found = {}
        try:
            found.update((p.pid, p) for p in psutil.Process(self.proc.pid).children(True))
        except psutil.NoSuchProcess:
            pass
        for proc in psutil.process_iter():
            try:
                if proc.pid != self.proc.pid and os.getpgid(proc.pid) == self.proc.pid:
                    found.setdefault(proc.pid, proc)
            except (OSError, psutil.Error):
                continue
        return list(found.values())

    def stop(self, timeout: float = 40.0) -> list[str]:
        """Ctrl-C (SIGINT), as a user stops ``ros2 launch``; whatever has not ended after
        ``timeout`` is killed. Returns what had to be killed (empty: a clean shutdown)."""
        family = self._members()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        family += self._members()
        try:
            wait_for(lambda: not any(map(_alive, family)),
                     max(1.0, deadline - time.monotonic()), "the launched processes to end")
        except TimeoutError:
            pass
        killed = []
        for proc in family:
            if _alive(proc):
                killed.append(" ".join(proc.cmdline()[:3]) + f" (pid {proc.pid})")
                proc.kill()
        if self.proc.poll() is None:
            killed.append(f"ros2 {' '.join(self.args[1:3])} (pid {self.proc.pid})")
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        return killed


def ros2(ros2env: Path, env: dict[str, str], *args: str,
         timeout: float = 90.0) -> subprocess.CompletedProcess:
    """One ``ros2`` command, its output captured (killed after ``timeout``)."""
    return subprocess.run([str(ros2env), "ros2", *args], env=env, cwd=env["TMPDIR"],
                          capture_output=True, text=True, timeout=timeout)


def until(run: Callable[[], subprocess.CompletedProcess],
          done: Callable[[subprocess.CompletedProcess], bool]) -> subprocess.CompletedProcess:
    """``run`` again while ``done`` says no, for up to DISCOVERY_S: one ``--spin-time`` can
    miss an endpoint on a busy machine. The last result, for the test to assert on."""
    deadline = time.monotonic() + DISCOVERY_S
    while True:
        result = run()
        if done(result) or time.monotonic() > deadline:
            return result


def in_parallel(*calls: Callable[[], object]) -> list:
    """Independent CLI calls at once (each spends its --spin-time waiting)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


# ---- what the CLI prints -------------------------------------------------------------------

def topic_list(stdout: str) -> dict[str, list[str]]:
    """``ros2 topic list -t``: name -> types."""
    out = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"(\S+) \[(.*)\]", line.strip())
        if match:
            out[match.group(1)] = match.group(2).split(", ")
    return out


def node_info(stdout: str, node: str) -> dict[str, dict[str, str]]:
    """``ros2 node info``: section -> {name: type}, without what every rclpy node has
    (the sections of topics, services and actions; hidden ones, e.g. an action's
    ``_action/*`` services, are not listed)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in stdout.splitlines():
        if re.fullmatch(r"  \S.*:", line):
            current = sections.setdefault(line.strip()[:-1], {})
        elif line.startswith("    ") and current is not None:
            name, kind = line.strip().split(": ", 1)
            current[name] = kind
    standard = {f"{node}/{name}" for name in STANDARD_SERVICES}
    for section in ("Subscribers", "Publishers"):
        for name in STANDARD_TOPICS:
            sections.get(section, {}).pop(name, None)
    sections.get("Subscribers", {}).pop(CLOCK_SUBSCRIPTION, None)
    for name in standard:
        sections.get("Service Servers", {}).pop(name, None)
    return {k: sections.get(k, {}) for k in ("Subscribers", "Publishers", "Service Servers",
                                             "Action Servers", "Action Clients")}


def full_windows(lines: list[str], window: int) -> list[float]:
    """``ros2 topic hz --window N``: the average rates reported over a full window."""
    rates = []
    for rate_line, stats_line in itertools.pairwise(lines):
        rate = re.match(r"average rate: ([0-9.]+)", rate_line)
        if rate and re.search(rf"window: {window}\b", stats_line):
            rates.append(float(rate.group(1)))
    return rates


def status_node(stdout: str) -> str | None:
    """The ``node`` field of a ``ros2 service call ... GetStatus`` response."""
    match = re.search(r"GetStatus_Response\(node='([^']*)'", stdout)
    return match.group(1) if match else None


# ---- the simulator alone -------------------------------------------------------------------

def test_sim_launch_graph_and_joint_states_rate(ros2env, tmp_path):
    env = upstream_env(tmp_path)
    sim = f"{NS}/shadow_hand_sim"
    launch = Running(ros2env, env, "ros2", "launch", "mbrl_ros", "sim.launch.yaml")
    hz = None
    try:
        launch.wait_for_line(r"\[hand\.shadow_hand_sim\]: simulating '\w+' in realtime mode",
                             120, "the simulator to start")
        window = 20
        hz = Running(ros2env, env, "ros2", "topic", "hz", f"{NS}/joint_states",
                     "--window", str(window), "--spin-time", "5")
        expected = _expected_endpoints("shadow_hand_sim", lockstep=False)

        def topics():
            return until(lambda: ros2(ros2env, env, "topic", "list", "-t", *GRAPH),
                         lambda r: {**expected["Subscribers"], **expected["Publishers"]}.keys()
                         <= topic_list(r.stdout).keys())

        def info():
            return until(lambda: ros2(ros2env, env, "node", "info", sim, *GRAPH),
                         lambda r: node_info(r.stdout, sim) == expected)

        listed, described = in_parallel(topics, info)
        assert listed.returncode == 0, listed.stderr
        graph = topic_list(listed.stdout)
        for name in {**expected["Subscribers"], **expected["Publishers"]}:
            assert graph.get(name) == [TOPIC_TYPES[name]], (name, listed.stdout)
        assert "/clock" not in graph  # documented as lockstep only
        assert described.returncode == 0, described.stderr
        assert node_info(described.stdout, sim) == expected, described.stdout

        config = yaml.safe_load((SHARE / "config" / "sim.yaml").read_text())
        rate = 1.0 / (config["/**/shadow_hand_sim"]["ros__parameters"]["frame_skip"]
                      * PHYSICS_STEP_S)
        try:
            wait_for(lambda: full_windows(list(hz.lines), window), 60,
                     "ros2 topic hz to report a full window", poll=0.1)
        except TimeoutError as error:
            raise AssertionError(f"{error}:\n" + "\n".join(hz.lines[-20:])) from None
        measured = full_windows(list(hz.lines), window)[0]
        assert RATE_BAND[0] * rate <= measured <= RATE_BAND[1] * rate, (measured, rate)
    finally:
        left = hz.stop(10) if hz is not None else []
        left += launch.stop()
    assert not left, f"killed after SIGINT: {left}"
    assert "process has finished cleanly" in launch.tail(), launch.tail()


# ---- the whole stack, as `make demo` runs it -----------------------------------------------

@pytest.fixture(scope="class")
def demo(ros2env, tmp_path_factory):
    """demo.launch.yaml under ros2 launch, results in a temporary runs_dir (an argument its
    included files declare), up once its first episode is done; stopped after the class's
    tests (before any other stack starts: two stacks in one domain would talk to each other)."""
    folder = tmp_path_factory.mktemp("demo")
    env = upstream_env(folder)
    launch = Running(ros2env, env, "ros2", "launch", "mbrl_ros", "demo.launch.yaml",
                     f"runs_dir:={folder / 'runs'}")
    try:
        launch.wait_for_line(r"\[hand\.experiment\]: \[1/\d+\] ", 180,
                             "the demo's first episode")
        yield ros2env, env, launch
        assert launch.proc.poll() is None, f"the demo ended during the checks:\n{launch.tail()}"
    finally:
        left = launch.stop()
    assert not left, f"killed after SIGINT: {left}"
    assert "Traceback" not in "\n".join(launch.lines), launch.tail(200)


class TestDemoStack:
    """Checks on one running demo stack."""

    def test_graph_is_the_documented_one(self, demo):
        ros2env, env, _ = demo
        expected = {node: _expected_endpoints(node, lockstep=True) for node in NODES}

        def topics():
            return until(lambda: ros2(ros2env, env, "topic", "list", "-t", *GRAPH),
                         lambda r: set(TOPIC_TYPES) <= set(topic_list(r.stdout)))

        def info(node):
            name = f"{NS}/{node}"
            return lambda: until(lambda: ros2(ros2env, env, "node", "info", name, *GRAPH),
                                 lambda r: node_info(r.stdout, name) == expected[node])

        def nodes():
            return until(lambda: ros2(ros2env, env, "node", "list", *GRAPH),
                         lambda r: len(r.stdout.split()) >= len(NODES))

        listed, names, *infos = in_parallel(topics, nodes, *map(info, NODES))
        graph = topic_list(listed.stdout)
        for name, kind in TOPIC_TYPES.items():
            assert graph.get(name) == [kind], (name, listed.stdout)
        undocumented = {n for n in graph if n.startswith(f"{NS}/")} - set(TOPIC_TYPES)
        assert not undocumented, f"topics not in {NODE_GRAPH.name}: {sorted(undocumented)}"
        assert sorted(names.stdout.split()) == sorted(f"{NS}/{node}" for node in NODES)
        for node, result in zip(NODES, infos, strict=True):
            assert node_info(result.stdout, f"{NS}/{node}") == expected[node], result.stdout

    def test_train_action_listed_and_described(self, ros2env, tmp_path, request):
        """``ros2 action list -t`` / ``ros2 action info``: the trainer's ``~/train`` with its
        type, served by the trainer, used by the experiment manager. (These verbs take no
        ``--no-daemon --spin-time``: they always query directly, for 0.5 s; ``until`` asks
        again.)"""
        probe = ros2(ros2env, upstream_env(tmp_path), "action", "-h")
        if probe.returncode != 0:  # ros2cli: "invalid choice: 'action'"
            pytest.skip("the upstream kit (../shared/tools/ros2-upstream) has no ros2action, "
                        "so no `ros2 action` verb; the action is checked through `ros2 node "
                        "info` (test_graph_is_the_documented_one)")
        ros2env, env, _ = request.getfixturevalue("demo")
        name = f"{NS}/dynamics_trainer/train"
        listed = until(lambda: ros2(ros2env, env, "action", "list", "-t"),
                       lambda r: name in topic_list(r.stdout))
        assert listed.returncode == 0, listed.stderr
        actions = topic_list(listed.stdout)  # the same "name [type]" lines as topic list -t
        assert {k: v for k, v in actions.items() if k.startswith(f"{NS}/")} == {
            k: [v] for k, v in ACTION_TYPES.items()}, listed.stdout

        def described(r):
            return (f"Action servers: {len(ACTION_SERVERS)}" in r.stdout
                    and f"Action clients: {len(ACTION_CLIENTS)}" in r.stdout)

        info = until(lambda: ros2(ros2env, env, "action", "info", name), described)
        assert info.returncode == 0, info.stderr
        lines = [line.strip() for line in info.stdout.splitlines()]
        assert f"Action: {name}" in lines, info.stdout
        assert described(info), info.stdout
        for node in (*ACTION_SERVERS, *ACTION_CLIENTS):
            assert f"{NS}/{node}" in lines, (node, info.stdout)

    def test_planner_parameter_described_set_and_refused(self, demo):
        ros2env, env, _ = demo
        from mbrl_ros.nodes.planner_params import PARAMS

        planner = f"{NS}/mpc_planner"
        sigma = next(p for p in PARAMS if p.name == "sigma")
        value, too_big = 0.45, sigma.high * 10  # demo.yaml sets 0.5

        def param(*args):
            return lambda: ros2(ros2env, env, "param", *args, *GRAPH)

        # At once: a refused set changes nothing, so the outcome is the same in any order.
        described, accepted, refused, read_only = in_parallel(
            param("describe", planner, "sigma"), param("set", planner, "sigma", str(value)),
            param("set", planner, "sigma", str(too_big)),
            param("set", planner, "mode", "realtime"))
        assert described.returncode == 0, described.stderr
        assert [line.strip() for line in described.stdout.splitlines()] == [
            "Parameter name: sigma", "Type: double", f"Description: {sigma.description}",
            "Constraints:", f"Min value: {sigma.low}", f"Max value: {sigma.high}"]
        assert accepted.stdout.strip() == "Set parameter successful", accepted.stderr
        # ros2 param set exits 0 either way (upstream); a refusal is its message on stderr
        assert refused.stderr.startswith("Setting parameter failed"), refused.stdout
        assert "out of range" in refused.stderr and str(sigma.high) in refused.stderr
        assert read_only.stderr.startswith("Setting parameter failed"), read_only.stdout
        assert "read-only" in read_only.stderr

        now_sigma, now_mode = in_parallel(param("get", planner, "sigma"),
                                          param("get", planner, "mode"))
        assert now_sigma.stdout.strip() == f"Double value is: {value}", now_sigma.stderr
        assert now_mode.stdout.strip() == "String value is: lockstep", now_mode.stderr

    def test_get_status_answers_with_the_fully_qualified_name(self, demo):
        ros2env, env, _ = demo

        def call(node):
            return lambda: ros2(ros2env, env, "service", "call", f"{NS}/{node}/get_status",
                                "mbrl_ros/srv/GetStatus", timeout=60)

        answers = in_parallel(*map(call, ("mpc_planner", "dynamics_trainer")))
        for node, answer in zip(("mpc_planner", "dynamics_trainer"), answers, strict=True):
            assert answer.returncode == 0, answer.stderr
            assert status_node(answer.stdout) == f"{NS}/{node}", answer.stdout
        transitions = re.search(r"num_transitions=(\d+)", answers[1].stdout)
        assert transitions and int(transitions.group(1)) > 0, answers[1].stdout  # it records


# ---- a tiny budget to the end --------------------------------------------------------------

RANDOM_EPISODES = 4
TINY = f"""
/**:
  ros__parameters:
    episode_length: 20
    baoding:
      period: 100000                    # targets that (almost) stand still
/**/dynamics_trainer:
  ros__parameters:
    min_transitions: 20
    max_val_loss: 10.0                  # a bound for broken models, not for 4 episodes
    ensemble:
      members: 2
      hidden: [32, 32]
    train:
      epochs: 3
      batch_size: 64
/**/mpc_planner:
  ros__parameters:
    num_samples: 50
/**/experiment:
  ros__parameters:
    random_rollouts: {RANDOM_EPISODES}
    iterations: 1
    rollouts_per_iteration: 1
    random_rollouts_per_iteration: 0
    render_rollouts: false
"""


def test_tiny_budget_runs_to_completion_under_ros2_launch(ros2env, tmp_path):
    env = upstream_env(tmp_path)
    overrides = tmp_path / "tiny.yaml"
    overrides.write_text(textwrap.dedent(TINY))
    runs = tmp_path / "runs"
    launch = Running(ros2env, env, "ros2", "launch", "mbrl_ros", "baoding.launch.yaml",
                     f"overrides:={overrides}", f"runs_dir:={runs}", "run_name:=tiny")
    try:
        launch.wait_for_line(r"\[launch\]: process\[experiment-\d+\] was required: shutting "
                             r"down launched system", 300, "the run to end")
        wait_for(lambda: launch.proc.poll() is not None, 60, "ros2 launch to exit")
    finally:
        left = launch.stop()
    output = "\n".join(launch.lines)
    assert not left, f"outlived ros2 launch: {left}"
    assert launch.proc.returncode == 0, launch.tail()
    assert "Traceback" not in output and "died" not in output, launch.tail(200)
    assert "iteration 1/1 done" in output
    for node in NODES:
        assert re.search(rf"\[{node}-\d+\]: process has finished cleanly", output), node
    run = runs / "tiny"
    for name in ("metrics.csv", "learning_curve.png", "config.yaml"):
        assert (run / name).is_file(), name
    rows = read_metrics(run / "metrics.csv")
    policies = [r["policy"] for r in rows]
    assert policies[-1] == "mpc" and policies.count("mpc") == 1, policies
    assert policies.count("random") >= RANDOM_EPISODES, policies  # more if too few steps
    assert rows[-1]["model_version"] == 1
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["mpc_planner"]["num_samples"] == 50  # the overrides file was applied
