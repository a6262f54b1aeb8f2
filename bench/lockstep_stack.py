"""The simulator, state estimator and MPC planner as real node processes in lockstep, driven
episode by episode the way the experiment manager drives them (docs/node_graph.md).

Used by ``bench_sim.py`` to measure the steps per second of the whole stack and where a
lockstep step's time goes. Every node gets the stack's own parameter files (``config/<node>
.yaml``, ``baoding.yaml``, ``mode_lockstep.yaml`` from the installed share), runs in
namespace ``/hand`` on a random ROS domain of its own on loopback, and is stopped (SIGINT,
then SIGKILL) when the ``with`` block ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

NS = "/hand"
ACTION_GRACE_S = 3.5  # the trainer's and experiment's wait for an episode's last command
NODES = (("shadow_hand_sim", "sim.yaml"), ("state_estimator", "estimator.yaml"),
         ("mpc_planner", "planner.yaml"))
T = TypeVar("T")


class StackError(RuntimeError):
    """A node did not come up or an episode did not finish in time."""


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               poll: float = 0.005) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


@contextmanager
def node_processes(log_dir: Path) -> Iterator[list[subprocess.Popen]]:
    """Start the three nodes with the stack's lockstep Baoding parameters; stop them at exit.

    Each node's output goes to ``log_dir/<node>.log`` (its tail is printed if it died).
    """
    from mbrl_ros.launch.packages import executable, package_share

    config = package_share("mbrl_ros") / "config"
    env = {**os.environ, "ROS_LOG_DIR": str(log_dir / "ros")}  # benchlib.ros_environment
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for name, own in NODES:
            cmd = [str(executable("mbrl_ros", name)), "--ros-args", "-r", f"__ns:={NS}"]
            for params in (own, "baoding.yaml", "mode_lockstep.yaml"):
                cmd += ["--params-file", str(config / params)]
            cmd += ["-p", "end_at_drop:=false"]  # full episodes: speed is measured, not drops
            log = (log_dir / f"{name}.log").open("w")
            logs.append(log)
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          cwd=log_dir, start_new_session=True))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def random_pddm_model(task: Any, states: np.ndarray, actions: np.ndarray, seed: int = 0):
    """PDDM's ensemble (3 x 2 x 250 ReLU) with seeded weights and normalizers fitted on
    real transitions: a plan on it costs what a plan on a trained one costs."""
    from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics

    torch.manual_seed(seed)
    model = EnsembleDynamics(EnsembleConfig(task.state_dim, task.action_dim))
    s = torch.as_tensor(states, dtype=torch.float32)
    model.fit_normalizer(s[:-1], torch.as_tensor(actions, dtype=torch.float32), s[1:])
    return model


@dataclass
class EpisodeRecord:
    """What arrived during one episode (bench-process ``perf_counter`` times)."""

    episode_id: int
    length: int
    state_times: dict[int, float] = field(default_factory=dict)
    plan_ms: dict[int, float] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    estimator_ms: list[float] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    wall_s: float = float("nan")

    @property
    def step_periods_ms(self) -> np.ndarray:
        """Wall time from state k to state k+1 as the bench receives them."""
        times = np.array([self.state_times[k] for k in sorted(self.state_times)])
        return np.diff(times) * 1e3


class StackDriver:
    """A node in the bench process that resets episodes, publishes their goal schedules
    and the model, switches the planner's policy and records what the stack publishes."""

    def __init__(self, task: Any) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.task = task
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_stack_driver", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._setup()
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _setup(self) -> None:
        from rcl_interfaces.srv import SetParameters
        from std_msgs.msg import Float64

        from mbrl_ros.msg import GoalSchedule, ModelUpdate, PlannedAction, TaskState
        from mbrl_ros.nodes.conversions import LATCHED_QOS, RECORDED_QOS_DEPTH
        from mbrl_ros.srv import GetStatus, ResetEpisode

        node = self.node
        self._lock = threading.Lock()
        self._episode: EpisodeRecord | None = None
        self.pub_schedule = node.create_publisher(GoalSchedule, f"{NS}/goal_schedule",
                                                  LATCHED_QOS)
        self.pub_model = node.create_publisher(ModelUpdate, f"{NS}/model_update", LATCHED_QOS)
        node.create_subscription(TaskState, f"{NS}/task_state", self._on_state,
                                 RECORDED_QOS_DEPTH)
        node.create_subscription(PlannedAction, f"{NS}/planned_action", self._on_action,
                                 RECORDED_QOS_DEPTH)
        node.create_subscription(Float64, f"{NS}/state_estimator/latency_ms",
                                 self._on_estimator_latency, 50)
        self.reset_client = node.create_client(ResetEpisode, f"{NS}/reset_episode")
        self.status_client = node.create_client(GetStatus, f"{NS}/mpc_planner/get_status")
        self.param_client = node.create_client(SetParameters,
                                               f"{NS}/mpc_planner/set_parameters")

    # ----- callbacks: record only ---------------------------------------------------------
    def _on_state(self, msg) -> None:
        now = time.perf_counter()
        with self._lock:
            ep = self._episode
            if ep is None or msg.episode_id != ep.episode_id or msg.step in ep.state_times:
                return
            ep.state_times[msg.step] = now
            if msg.step >= ep.length:
                ep.done.set()

    def _on_action(self, msg) -> None:
        with self._lock:
            ep = self._episode
            if ep is not None and msg.episode_id == ep.episode_id:
                ep.plan_ms[msg.step] = float(msg.stats.plan_latency_ms)
                ep.sources[msg.step] = msg.stats.planner

    def _on_estimator_latency(self, msg) -> None:
        with self._lock:
            if self._episode is not None:
                self._episode.estimator_ms.append(float(msg.data))

    # ----- requests -----------------------------------------------------------------------
    def _call(self, client, request, timeout: float = 30.0):
        wait_until(lambda: client.wait_for_service(timeout_sec=0.1), timeout,
                   f"service {client.srv_name}")
        future = client.call_async(request)
        return wait_until(lambda: future.done() and future.result(), timeout,
                          f"an answer from {client.srv_name}")

    def wait_ready(self, timeout: float, alive: Callable[[], None]) -> None:
        """Until the simulator's reset, the planner's services and three goal_schedule
        subscribers (sim, estimator, planner) are up; ``alive`` raises if a node died."""
        def ready() -> bool:
            alive()
            return (self.reset_client.wait_for_service(timeout_sec=0.05)
                    and self.status_client.wait_for_service(timeout_sec=0.05)
                    and self.param_client.wait_for_service(timeout_sec=0.05)
                    and self.pub_schedule.get_subscription_count() >= 3
                    and self.pub_model.get_subscription_count() >= 1)
        wait_until(ready, timeout, "the simulator, estimator and planner", poll=0.1)

    def load_model(self, model, version: int = 1, timeout: float = 60.0) -> None:
        """Send ``model`` on model_update and wait until the planner accepted it."""
        from mbrl_ros.core.models.serialization import checksum, model_to_bytes
        from mbrl_ros.msg import ModelUpdate

        data = model_to_bytes(model, {"source": "bench_sim"})
        msg = ModelUpdate(format_version=ModelUpdate.FORMAT_VERSION, version=version,
                          task=self.task.name, state_fields=list(self.task.layout.names),
                          weights=data, checksum=checksum(data))
        self.pub_model.publish(msg)
        wait_until(lambda: int(self.planner_status().get("accepted_model_version", 0))
                   >= version, timeout, "the planner to accept the model", poll=0.1)

    def planner_status(self) -> dict[str, str]:
        from mbrl_ros.srv import GetStatus

        res = self._call(self.status_client, GetStatus.Request())
        return {kv.key: kv.value for kv in res.values}

    def set_policy(self, policy: str) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter("policy", value=policy)
                                                .to_parameter_msg()])
        res = self._call(self.param_client, req)
        if not res.results or not res.results[0].successful:
            raise StackError(f"the planner refused policy={policy}")

    def run_episode(self, episode_id: int, seed: int, length: int,
                    timeout: float = 120.0) -> EpisodeRecord:
        """Reset, publish the goal schedule stamped with the first observation, wait for
        state ``length`` (protocol steps 1-3); the wall time covers all of it."""
        from mbrl_ros.msg import GoalSchedule
        from mbrl_ros.srv import ResetEpisode

        record = EpisodeRecord(episode_id, length)
        with self._lock:
            self._episode = record
        start = time.perf_counter()
        res = self._call(self.reset_client, ResetEpisode.Request(
            seed=seed, task=self.task.name, episode_id=episode_id))
        if not res.success:
            raise StackError(f"the simulator refused the reset: {res.message}")
        goals = self.task.episode_goals(seed, length + 1)
        schedule = GoalSchedule(task=self.task.name, episode_id=episode_id,
                                episode_length=length, goal_dim=self.task.goal_dim,
                                goals=goals.double().flatten().tolist())
        schedule.header.stamp = res.first_observation_stamp
        schedule.header.frame_id = self.task.goal_frame
        self.pub_schedule.publish(schedule)
        if not record.done.wait(timeout):
            raise StackError(f"episode {episode_id} did not finish in {timeout} s "
                             f"({len(record.state_times)} states)")
        record.wall_s = time.perf_counter() - start
        # The last command travels on another topic than the last state and may arrive
        # after it; wait for it as the experiment node does (a lost sample is resent).
        deadline = time.perf_counter() + ACTION_GRACE_S
        while len(record.sources) < length and time.perf_counter() < deadline:
            time.sleep(0.002)
        with self._lock:
            self._episode = None
        return record

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def probe_sim_node(steps: int, seed: int = 0) -> dict[str, list[float]]:
    """Per-step cost (ms) of the simulator node's lockstep step in this process, split as
    ``ShadowHandSimNode._advance`` does it: physics (``HandSim.step``) and publishing
    (``/clock``, object and joint states), under PDDM's random exploration.

    Run it before the stack starts: the probe node publishes ``/clock`` of its own.
    """
    import rclpy

    from mbrl_ros.core.planning.exploration import ExplorationConfig, RandomVelocityExploration
    from mbrl_ros.nodes.sim_node import ShadowHandSimNode

    rclpy.init(args=["--ros-args", "-r", "__ns:=/bench_probe", "-p", "mode:=lockstep",
                     "-p", "marker_rate_hz:=0.0"])
    try:
        node = ShadowHandSimNode()
        explorer = RandomVelocityExploration(24, ExplorationConfig(initial_action="zero"),
                                             seed=seed)
        physics, publish = [], []
        for k in range(steps):
            if k % 100 == 0:
                node.sim.reset(seed=seed + k)
                explorer.reset(k)
            node.sim.set_action(explorer.act())
            t0 = time.perf_counter()
            result = node.sim.step()
            t1 = time.perf_counter()
            node._tick_clock()
            node._publish(result.observation)
            t2 = time.perf_counter()
            physics.append((t1 - t0) * 1e3)
            publish.append((t2 - t1) * 1e3)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return {"physics_ms": physics, "publish_ms": publish}


def sim_trajectory(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Task observations ``[steps+1, S]`` and actions ``[steps, A]`` of the simulated hand
    under PDDM's random exploration (to fit a model's normalizers)."""
    import mbrl_ros.sim as sim
    from mbrl_ros.core.planning.exploration import ExplorationConfig, RandomVelocityExploration

    hand = sim.HandSim("baoding")
    explorer = RandomVelocityExploration(24, ExplorationConfig(initial_action="zero"),
                                         seed=seed)
    states = [hand.reset(seed=seed).task_obs]
    actions = []
    for _ in range(steps):
        actions.append(explorer.act())
        states.append(hand.step(actions[-1]).observation.task_obs)
    return np.array(states), np.array(actions)


def temp_log_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="bench_stack_")
