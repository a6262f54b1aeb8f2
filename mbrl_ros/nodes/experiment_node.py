"""``experiment``: PDDM's outer loop run through the other nodes, and the results folder.

Initial random rollouts, then iterations of train -> MPC rollouts (+ random rollouts),
each episode started by resetting the simulator and publishing its goal schedule
(docs/node_graph.md). Everything goes over ROS: the episode's states and actions come from
the ``task_state`` and ``planned_action`` topics, the model from the trainer's services.
Writes ``<runs_dir>/<run_name>/``: ``metrics.csv``, ``learning_curve.png``,
``rollout_latest`` (MP4 or PNG strip), ``config.yaml``; prints a line per episode and one
per iteration; exits when the budget is spent (the launch files exit with it).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import torch
import yaml
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from std_msgs.msg import Float64

from mbrl_ros.core.experiment_plan import Budget, Step, pddm_plan
from mbrl_ros.msg import GoalSchedule, PlannedAction, TaskState, TrainingMetrics
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params, task_from_params
from mbrl_ros.results import MetricsLog, plot_learning_curve, read_metrics
from mbrl_ros.srv import GetStatus, ResetEpisode, TrainModel

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
    Param("config_nodes", ["shadow_hand_sim", "state_estimator", "dynamics_trainer",
                           "mpc_planner"], "nodes whose parameters go into config.yaml",
          read_only=True),
]


class ExperimentError(RuntimeError):
    """The loop cannot go on (a node is missing or did not answer)."""


@dataclass
class EpisodeRecord:
    """What the topics said about one episode."""

    episode_id: int
    length: int
    states: dict[int, np.ndarray] = field(default_factory=dict)
    actions: dict[int, PlannedAction] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


class ExperimentNode(Node):
    """Drives the loop from a worker thread; callbacks only record what arrives."""

    def __init__(self) -> None:
        super().__init__("experiment")
        self.params = ParameterSet(self, PARAMS, checks=[check_task_params])
        p = self.params.snapshot()
        self.task = task_from_params(p)
        self.length = self.task.episode_length
        self.run_dir = Path(p["runs_dir"]) / p["run_name"]
        self.budget = Budget(p["random_rollouts"], p["iterations"], p["rollouts_per_iteration"],
                             p["random_rollouts_per_iteration"])
        self.exit_code = 0
        group = ReentrantCallbackGroup()
        self.pub_schedule = self.create_publisher(GoalSchedule, "goal_schedule", conv.LATCHED_QOS)
        self.pub_numbers = {k: self.create_publisher(Float64, f"~/{k}", 10)
                            for k in ("score", "return", "tracking_error")}
        self.create_subscription(TaskState, "task_state", self._on_state, 50,
                                 callback_group=group)
        self.create_subscription(PlannedAction, "planned_action", self._on_action, 50,
                                 callback_group=group)
        self.create_subscription(TrainingMetrics, f"{p['trainer']}/metrics", self._on_metrics,
                                 10, callback_group=group)
        self.reset_client = self.create_client(ResetEpisode, "reset_episode",
                                               callback_group=group)
        self.train_client = self.create_client(TrainModel, f"{p['trainer']}/train",
                                               callback_group=group)
        self.trainer_status = self.create_client(GetStatus, f"{p['trainer']}/get_status",
                                                 callback_group=group)
        self.planner_status = self.create_client(GetStatus, f"{p['planner']}/get_status",
                                                 callback_group=group)
        self.planner_params = self.create_client(SetParameters,
                                                 f"{p['planner']}/set_parameters",
                                                 callback_group=group)
        self._group = group
        self._lock = threading.Lock()
        self._episode: EpisodeRecord | None = None
        self._metrics: list[TrainingMetrics] = []
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._main, name="experiment", daemon=True)
        self._worker.start()

    # ----- callbacks: record only ---------------------------------------------------------
    def _on_state(self, msg: TaskState) -> None:
        with self._lock:
            ep = self._episode
            if ep is None or msg.episode_id != ep.episode_id or msg.step > ep.length:
                return
            state = np.asarray(msg.state, dtype=np.float64)
            if state.shape != (self.task.state_dim,) or not np.all(np.isfinite(state)):
                self.get_logger().warning(f"ignoring a malformed task state (step {msg.step})")
                return
            ep.states[msg.step] = state
            if msg.step == ep.length:
                ep.done.set()

    def _on_action(self, msg: PlannedAction) -> None:
        with self._lock:
            ep = self._episode
            if ep is not None and msg.episode_id == ep.episode_id and msg.step < ep.length:
                ep.actions[msg.step] = msg

    def _on_metrics(self, msg: TrainingMetrics) -> None:
        with self._lock:
            self._metrics.append(msg)

    # ----- service plumbing ---------------------------------------------------------------
    def _call(self, client, request, timeout: float, what: str):
        if not client.wait_for_service(timeout_sec=min(timeout, 10.0)):
            raise ExperimentError(f"{what}: service {client.srv_name} is not available")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if self._stop.is_set() or time.monotonic() > deadline:
                client.remove_pending_request(future)
                raise ExperimentError(f"{what}: no answer from {client.srv_name} in {timeout} s")
            time.sleep(0.005)
        return future.result()

    def _wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self._stop.is_set():
                raise ExperimentError("stopped")
            if time.monotonic() > deadline:
                raise ExperimentError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.01)

    def _status(self, client) -> GetStatus.Response:
        return self._call(client, GetStatus.Request(), 30.0, "status")

    def _planner_loaded(self) -> int:
        """Newest model version the planner has accepted (it plans on it from the next
        state on; in lockstep no plan runs between episodes)."""
        status = self._status(self.planner_status)
        values = {kv.key: kv.value for kv in status.values}
        return int(values.get("accepted_model_version", status.model_version))

    def _set_policy(self, policy: str) -> None:
        req = SetParameters.Request(parameters=[Parameter("policy", value=policy)
                                                .to_parameter_msg()])
        res = self._call(self.planner_params, req, 30.0, "set the planner's policy")
        if not res.results or not res.results[0].successful:
            reason = res.results[0].reason if res.results else "no result"
            raise ExperimentError(f"the planner refused policy={policy}: {reason}")

    # ----- the loop -----------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._run()
        except ExperimentError as exc:
            if not self._stop.is_set():
                self.get_logger().error(f"experiment stopped: {exc}")
                self.exit_code = 1
        except Exception:  # the loop must not die silently
            self.get_logger().error(f"experiment crashed:\n{traceback.format_exc()}")
            self.exit_code = 1
        finally:
            if not self._stop.is_set():
                rclpy.try_shutdown()

    def _run(self) -> None:
        p = self.params.snapshot()
        timeout = p["startup_timeout_s"]
        for client in (self.reset_client, self.train_client, self.trainer_status,
                       self.planner_status, self.planner_params):
            self._wait(lambda c=client: c.wait_for_service(timeout_sec=0.2), timeout,
                       f"service {client.srv_name}")
        self._wait(lambda: self.pub_schedule.get_subscription_count() >= 3, timeout,
                   "the simulator, estimator and planner to subscribe to goal_schedule")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_config(p)
        log = MetricsLog(self.run_dir / "metrics.csv")
        status = self._status(self.trainer_status)
        episode_id = int(dict((kv.key, kv.value) for kv in status.values)
                         .get("max_episode_id", status.num_episodes)) + 1
        plan = pddm_plan(self.budget)
        self.get_logger().info(
            f"run '{p['run_name']}' in {self.run_dir}: {self.budget.random_rollouts} random "
            f"episodes, then {self.budget.iterations} iterations x "
            f"({self.budget.rollouts_per_iteration} MPC + "
            f"{self.budget.random_rollouts_per_iteration} random), {self.length} steps each; "
            f"the trainer holds {status.num_transitions} transitions")
        model_version = status.model_version
        policy = None
        last_mpc: tuple[np.ndarray, np.ndarray] | None = None
        for index, step in enumerate(plan):
            if step.kind == "train":
                if step.iteration > 1:
                    self._end_iteration(step.iteration - 1, last_mpc)
                model_version = self._train(step, model_version)
                continue
            if step.policy != policy:
                policy = step.policy
                self._set_policy("plan" if policy == "mpc" else "explore")
            row, states, goals = self._episode_run(episode_id, step, p["seed"] + episode_id,
                                                   model_version)
            log.append(row)
            if step.policy == "mpc":
                last_mpc = (states, goals)
            self._print_episode(row, index, len(plan))
            episode_id += 1
        self._end_iteration(self.budget.iterations, last_mpc)
        self.get_logger().info(
            f"done: results in {self.run_dir.resolve()} (metrics.csv, learning_curve.png, "
            f"rollout_latest, config.yaml)")

    def _episode_run(self, episode_id: int, step: Step, seed: int,
                     model_version: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        p = self.params.snapshot()
        before = self._status(self.trainer_status).num_episodes
        record = EpisodeRecord(episode_id, self.length)
        with self._lock:
            self._episode = record
        start = time.monotonic()
        res = self._call(self.reset_client, ResetEpisode.Request(
            seed=seed % 2**32, task=self.task.name, episode_id=episode_id), 30.0,
            "reset the simulator")
        if not res.success:
            raise ExperimentError(f"the simulator refused the reset: {res.message}")
        goals = self.task.episode_goals(seed, self.length + 1)
        schedule = GoalSchedule(task=self.task.name, episode_id=episode_id,
                                episode_length=self.length, goal_dim=self.task.goal_dim,
                                goals=goals.double().flatten().tolist())
        schedule.header.stamp = res.first_observation_stamp
        schedule.header.frame_id = "world"
        self.pub_schedule.publish(schedule)
        if not record.done.wait(p["episode_timeout_s"]):
            raise ExperimentError(f"episode {episode_id} did not finish in "
                                  f"{p['episode_timeout_s']} s ({len(record.states)} states)")
        try:  # the last action can trail the last state; a lost sample is resent within 3 s
            self._wait(lambda: len(record.actions) >= record.length, 3.5, "")
        except ExperimentError:
            pass
        with self._lock:
            self._episode = None
        states, actions = self._episode_arrays(record)
        metrics = self.task.episode_metrics(torch.as_tensor(states), torch.as_tensor(actions),
                                            goals.double())
        trainer = self._wait(lambda: (s := self._status(self.trainer_status)).num_episodes
                             > before and s, 60.0, f"the trainer to store episode {episode_id}")
        latencies = [a.stats.plan_latency_ms for a in record.actions.values()
                     if not a.stats.fallback and a.stats.planner not in ("exploration", "hold")]
        row = {
            "episode": episode_id, "iteration": step.iteration, "policy": step.policy,
            "seed": seed, "steps": metrics["steps"], "transitions": trainer.num_transitions,
            "return": metrics["return"], "score": metrics["score"],
            "tracking_error": metrics["tracking_error"], "drop": metrics["drop"],
            "success": metrics["success"],
            "plan_p50_ms": float(np.percentile(latencies, 50)) if latencies else float("nan"),
            "plan_p99_ms": float(np.percentile(latencies, 99)) if latencies else float("nan"),
            "misses": sum(a.stats.fallback for a in record.actions.values()),
            "model_version": model_version if step.policy == "mpc" else 0,
            "wall_s": time.monotonic() - start,
        }
        for key in ("score", "return", "tracking_error"):
            self.pub_numbers[key].publish(Float64(data=float(row[key])))
        return row, states, goals.numpy()

    def _episode_arrays(self, record: EpisodeRecord) -> tuple[np.ndarray, np.ndarray]:
        """States ``[T+1, S]`` and actions ``[T, A]``; a missing entry repeats the one
        before it (counted in the log; in lockstep nothing is missing)."""
        missing = [k for k in range(record.length + 1) if k not in record.states]
        missing_actions = [k for k in range(record.length) if k not in record.actions]
        if missing or missing_actions:
            self.get_logger().warning(f"episode {record.episode_id}: no state for steps "
                                      f"{missing[:10]}, no action for {missing_actions[:10]}")
        states = np.zeros((record.length + 1, self.task.state_dim))
        actions = np.zeros((record.length, self.task.action_dim))
        for k in range(record.length + 1):
            states[k] = record.states.get(k, states[k - 1] if k else record.states[min(
                record.states)])
        for k in range(record.length):
            msg = record.actions.get(k)
            actions[k] = np.asarray(msg.action) if msg is not None else (
                actions[k - 1] if k else 0.0)
        return states, actions

    def _train(self, step: Step, model_version: int) -> int:
        p = self.params.snapshot()
        with self._lock:
            seen = len(self._metrics)
        start = time.monotonic()
        res = self._call(self.train_client, TrainModel.Request(
            from_scratch=True, epochs=p["train_epochs"]), 60.0, "start training")
        if not res.accepted:
            raise ExperimentError(f"the trainer refused to train: {res.message}")
        self.get_logger().info(f"iteration {step.iteration}/{self.budget.iterations}: "
                               f"training ({res.message})")
        metrics = self._wait(lambda: self._metrics[seen:] and self._metrics[-1],
                             p["train_timeout_s"], "the training result")
        took = time.monotonic() - start
        if not metrics.accepted:
            self.get_logger().warning(
                f"iteration {step.iteration}: the trainer rejected the new model (val loss "
                f"{metrics.val_loss:.3g}); planning on model v{model_version}")
            return model_version
        version = metrics.model_version
        self._wait(lambda: self._planner_loaded() >= version, 60.0,
                   f"the planner to load model v{version}")
        multi = list(metrics.val_multi_step_mse)
        self.get_logger().info(
            f"iteration {step.iteration}: model v{version} on {metrics.num_transitions} "
            f"transitions in {took:.1f} s: val one-step mse {metrics.val_one_step_mse:.3g}, "
            f"{len(multi)}-step {multi[-1] if multi else float('nan'):.3g}, disagreement "
            f"{metrics.val_disagreement:.3g}")
        return version

    def _end_iteration(self, iteration: int,
                       last_mpc: tuple[np.ndarray, np.ndarray] | None) -> None:
        rows = read_metrics(self.run_dir / "metrics.csv")
        p = self.params.snapshot()
        plot_learning_curve(rows, self.run_dir / "learning_curve.png",
                            title=f"{p['run_name']}: {self.task.name}, iteration {iteration}")
        mpc = [r for r in rows if r["policy"] == "mpc" and r["iteration"] == iteration]
        rand = [r for r in rows if r["policy"] == "random"]
        if mpc:
            self.get_logger().info(
                f"iteration {iteration}/{self.budget.iterations} done: MPC mean score "
                f"{np.mean([r['score'] for r in mpc]):.4f}, return "
                f"{np.mean([r['return'] for r in mpc]):.1f}, drops "
                f"{sum(r['drop'] for r in mpc)}/{len(mpc)}; random policy mean score "
                f"{np.mean([r['score'] for r in rand]):.4f}, return "
                f"{np.mean([r['return'] for r in rand]):.1f}")
        if p["render_rollouts"] and last_mpc is not None:
            try:
                from mbrl_ros.sim.replay import save_rollout

                out = save_rollout(self.run_dir / "rollout_latest.mp4", self.task.name,
                                   last_mpc[0], last_mpc[1],
                                   frames=p["render_frames"])
                self.get_logger().info(f"rendered the latest MPC episode to {out}")
            except Exception as exc:  # a picture must not stop the run
                self.get_logger().warning(f"could not render the rollout: {exc}")

    def _print_episode(self, row: dict[str, Any], index: int, total: int) -> None:
        plan = ""
        if row["policy"] == "mpc":
            plan = (f" plan p50 {row['plan_p50_ms']:.0f} ms p99 {row['plan_p99_ms']:.0f} ms "
                    f"misses {row['misses']} model v{row['model_version']}")
        self.get_logger().info(
            f"[{index + 1}/{total}] it {row['iteration']} episode {row['episode']} "
            f"{row['policy']:6s} score {row['score']:.4f} return {row['return']:.1f} "
            f"drop {'yes' if row['drop'] else 'no '} success "
            f"{'yes' if row['success'] else 'no '}{plan} | {row['transitions']} transitions, "
            f"{row['wall_s']:.1f} s")

    def _write_config(self, own: dict[str, Any]) -> None:
        """Parameters of this node and of the others, as they run, into config.yaml."""
        config: dict[str, Any] = {"experiment": own}
        for name in own["config_nodes"]:
            try:
                config[name] = self._node_parameters(name)
            except ExperimentError as exc:
                config[name] = f"unavailable: {exc}"
        with (self.run_dir / "config.yaml").open("w") as f:
            yaml.safe_dump(config, f, sort_keys=True)

    def _node_parameters(self, name: str) -> dict[str, Any]:
        lister = self.create_client(ListParameters, f"{name}/list_parameters",
                                    callback_group=self._group)
        getter = self.create_client(GetParameters, f"{name}/get_parameters",
                                    callback_group=self._group)
        try:
            names = list(self._call(lister, ListParameters.Request(), 10.0,
                                    f"{name} parameters").result.names)
            values = self._call(getter, GetParameters.Request(names=names), 10.0,
                                f"{name} parameters").values
            out = {}
            for n, v in zip(names, values, strict=True):
                value = parameter_value_to_python(v)
                out[n] = value.tolist() if hasattr(value, "tolist") else value
            return out
        finally:
            self.destroy_client(lister)
            self.destroy_client(getter)

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5.0)


def main() -> int:
    return run_node(ExperimentNode)

