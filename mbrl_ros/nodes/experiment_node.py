"""``experiment``: PDDM's outer loop run through the other nodes, and the results folder.

Initial random rollouts, then iterations of train -> MPC rollouts (+ random rollouts),
each episode started by resetting the simulator and publishing its goal schedule
(docs/node_graph.md). Everything goes over ROS: the episode's states and actions come from
the ``task_state`` and ``planned_action`` topics, the model from the trainer's services.
Writes ``<runs_dir>/<run_name>/``: ``metrics.csv``, ``learning_curve.png``,
``rollout_latest`` (MP4 or PNG strip), ``config.yaml``; prints a line per episode and one
per iteration; exits when the budget is spent (the launch files exit with it).

Faults (docs/faults.md): the other nodes may die and be respawned at any time. A service
call that a dead node never answers is asked again until the node is back
(``startup_timeout_s``). An episode whose fresh states or commands stop for
``stall_timeout_s``, or whose simulator restarted (its object readings carry another episode
id or a step count that went back), is abandoned and run again as the next episode once
every node answers. The trainer is not needed while an episode runs: when it is down
(no ``num_transitions`` heartbeat) the episodes go on without waiting for it to store them.
A training job lost with a restarted trainer is requested again.

The loop itself is ``core.experiment.run_experiment``; this node is its ROS backend, wired
from: ``episode_runner.py`` (one episode through the stack), ``trainer_link.py`` (training
jobs, stored and missed episodes), ``planner_link.py`` (policy, loaded model),
``patient_calls.py`` (service calls that outlast a restarting node), ``run_config.py``.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Float64

from mbrl_ros.core.experiment import Budget, EpisodeOutcome, Step, pddm_plan, run_experiment
from mbrl_ros.nodes.diagnostics import OK, WARN, Diagnostics
from mbrl_ros.nodes.episode_runner import EpisodeInterrupted, EpisodeRunner
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.patient_calls import CallFailed, PatientCaller, status_values
from mbrl_ros.nodes.planner_link import PlannerLink
from mbrl_ros.nodes.run_config import write_run_config
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params, task_from_params
from mbrl_ros.nodes.trainer_link import TrainerLink
from mbrl_ros.results import MetricsLog, plot_learning_curve, read_metrics
from mbrl_ros.srv import GetStatus

PARAMS = [
    *TASK_PARAMS,
    Param("run_name", "baoding", "results go to <runs_dir>/<run_name>/", read_only=True),
    Param("runs_dir", "runs", "folder of all runs (relative to the working directory)",
          read_only=True),
    Param("seed", 0, "episode e uses seed + e", 0, 2**31 - 1, read_only=True),
    Param("random_rollouts", 150, "initial random-policy episodes (PDDM: 100 train + 50 "
          "validation)", 0, 1000000, read_only=True),
    Param("iterations", 200, "train -> MPC rollouts iterations (PDDM 200)", 0, 1000000,
          read_only=True),
    Param("rollouts_per_iteration", 40, "MPC episodes per iteration (PDDM 40)", 0, 1000000,
          read_only=True),
    Param("random_rollouts_per_iteration", 5, "random episodes added per iteration (PDDM 5)",
          0, 1000000, read_only=True),
    Param("train_epochs", 0, "epochs per training (0 = the trainer's setting)", 0, 100000,
          read_only=True),
    Param("render_rollouts", True, "render the latest MPC episode each iteration",
          read_only=True),
    Param("render_frames", 10, "frames in the rendered rollout", 1, 200, read_only=True),
    Param("startup_timeout_s", 120.0, "wait this long for the other nodes", 1.0, 3600.0,
          read_only=True),
    Param("episode_timeout_s", 300.0, "give up on an episode after this long (wall)", 1.0,
          86400.0, read_only=True),
    Param("train_timeout_s", 3600.0, "give up on a training job after this long", 1.0,
          86400.0, read_only=True),
    Param("trainer", "dynamics_trainer", "name of the trainer node (same namespace)",
          read_only=True),
    Param("planner", "mpc_planner", "name of the planner node (same namespace)",
          read_only=True),
    Param("estimator", "state_estimator", "name of the state estimator node (same namespace)",
          read_only=True),
    Param("wait_for_recorder", False, "start the first episode only once the mcap_recorder "
          "named by recorder has matched every publisher of the topics it records (the "
          "launch files set it with record:=true)", read_only=True),
    Param("recorder", "mcap_recorder", "name of the mcap_recorder node (same namespace)",
          read_only=True),
    Param("stall_timeout_s", 3.0, "an episode whose fresh (not stale) states or commands "
          "stop for this long (wall s; a node died) is abandoned and run again once every "
          "node answers", 0.5, 3600.0, read_only=True),
    Param("config_nodes", ["shadow_hand_sim", "state_estimator", "dynamics_trainer",
                           "mpc_planner"], "nodes whose parameters go into config.yaml",
          read_only=True),
]


MAX_INTERRUPTIONS = 10  # in a row, then the run stops


class ExperimentNode(Node):
    """Drives ``core.experiment.run_experiment`` from a worker thread as its backend:
    episodes through ``EpisodeRunner``, trainings through ``TrainerLink``."""

    def __init__(self) -> None:
        super().__init__("experiment")
        self.params = ParameterSet(self, PARAMS, checks=[check_task_params])
        p = self.params.snapshot()
        self.task = task_from_params(p)
        self.run_dir = Path(p["runs_dir"]) / p["run_name"]
        self.budget = Budget(p["random_rollouts"], p["iterations"], p["rollouts_per_iteration"],
                             p["random_rollouts_per_iteration"])
        self.exit_code = 0
        self._stop = threading.Event()
        self.calls = PatientCaller(self, self._stop, p["startup_timeout_s"])
        self._group = group = ReentrantCallbackGroup()
        self.trainer = TrainerLink(self, p["trainer"], self.calls, self.task.name, group)
        self.planner = PlannerLink(self, p["planner"], self.calls, group)
        self.episodes = EpisodeRunner(self, self.task, self.calls, self.trainer, self.planner,
                                      p["estimator"], group, bool(p["end_at_drop"]))
        self.diagnostics = Diagnostics(self, self._health, hardware_id="experiment")
        self.params.report_to(self.diagnostics)
        self.pub_numbers = {k: self.create_publisher(Float64, f"~/{k}", 10)
                            for k in ("score", "return", "tracking_error")}
        self.recorder_status = None
        self._unmatched: dict[str, tuple[float, str]] = {}  # node -> (received, topics)
        if p["wait_for_recorder"]:
            self.recorder_status = self.create_client(GetStatus, f"{p['recorder']}/get_status",
                                                      callback_group=group)
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                     50, callback_group=group)
        self._model_version = 0
        self._next_episode_id = 1
        self._worker = threading.Thread(target=self._main, name="experiment", daemon=True)
        self._worker.start()

    def _health(self) -> tuple[int, str, dict[str, Any]]:
        level = WARN if self.trainer.backlog.dropped else OK
        return level, "running", {"run": self.run_dir, **self.trainer.describe()}

    # ----- the run ------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._run()
        except CallFailed as exc:
            if not self._stop.is_set():
                self.get_logger().error(f"experiment stopped: {exc}")
                self.exit_code = 1
        except Exception:  # the loop must not die silently
            if self._stop.is_set():  # a call cut short by the shutdown, not a crash
                self.get_logger().info("experiment stopped while waiting on another node")
            else:
                self.get_logger().error(f"experiment crashed:\n{traceback.format_exc()}")
                self.exit_code = 1
        finally:
            if not self._stop.is_set():
                rclpy.try_shutdown()

    def _run(self) -> None:
        p = self.params.snapshot()
        self._wait_for_stack(p)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(self.run_dir / "config.yaml", p, p["config_nodes"], self, self.calls,
                         self._group)
        log = MetricsLog(self.run_dir / "metrics.csv")
        status = self.trainer.status()
        self.trainer.total = status.num_transitions
        self._next_episode_id = max(self.trainer.loop_status(status).max_episode_id, 0) + 1
        self._model_version = status.model_version
        self.get_logger().info(
            f"run '{p['run_name']}' in {self.run_dir}: {self.budget.random_rollouts} random "
            f"episodes, then {self.budget.iterations} iterations x "
            f"({self.budget.rollouts_per_iteration} MPC + "
            f"{self.budget.random_rollouts_per_iteration} random), "
            f"{self.task.episode_length} steps each; the trainer holds "
            f"{status.num_transitions} transitions")
        run_experiment(pddm_plan(self.budget), self, self.task,
                       lambda row: self._append(log, row), self.get_logger().info)
        self.trainer.flush_backlog()
        if self.trainer.backlog:
            self.get_logger().warning(
                f"{len(self.trainer.backlog)} episode(s) the trainer missed were not sent (it "
                "is down); their transitions are not in the dataset")
        self.get_logger().info(
            f"done: results in {self.run_dir.resolve()} (metrics.csv, learning_curve.png, "
            f"rollout_latest, config.yaml)")

    def _wait_for_stack(self, p: dict[str, Any]) -> None:
        """Until every node answers and the topics an episode needs are connected."""
        timeout = p["startup_timeout_s"]
        for client in (self.episodes.reset_client, self.trainer.status_client,
                       self.planner.status_client, self.planner.params_client,
                       self.episodes.estimator_params):
            self.calls.wait(lambda c=client: c.wait_for_service(timeout_sec=0.2), timeout,
                            f"service {client.srv_name}")
        self.calls.wait(self.trainer.train_ready, timeout, "the trainer's train action")
        self.calls.wait(lambda: self.episodes.pub_schedule.get_subscription_count() >= 4,
                        timeout, "the simulator, estimator, planner and trainer to subscribe "
                        "to goal_schedule")
        # Before the first episode the estimator already publishes (episode 0, from the
        # first joint state): the first episode starts once it reaches this node and the
        # trainer (topics connect some time after the services appear on a busy machine).
        self.calls.wait(self.episodes.states_flow.is_set, timeout, "task states")
        self.calls.wait(lambda: self.count_publishers("planned_action") > 0, timeout,
                        "the planner's planned_action")
        # Both of the trainer's inputs: on a busy machine its planned_action subscription can
        # match seconds after task_state, and the actions sent before it matched are lost.
        self.calls.wait(self.trainer.connected, timeout,
                        "the trainer to receive task states and connect to planned_action")
        # Its num_transitions heartbeat tells "stored" from "down" after each episode: an
        # episode ended before it was first heard would count the trainer as down.
        self.calls.wait(lambda: not self.trainer.silent(), timeout,
                        "the trainer's num_transitions heartbeat")
        if self.recorder_status is not None:  # it records from the first step on
            since = time.monotonic()
            self.calls.wait(lambda: self._recorder_connected(since), timeout,
                            f"{p['recorder']} to match every publisher of its topics and the "
                            f"{p['estimator']} and {p['planner']} to match it")
            self.get_logger().info(f"{p['recorder']} has matched every publisher")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = status_values(status)
            if "unmatched_subscribers" in values:
                self._unmatched[status.name] = (time.monotonic(),
                                                values["unmatched_subscribers"])

    def _recorder_connected(self, since: float) -> bool:
        """The recorder's subscriptions see every publisher, and the estimator's and the
        planner's publishers (what an episode records) see every subscription, the recorder's
        included, in diagnostics sent after ``since``: discovery is not symmetric."""
        values = status_values(self.calls.status(self.recorder_status))
        if values.get("unmatched_topics", "?") != "":
            return False
        ns = self.get_namespace().rstrip("/")
        for name in (self.params["estimator"], self.params["planner"]):
            received, unmatched = self._unmatched.get(f"{ns}/{name}", (0.0, "?"))
            if received < since or unmatched:
                return False
        return True

    # ----- the backend of core.experiment.run_experiment ----------------------------------
    def train(self, iteration: int) -> None:
        self._model_version = self.trainer.train(
            iteration, self.budget.iterations, self._model_version, self.params["train_epochs"],
            self.params["train_timeout_s"], self.planner.loaded)

    def run_episode(self, step: Step, index: int) -> EpisodeOutcome:
        """One episode of the plan (seed ``seed + id``); an interrupted one runs again under
        the next id once every node answers."""
        for _ in range(MAX_INTERRUPTIONS + 1):
            episode_id = self._next_episode_id
            self._next_episode_id += 1
            try:
                return self.episodes.run(episode_id, step, self.params["seed"] + episode_id,
                                         self._model_version, self.params.snapshot())
            except EpisodeInterrupted as exc:
                self.diagnostics.problem(
                    "episode_interrupted", f"episode {episode_id} interrupted: {exc}; it "
                    f"runs again as episode {episode_id + 1} once every node answers")
                self.episodes.wait_for_nodes()
        raise CallFailed(f"{MAX_INTERRUPTIONS + 1} episodes in a row were interrupted")

    def _append(self, log: MetricsLog, row: dict[str, Any]) -> None:
        log.append(row)
        for key in ("score", "return", "tracking_error"):
            self.pub_numbers[key].publish(Float64(data=float(row[key])))

    def end_iteration(self, iteration: int, rows: list[dict[str, Any]],
                      last_mpc: EpisodeOutcome | None) -> None:
        p = self.params.snapshot()
        plot_learning_curve(read_metrics(self.run_dir / "metrics.csv"),
                            self.run_dir / "learning_curve.png",
                            title=f"{p['run_name']}: {self.task.name}, iteration {iteration}")
        if p["render_rollouts"] and last_mpc is not None:
            try:
                from mbrl_ros.sim.replay import save_rollout

                out = save_rollout(self.run_dir / "rollout_latest.mp4", self.task.name,
                                   last_mpc.states, last_mpc.goals,
                                   frames=p["render_frames"],
                                   goal_frame=self.task.goal_frame)
                self.get_logger().info(f"rendered the latest MPC episode to {out}")
            except Exception as exc:  # a picture must not stop the run
                self.get_logger().warning(f"could not render the rollout: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5.0)


def main() -> int:
    return run_node(ExperimentNode)
