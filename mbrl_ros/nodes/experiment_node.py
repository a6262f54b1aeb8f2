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
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from std_msgs.msg import Float64

from mbrl_ros.core.experiment import Budget, EpisodeOutcome, Step, pddm_plan, run_experiment
from mbrl_ros.msg import GoalSchedule, ObjectStates, PlannedAction, TaskState
from mbrl_ros.nodes import conversions as conv
from mbrl_ros.nodes.diagnostics import OK, WARN, Diagnostics
from mbrl_ros.nodes.episode_record import EpisodeRecord, SeenState
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.patient_calls import CallFailed, PatientCaller, status_values
from mbrl_ros.nodes.runtime import run_node
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params, task_from_params
from mbrl_ros.nodes.trainer_link import TrainerLink
from mbrl_ros.results import MetricsLog, plot_learning_curve, read_metrics
from mbrl_ros.srv import GetStatus, ResetEpisode

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


class ExperimentError(CallFailed):
    """The loop cannot go on (a node is missing or did not answer)."""


class EpisodeInterrupted(RuntimeError):
    """A node of the loop stopped during the episode: it is run again."""


class ExperimentNode(Node):
    """Drives the loop from a worker thread; callbacks only record what arrives."""

    def __init__(self) -> None:
        super().__init__("experiment")
        self.params = ParameterSet(self, PARAMS, checks=[check_task_params])
        p = self.params.snapshot()
        self.task = task_from_params(p)
        self.length = self.task.episode_length
        self._end_at_drop = bool(p["end_at_drop"])
        self.run_dir = Path(p["runs_dir"]) / p["run_name"]
        self.budget = Budget(p["random_rollouts"], p["iterations"], p["rollouts_per_iteration"],
                             p["random_rollouts_per_iteration"])
        self.exit_code = 0
        self._stop = threading.Event()
        self.calls = PatientCaller(self, self._stop, p["startup_timeout_s"])
        self.diagnostics = Diagnostics(self, self._health, hardware_id="experiment")
        self.params.report_to(self.diagnostics)
        group = ReentrantCallbackGroup()
        self.pub_schedule = self.create_publisher(GoalSchedule, "goal_schedule", conv.LATCHED_QOS)
        self.pub_numbers = {k: self.create_publisher(Float64, f"~/{k}", 10)
                            for k in ("score", "return", "tracking_error")}
        self.create_subscription(TaskState, "task_state", self._on_state, 50,
                                 callback_group=group)
        self.create_subscription(PlannedAction, "planned_action", self._on_action, 50,
                                 callback_group=group)
        self.create_subscription(ObjectStates, "object_states", self._on_objects, 10,
                                 callback_group=group)
        self.reset_client = self.create_client(ResetEpisode, "reset_episode",
                                               callback_group=group)
        self.trainer = TrainerLink(self, p["trainer"], self.calls, self.task.name, group)
        self.planner_status = self.create_client(GetStatus, f"{p['planner']}/get_status",
                                                 callback_group=group)
        self.planner_params = self.create_client(SetParameters,
                                                 f"{p['planner']}/set_parameters",
                                                 callback_group=group)
        self.estimator_params = self.create_client(GetParameters,
                                                   f"{p['estimator']}/get_parameters",
                                                   callback_group=group)
        self.recorder_status = None
        self._unmatched: dict[str, tuple[float, str]] = {}  # node -> (received, topics)
        if p["wait_for_recorder"]:
            self.recorder_status = self.create_client(GetStatus, f"{p['recorder']}/get_status",
                                                      callback_group=group)
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                     50, callback_group=group)
        self._group = group
        self._lock = threading.Lock()
        self._episode: EpisodeRecord | None = None
        self._planner_ticks = -1  # the planner's command counter (restarts at 1 with it)
        self._planner_restarted = threading.Event()
        self._states_flow = threading.Event()  # a task state (of any episode) arrived
        self._worker = threading.Thread(target=self._main, name="experiment", daemon=True)
        self._worker.start()

    def _health(self) -> tuple[int, str, dict[str, Any]]:
        level = WARN if self.trainer.backlog.dropped else OK
        return level, "running", {"run": self.run_dir, **self.trainer.describe()}

    # ----- callbacks: record only ---------------------------------------------------------
    def _on_state(self, msg: TaskState) -> None:
        self._states_flow.set()
        with self._lock:
            ep = self._episode
            if ep is None or msg.episode_id != ep.episode_id or msg.step > ep.length:
                return
            state = np.asarray(msg.state, dtype=np.float64)
            if state.shape != (self.task.state_dim,) or not np.all(np.isfinite(state)):
                self.get_logger().warning(f"ignoring a malformed task state (step {msg.step})")
                return
            stamp = conv.ns_from_time(msg.header.stamp) / conv.NS_PER_S
            goal = np.asarray(msg.goal, dtype=np.float64)
            ep.add_state(msg.step, SeenState(state, goal, stamp, bool(msg.stale)),
                         time.monotonic())
            if (self._end_at_drop and not msg.stale and msg.step < ep.length
                    and goal.shape == (self.task.goal_dim,)
                    and self.task.terminates(torch.from_numpy(state), torch.from_numpy(goal))):
                self._end_episode_at(ep, msg.step)

    def _end_episode_at(self, ep: EpisodeRecord, step: int) -> None:
        """The episode ends at state ``step`` (lock held): every node gets the schedule
        again with that length (no command at or after it, the recorder completes it)."""
        ep.length = step
        ep.done.set()
        if ep.schedule is not None:
            short = ep.schedule
            short.episode_length = step
            short.goals = short.goals[: (step + 1) * self.task.goal_dim]
            self.pub_schedule.publish(short)
        self.get_logger().info(f"episode {ep.episode_id}: dropped at step {step}, ended there")

    def _on_action(self, msg: PlannedAction) -> None:
        with self._lock:
            if msg.stats.ticks < self._planner_ticks:
                self._planner_restarted.set()  # its parameters are the YAML's again
            self._planner_ticks = msg.stats.ticks
            ep = self._episode
            if ep is not None and msg.episode_id == ep.episode_id and msg.step < ep.length:
                ep.add_action(msg, time.monotonic())

    def _on_objects(self, msg: ObjectStates) -> None:
        """A restarted (or self-reset) simulator shows in its object readings: another
        episode id, or a step count that went back. A tracker without episode ids sends 0
        and is not checked."""
        with self._lock:
            ep = self._episode
            if (ep is None or ep.t0_ns is None or ep.problem or msg.episode_id == 0
                    or conv.ns_from_time(msg.header.stamp) < ep.t0_ns):
                return
            if msg.episode_id != ep.episode_id:
                ep.problem = (f"the simulator now reports episode {msg.episode_id} (it "
                              "restarted, or someone else reset it)")
            elif msg.step < ep.object_step:
                ep.problem = (f"the simulator's step went back from {ep.object_step} to "
                              f"{msg.step} (it restarted or reset itself)")
            else:
                ep.object_step = msg.step

    def _planner_loaded(self) -> int:
        """Newest model version the planner has accepted (it plans on it from the next
        state on; in lockstep no plan runs between episodes)."""
        status = self.calls.status(self.planner_status)
        values = status_values(status)
        return int(values.get("accepted_model_version", status.model_version))

    def _set_policy(self, policy: str) -> None:
        req = SetParameters.Request(parameters=[Parameter("policy", value=policy)
                                                .to_parameter_msg()])
        res = self.calls.call(self.planner_params, req, self.params["startup_timeout_s"],
                         "set the planner's policy")
        if not res.results or not res.results[0].successful:
            reason = res.results[0].reason if res.results else "no result"
            raise ExperimentError(f"the planner refused policy={policy}: {reason}")

    # ----- the loop -----------------------------------------------------------------------
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
        timeout = p["startup_timeout_s"]
        for client in (self.reset_client, self.trainer.train_client, self.trainer.status_client,
                       self.planner_status, self.planner_params, self.estimator_params):
            self.calls.wait(lambda c=client: c.wait_for_service(timeout_sec=0.2), timeout,
                       f"service {client.srv_name}")
        self.calls.wait(lambda: self.pub_schedule.get_subscription_count() >= 4, timeout,
                   "the simulator, estimator, planner and trainer to subscribe to "
                   "goal_schedule")
        # Before the first episode the estimator already publishes (episode 0, from the
        # first joint state): the first episode starts once it reaches this node and the
        # trainer (topics connect some time after the services appear on a busy machine).
        self.calls.wait(self._states_flow.is_set, timeout, "task states")
        self.calls.wait(lambda: self.count_publishers("planned_action") > 0, timeout,
                   "the planner's planned_action")
        # Both of the trainer's inputs: on a busy machine its planned_action subscription can
        # match seconds after task_state, and the actions sent before it matched are lost.
        self.calls.wait(self.trainer.connected, timeout,
                   "the trainer to receive task states and connect to planned_action")
        if self.recorder_status is not None:  # it records from the first step on
            since = time.monotonic()
            self.calls.wait(lambda: self._recorder_connected(since), timeout,
                       f"{p['recorder']} to match every publisher of its topics and the "
                       f"{p['estimator']} and {p['planner']} to match it")
            self.get_logger().info(f"{p['recorder']} has matched every publisher")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_config(p)
        log = MetricsLog(self.run_dir / "metrics.csv")
        status = self.trainer.status()
        self.trainer.total = status.num_transitions
        values = status_values(status)
        episode_id = max(int(values.get("max_episode_id", status.num_episodes)), 0) + 1
        plan = pddm_plan(self.budget)
        self.get_logger().info(
            f"run '{p['run_name']}' in {self.run_dir}: {self.budget.random_rollouts} random "
            f"episodes, then {self.budget.iterations} iterations x "
            f"({self.budget.rollouts_per_iteration} MPC + "
            f"{self.budget.random_rollouts_per_iteration} random), {self.length} steps each; "
            f"the trainer holds {status.num_transitions} transitions")
        self._model_version = status.model_version
        self._next_episode_id = episode_id
        run_experiment(plan, self, self.task, lambda row: self._append(log, row),
                       self.get_logger().info)
        self.trainer.flush_backlog()
        if self.trainer.backlog:
            self.get_logger().warning(
                f"{len(self.trainer.backlog)} episode(s) the trainer missed were not sent (it is "
                "down); their transitions are not in the dataset")
        self.get_logger().info(
            f"done: results in {self.run_dir.resolve()} (metrics.csv, learning_curve.png, "
            f"rollout_latest, config.yaml)")

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

    # ----- the backend of core.experiment.run_experiment -------------------------------------
    def train(self, iteration: int) -> None:
        self._model_version = self.trainer.train(
            iteration, self.budget.iterations, self._model_version, self.params["train_epochs"],
            self.params["train_timeout_s"], self._planner_loaded)

    def run_episode(self, step: Step, index: int) -> EpisodeOutcome:
        """One episode of the plan (seed ``seed + id``); an interrupted one runs again under
        the next id once every node answers."""
        for _ in range(MAX_INTERRUPTIONS + 1):
            episode_id = self._next_episode_id
            self._next_episode_id += 1
            try:
                return self._episode_run(episode_id, step,
                                         self.params["seed"] + episode_id, self._model_version)
            except EpisodeInterrupted as exc:
                self.diagnostics.problem(
                    "episode_interrupted", f"episode {episode_id} interrupted: {exc}; it "
                    f"runs again as episode {episode_id + 1} once every node answers")
                self._wait_for_nodes()
        raise ExperimentError(f"{MAX_INTERRUPTIONS + 1} episodes in a row were interrupted")

    def _wait_for_nodes(self) -> None:
        """After an interruption: the estimator and the planner answer again (a respawned
        one is up). The simulator answers the next reset; the trainer is not needed."""
        timeout = self.params["startup_timeout_s"]
        self.calls.call(self.estimator_params, GetParameters.Request(names=["task"]), timeout,
                   "wait for the state estimator")
        self.calls.status(self.planner_status)

    def _episode_run(self, episode_id: int, step: Step, seed: int,
                     model_version: int) -> EpisodeOutcome:
        p = self.params.snapshot()
        self.trainer.flush_backlog()
        # Every episode: a respawned planner starts with the YAML's policy and must have the
        # model before an MPC episode starts.
        self._set_policy("plan" if step.policy == "mpc" else "explore")
        if step.policy == "mpc" and model_version > 0:
            self.calls.wait(lambda: self._planner_loaded() >= model_version, p["startup_timeout_s"],
                       f"the planner to load model v{model_version}")
        self._planner_restarted.clear()
        record = EpisodeRecord(episode_id, self.length)
        with self._lock:
            self._episode = record
        start = time.monotonic()
        try:
            res = self.calls.call(self.reset_client, ResetEpisode.Request(
                seed=seed % 2**32, task=self.task.name, episode_id=episode_id),
                p["startup_timeout_s"], "reset the simulator")
            if not res.success:
                raise ExperimentError(f"the simulator refused the reset: {res.message}")
            goals = self.task.episode_goals(seed, self.length + 1)
            record.schedule = GoalSchedule(task=self.task.name, episode_id=episode_id,
                                    episode_length=self.length, goal_dim=self.task.goal_dim,
                                    goals=goals.double().flatten().tolist())
            record.schedule.header.stamp = res.first_observation_stamp
            record.schedule.header.frame_id = self.task.goal_frame
            with self._lock:
                record.t0_ns = conv.ns_from_time(res.first_observation_stamp)
                record.started = time.monotonic()
            self.pub_schedule.publish(record.schedule)
            self._watch_episode(record, step, p)
            # The last action can trail the last state; a lost sample is resent within 3 s.
            # One publisher's samples arrive in order, so a gap before the newest action is
            # a step the planner skipped (realtime: two states within one tick), not a
            # sample on its way: only the last action is waited for.
            try:
                self.calls.wait(lambda: max(record.actions, default=-1) >= record.length - 1, 3.5,
                           "")
            except CallFailed:
                pass
        except EpisodeInterrupted:
            with self._lock:  # what ran of it is data too; not across a simulator restart
                request = None if record.problem else record.store_request(self.task.name)
            if request is not None and request.state_steps:
                self.trainer.backlog.add(request)
            raise
        finally:
            with self._lock:
                self._episode = None
        missing, missing_actions = record.missing()
        if missing or missing_actions:
            self.get_logger().warning(f"episode {episode_id}: no state for steps "
                                      f"{missing[:10]}, no action for {missing_actions[:10]}")
        states, actions = record.arrays(self.task.state_dim, self.task.action_dim)
        # The callbacks no longer write to the record (it is not the current episode).
        transitions = self.trainer.confirm_episode(record)
        latencies = [a.stats.plan_latency_ms for a in record.actions.values()
                     if not a.stats.fallback and a.stats.planner not in ("exploration", "hold")]
        return EpisodeOutcome(
            episode_id=episode_id, seed=seed, policy=step.policy, states=states,
            actions=actions, goals=goals[: record.length + 1].numpy(),  # a drop ends it early
            transitions=transitions, plan_ms=latencies,
            misses=sum(a.stats.fallback for a in record.actions.values()),
            model_version=model_version if step.policy == "mpc" else 0,
            wall_s=time.monotonic() - start)

    def _append(self, log: MetricsLog, row: dict[str, Any]) -> None:
        log.append(row)
        for key in ("score", "return", "tracking_error"):
            self.pub_numbers[key].publish(Float64(data=float(row[key])))

    def _watch_episode(self, record: EpisodeRecord, step: Step, p: dict[str, Any]) -> None:
        """Wait for the episode's last state. EpisodeInterrupted when a node of the loop
        stopped (no fresh state or no command for ``stall_timeout_s``) or the simulator
        restarted; a restarted planner gets its policy again."""
        stall = p["stall_timeout_s"]
        deadline = record.started + p["episode_timeout_s"]
        while not record.done.wait(0.05):
            if self._stop.is_set():
                raise ExperimentError("stopped")
            now = time.monotonic()
            with self._lock:
                problem = record.stall(now, stall)
            if problem:
                raise EpisodeInterrupted(problem)
            if now > deadline:
                raise ExperimentError(f"episode {record.episode_id} did not finish in "
                                      f"{p['episode_timeout_s']} s ({len(record.states)} "
                                      "states)")
            if self._planner_restarted.is_set():
                self._planner_restarted.clear()
                self.get_logger().warning("the planner restarted: setting its policy again")
                self._set_policy("plan" if step.policy == "mpc" else "explore")

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

    def _write_config(self, own: dict[str, Any]) -> None:
        """Parameters of this node and of the others, as they run, into config.yaml."""
        config: dict[str, Any] = {"experiment": own}
        for name in own["config_nodes"]:
            try:
                config[name] = self._node_parameters(name)
            except CallFailed as exc:
                config[name] = f"unavailable: {exc}"
        with (self.run_dir / "config.yaml").open("w") as f:
            yaml.safe_dump(config, f, sort_keys=True)

    def _node_parameters(self, name: str) -> dict[str, Any]:
        lister = self.create_client(ListParameters, f"{name}/list_parameters",
                                    callback_group=self._group)
        getter = self.create_client(GetParameters, f"{name}/get_parameters",
                                    callback_group=self._group)
        try:
            names = list(self.calls.call(lister, ListParameters.Request(), 10.0,
                                    f"{name} parameters").result.names)
            values = self.calls.call(getter, GetParameters.Request(names=names), 10.0,
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

