"""The robot half and the learner half of the stack on two hosts, talking only over DDS.

The hosts are two network namespaces joined by a veth pair (test/helpers/netns.py), created
for this module and removed after it; the test is skipped where ``ip netns add`` is not
permitted. One launcher runs in each: ``robot.launch.yaml`` (simulator, estimator, planner,
experiment manager) on the robot host and ``learner.launch.yaml`` (trainer) on the learner
host, with separate results folders, so the only way between them is the veth. A tiny PDDM
loop runs in lockstep: random episodes, one training on the learner host, MPC episodes on
the robot host planned with the model trained there.

Discovery across the veth: every process keeps the test's ``ROS_DOMAIN_ID`` and
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and gets ``ROS_STATIC_PEERS=<the other host's
address>``, which is how ROS 2 Jazzy/Kilted reach a fixed peer without multicast. Verified
with these wheels (rmw_fastrtps_cpp 9.3 on Fast DDS 3.2): with the static peer the hosts
match and the data goes over UDP on the veth (Fast DDS took no shared-memory shortcut
between the namespaces, which share /dev/shm; the veth byte counters below would show one);
without it a talker and a listener in the two hosts did not match in 12 s. The namespaces
contain only ``lo`` and the veth, so nothing leaves the machine either way. The file takes
about 15 s.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.netns import HostPair, NetnsUnavailable
from helpers.ros import TEST_DIR
from helpers.waiting import wait_for

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.results import read_metrics

pytestmark = pytest.mark.ros

EPISODE_LENGTH = 20
RANDOM, MPC = 5, 2
RUN = "across"

OVERRIDES = f"""
/**:
  ros__parameters:
    episode_length: {EPISODE_LENGTH}
    end_at_drop: false                  # full episodes: the transport is under test
/**/dynamics_trainer:
  ros__parameters:
    ensemble:
      members: 3                        # PDDM's ensemble (3 x 2 x 250): about 1.1 MB of
      hidden: [250, 250]                # weights to carry, well above the discovery traffic
    train:
      epochs: 10
      batch_size: 64
    min_transitions: {RANDOM * EPISODE_LENGTH}
    max_val_loss: 1.0e+6                # the plumbing is under test here, not model quality
/**/mpc_planner:
  ros__parameters:
    num_samples: 100
/**/experiment:
  ros__parameters:
    random_rollouts: {RANDOM}
    iterations: 1
    rollouts_per_iteration: {MPC}
    random_rollouts_per_iteration: 0
    render_rollouts: false
    startup_timeout_s: 90.0
    episode_timeout_s: 60.0
    train_timeout_s: 60.0
"""


@dataclass
class HostRun:
    """What one host left behind: its launcher's exit code and output, its results folder."""

    code: int | None
    output: str
    runs_dir: Path


@dataclass
class Outcome:
    robot: HostRun
    learner: HostRun
    robot_veth: dict[str, int]  # bytes received / sent by the robot host during the run


@pytest.fixture(scope="module")
def hosts():
    try:
        pair = HostPair.create(f"mbrl_{os.getpid()}", ("robot", "learner"))
    except NetnsUnavailable as exc:
        pytest.skip(f"no test hosts: {exc}")
    try:
        yield pair
    finally:
        pair.remove()


def _launcher(host, peer, launch_file: str, args: list[str], folder: Path) -> subprocess.Popen:
    """``mbrl-ros launch mbrl_ros <launch_file>`` inside ``host``, finding ``peer`` by address."""
    folder.mkdir(parents=True)
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "ROS_STATIC_PEERS": peer.address, "ROS_LOG_DIR": str(folder / "log"),
           "PYTHONUNBUFFERED": "1"}
    cmd = host.command([sys.executable, "-m", "mbrl_ros.launch.cli", "launch", "mbrl_ros",
                        launch_file, *args, f"runs_dir:={folder / 'runs'}", f"run_name:={RUN}",
                        "respawn:=false"])
    with (folder / "launch.out").open("w") as out:
        return subprocess.Popen(cmd, env=env, cwd=TEST_DIR, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> int | None:
    """SIGINT (the launcher stops its nodes), then kill its process group after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def outcome(hosts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hosts")
    overrides = tmp / "overrides.yaml"
    overrides.write_text(textwrap.dedent(OVERRIDES))
    common = ["task:=baoding", "mode:=lockstep", f"overrides:={overrides}"]
    robot_host, learner_host = hosts.first, hosts.second
    before = robot_host.veth_bytes()
    learner = _launcher(learner_host, robot_host, "learner.launch.yaml", common, tmp / "learner")
    robot = None
    try:
        robot = _launcher(robot_host, learner_host, "robot.launch.yaml",
                          [*common, "experiment:=true"], tmp / "robot")
        # The robot's launcher ends with its experiment manager (the loop's budget is spent).
        wait_for(lambda: robot.poll() is not None or learner.poll() is not None, 150,
                 "the experiment on the robot host to finish")
        learner_alive = learner.poll() is None
    finally:
        codes = {"robot": _stop(robot) if robot is not None else None,
                 "learner": _stop(learner)}
        runs = {name: HostRun(code, _text(tmp / name / "launch.out"), tmp / name / "runs")
                for name, code in codes.items()}
        print(runs["robot"].output[-15000:], runs["learner"].output[-5000:])
    after = robot_host.veth_bytes()
    veth = {k: after[k] - before[k] for k in ("rx", "tx")}
    print(f"robot host's veth during the run: {veth} bytes")
    assert learner_alive, "the learner host's launcher ended before the experiment did"
    return Outcome(runs["robot"], runs["learner"], veth)


def test_the_loop_finishes_on_the_robot_host(outcome):
    assert outcome.robot.code == 0, outcome.robot.output[-3000:]
    assert "iteration 1/1 done" in outcome.robot.output
    robot_run, learner_run = outcome.robot.runs_dir / RUN, outcome.learner.runs_dir / RUN
    # Each host wrote only its own half: results on the robot, dataset and models on the learner.
    assert (robot_run / "metrics.csv").is_file()
    assert not (robot_run / "dataset").exists() and not (robot_run / "models").exists()
    assert (learner_run / "dataset").is_dir() and not (learner_run / "metrics.csv").exists()


def test_the_learner_stored_every_transition_executed_on_the_robot(outcome):
    rows = read_metrics(outcome.robot.runs_dir / RUN / "metrics.csv")
    assert [r["policy"] for r in rows] == ["random"] * RANDOM + ["mpc"] * MPC
    executed = len(rows) * EPISODE_LENGTH  # lockstep: one command and one state per step
    dataset = EpisodeDataset(outcome.learner.runs_dir / RUN / "dataset")
    assert dataset.num_transitions == executed
    stored = [dataset.episode_meta(i) for i in dataset.episode_ids]
    assert [m["episode_id"] for m in stored] == [r["episode"] for r in rows]
    assert [m["policy"] for m in stored] == ["exploration"] * RANDOM + ["mppi"] * MPC
    assert [r["transitions"] for r in rows] == [
        EPISODE_LENGTH * (i + 1) for i in range(len(rows))]


def test_the_robot_planned_with_the_model_trained_on_the_learner(outcome):
    models = sorted((outcome.learner.runs_dir / RUN / "models").glob("model_*.mbrl"))
    assert [m.name for m in models] == ["model_000001.mbrl"]
    assert "ACCEPTED as version 1" in outcome.learner.output
    assert "[dynamics_trainer]" not in outcome.robot.output
    assert "[mpc_planner]" in outcome.robot.output
    assert "model version 1 accepted" in outcome.robot.output
    mpc = [r for r in read_metrics(outcome.robot.runs_dir / RUN / "metrics.csv")
           if r["policy"] == "mpc"]
    assert [r["model_version"] for r in mpc] == [1] * MPC
    assert all(math.isfinite(r["plan_p50_ms"]) for r in mpc)  # planned, not explored


def test_transitions_and_weights_crossed_the_veth(outcome):
    """The model came to the robot host over the veth, and the transitions went the other
    way. Without any model the robot host receives about 0.4 MB in this run (discovery,
    services, metrics); with it about 1.7 MB (the weights are 1.07 MB)."""
    weights = (outcome.learner.runs_dir / RUN / "models" / "model_000001.mbrl").stat().st_size
    assert weights > 1_000_000
    assert outcome.robot_veth["rx"] > weights, outcome.robot_veth
    dataset = EpisodeDataset(outcome.learner.runs_dir / RUN / "dataset")
    state_dim, action_dim = dataset.dims
    # Per step at least the state (TaskState) and the action and joint targets (PlannedAction)
    # in float64; the planner's plan, names, stamps and /clock come on top.
    numbers = dataset.num_transitions * (state_dim + 2 * action_dim) * 8
    assert outcome.robot_veth["tx"] > numbers, outcome.robot_veth
