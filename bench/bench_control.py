#!/usr/bin/env python3
"""Control loop in real time: does the planner node hold 10 Hz and 30 Hz while the trainer
trains on the other core?

What runs: the real stack as separate processes, started like the launch files start them
(installed ``config/*.yaml`` for Baoding in realtime mode): ``shadow_hand_sim`` (MuJoCo on
the wall clock), ``state_estimator``, ``dynamics_trainer`` and ``mpc_planner`` (policy
``plan``, MPPI on PDDM's 3 x 2 x 250 ensemble, H=7, one torch thread). The planner acts on
the estimator's open-ended episode 0 (``act_without_schedule``). Its model comes the way it
does in the stack: the bench first writes a dataset of PDDM-style random rollouts (30 steps,
random joint velocities held 2 steps) from the simulator module into the trainer's
``dataset_dir``, sends a goal to the trainer's ``~/train`` action and the trainer publishes
the model on ``model_update``. During every measurement window the next goal goes out as
soon as the previous goal's result arrives, i.e. its job has ended (40 epochs, 1 torch
thread at nice 10 as configured), so one core is busy training and each accepted job
sends the planner a new model (the sanity bound is lifted so every job is published, as in
online learning).

Configurations, switched at run time through the planner's parameters: 10 Hz with PDDM's
N=700 (>= 600 ticks), 30 Hz with N=700 and 30 Hz with N=200 (>= 1000 ticks each). What runs
at 30 Hz is the planner's tick: a command out every 33.3 ms and one new plan per tick from
the newest state (one-period budget, else the previous plan's next action and a counted
miss). The simulator and the estimator stay at PDDM's 0.1 s control step (frame_skip 40),
so each state is planned from up to three times.

Measured per configuration, all from the bench's own subscriber (single-threaded executor,
``time.monotonic()`` on receipt, i.e. what a robot driver subscribed to the planner sees):
- action period error: | inter-arrival of ``joint_commands`` - 1/rate | in ms (p50/p99/max),
  and the same from the ``planned_action`` header stamps (the planner's send times);
- deadline misses per 1000 ticks, from ``PlannerStats.deadline_misses`` / ``ticks``;
- plan time p50/p99 (``~/latency_ms``, one per plan used);
- state-to-command latency: receipt of ``task_state`` k -> receipt of the first
  ``planned_action`` planned from state k. Which state a plan started from follows from the
  realtime loop (``mbrl_ros/core/planning/loop.py``): a tick that leaves the planning thread idle
  starts a plan from that tick's newest state, which is the step its command carries, and
  the next command carrying a fresh plan result executes it (see ``first_commands``).
  The design puts it between one and two control periods;
- that training ran: jobs completed and trainer CPU seconds in the window (psutil), the CPU
  share of every node, and the load average.

Fairness: every configuration is measured on the same processes, same model size, same
training load; the first ticks after a parameter change are discarded.

Budget: about 3.5 minutes (<= 5 min): data 10 s, start-up 20 s, first model 10 s, windows
62 + 34 + 34 s plus settling. ``--quick`` (one 30 Hz N=200 window of 150 ticks, a smaller
dataset) runs in about 30 s; it is the smoke test's.

Run: ``.venv/bin/python bench/bench_control.py [--quick] [--out bench/results/control.json]``
(also writes ``control.png`` beside the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

import benchlib

NAME = "bench_control"
DEFAULT_OUT = benchlib.RESULTS / "control.json"
NS = f"/bench_control_{os.getpid()}"
ROLLOUT_STEPS = 30  # PDDM's random rollouts
SETTLE_S = 2.0  # wall seconds discarded after a parameter change
T = TypeVar("T")
log = benchlib.Logger(NAME)


@dataclass(frozen=True)
class Config:
    """One measured configuration of the planner."""

    name: str
    rate_hz: float
    num_samples: int
    ticks: int  # commands to receive in the window
    horizon: int = 7

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz


FULL = (Config("10hz_n700", 10.0, 700, 620), Config("30hz_n700", 30.0, 700, 1020),
        Config("30hz_n200", 30.0, 200, 1020))
QUICK = (Config("30hz_n200", 30.0, 200, 150),)


# ----- environment, data, processes -----------------------------------------------------------
def write_random_rollouts(root: Path, transitions: int, seed: int = 0) -> int:
    """PDDM-style random rollouts of the simulated Baoding hand into an EpisodeDataset at
    ``root`` (what the trainer would have recorded from the experiment's random episodes);
    returns the number of transitions written."""
    from mbrl_ros.core.data.dataset import EpisodeDataset
    from mbrl_ros.core.data.recorder import task_reward_fn
    from mbrl_ros.core.planning.exploration import ExplorationConfig, RandomVelocityExploration
    from mbrl_ros.nodes.task_params import default_task_values, task_from_params
    from mbrl_ros.sim import HandSim

    task = task_from_params({**default_task_values(), "task": "baoding"})
    reward = task_reward_fn(task)
    sim = HandSim("baoding")
    dataset = EpisodeDataset(root)
    explore = RandomVelocityExploration(task.action_dim, ExplorationConfig(initial_action="zero"),
                                        seed)
    written = 0
    episode = 0
    while written < transitions:
        goals = task.episode_goals(seed + episode, ROLLOUT_STEPS + 1).numpy()
        sim.reset(seed=seed + episode)
        explore.reset(episode)
        states, actions = [], []
        sim.set_goal(goals[0].reshape(sim.scene.goal_shape), task.goal_frame)
        states.append(sim.observe().task_obs)
        for k in range(ROLLOUT_STEPS):
            actions.append(explore.act())
            sim.set_goal(goals[k + 1].reshape(sim.scene.goal_shape), task.goal_frame)
            states.append(sim.step(actions[-1]).observation.task_obs)
        s = np.asarray(states, dtype=np.float32)
        a = np.asarray(actions, dtype=np.float32)
        r, done = reward(s[1:], a, goals[1:])
        dataset.append_episode(state=s[:-1], action=a, next_state=s[1:], reward=r,
                               time=0.1 * np.arange(ROLLOUT_STEPS), done=done,
                               meta={"policy": "random", "source": NAME})
        written += ROLLOUT_STEPS
        episode += 1
    return written


def _die_with_parent() -> None:
    """Child side: SIGTERM when the bench dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NodeProcesses:
    """The stack's node processes: output to per-node log files, stopped with SIGINT and
    then SIGKILL by :meth:`stop` (the bench calls it on success, error and Ctrl-C)."""

    def __init__(self, work: Path) -> None:
        from mbrl_ros.launch.packages import package_share

        self.work = work
        self.config = package_share("mbrl_ros") / "config"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, exe: str, config: str, params: dict[str, Any]) -> psutil.Process:
        """Start executable ``exe`` with ``config/<config>.yaml``, Baoding, realtime, then
        ``params`` (like ``stack.launch.yaml``)."""
        from mbrl_ros.launch.packages import executable

        argv = [sys.executable, str(executable("mbrl_ros", exe)), "--ros-args",
                "-r", f"__ns:={NS}"]
        for name in (config, "baoding", "mode_realtime"):
            argv += ["--params-file", str(self.config / f"{name}.yaml")]
        for key, value in params.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            argv += ["-p", f"{key}:={text}"]
        self.logs[exe] = self.work / f"{exe}.log"
        with open(self.logs[exe], "w") as out:
            self.procs[exe] = subprocess.Popen(
                argv, cwd=self.work, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        return psutil.Process(self.procs[exe].pid)

    def check_alive(self) -> None:
        """RuntimeError naming a node that exited, with the tail of its log."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n"
                                   f"{self.tail(name)}")

    def tail(self, name: str, lines: int = 25) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGINT to every node, SIGKILL to those still alive after ``timeout``; exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5.0)
        return {name: proc.returncode for name, proc in self.procs.items()}


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               check: Callable[[], None] | None = None, poll: float = 0.02) -> T:
    """Poll ``condition`` until truthy; TimeoutError naming ``what``; ``check`` may raise
    (e.g. a node died) on every poll."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


# ----- what the bench receives ------------------------------------------------------------------
@dataclass(frozen=True)
class ActionRecord:
    """One ``planned_action`` as received: what the analysis needs of it."""

    received: float  # time.monotonic() at receipt (s)
    sent: float  # header stamp (s, ROS time of publication)
    ticks: int
    misses: int
    episode: int
    step: int
    fallback: bool
    fresh: bool  # carries a plan result used for the first time (not a kept plan's next action)
    planner: str
    num_samples: int
    model_version: int


@dataclass
class Received:
    """Everything the probe records, appended by the executor thread."""

    commands: list[float] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    states: dict[tuple[int, int], float] = field(default_factory=dict)
    plan_ms: list[tuple[float, float]] = field(default_factory=list)
    jobs_done: list[tuple[float, bool]] = field(default_factory=list)


class Probe:
    """The bench's ROS node: subscribes to the planner's outputs and the estimator's states
    (single-threaded executor in a thread), sends the trainer's ``~/train`` goals, calls the
    planner's services."""

    def __init__(self) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.action import ActionClient
        from std_msgs.msg import Float64, Float64MultiArray

        from mbrl_ros.action import TrainModel
        from mbrl_ros.msg import PlannedAction, TaskState, TrainingMetrics

        self.lock = threading.Lock()
        self.rx = Received()
        self._ros = benchlib.ProbeNode("bench_control_probe")
        node = self.node = self._ros.node
        node.create_subscription(Float64MultiArray, f"{NS}/joint_commands", self._on_command, 50)
        node.create_subscription(PlannedAction, f"{NS}/planned_action", self._on_action, 200)
        node.create_subscription(TaskState, f"{NS}/task_state", self._on_state, 50)
        node.create_subscription(Float64, f"{NS}/mpc_planner/latency_ms", self._on_latency, 50)
        node.create_subscription(TrainingMetrics, f"{NS}/dynamics_trainer/metrics",
                                 self._on_metrics, 10)
        self.train_client = ActionClient(node, TrainModel, f"{NS}/dynamics_trainer/train")
        self.param_client = node.create_client(SetParameters,
                                               f"{NS}/mpc_planner/set_parameters")
        self._ros.start()

    def close(self) -> None:
        self._ros.close()

    # callbacks: receipt time first, then as little work as possible
    def _on_command(self, _msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.rx.commands.append(now)

    def _on_action(self, msg: Any) -> None:
        now = time.monotonic()
        s = msg.stats
        record = ActionRecord(
            received=now, sent=msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec,
            ticks=int(s.ticks), misses=int(s.deadline_misses), episode=int(msg.episode_id),
            step=int(msg.step), fallback=bool(s.fallback), fresh=len(msg.object_names) > 0,
            planner=s.planner, num_samples=int(s.num_samples), model_version=int(s.model_version))
        with self.lock:
            self.rx.actions.append(record)

    def _on_state(self, msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.rx.states.setdefault((int(msg.episode_id), int(msg.step)), now)

    def _on_latency(self, msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.rx.plan_ms.append((now, float(msg.data)))

    def _on_metrics(self, msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.rx.jobs_done.append((now, bool(msg.accepted)))

    # queries and calls (any thread but the executor's)
    def count(self, what: Callable[[Received], int]) -> int:
        with self.lock:
            return what(self.rx)

    def commands_since(self, t: float) -> int:
        with self.lock:
            commands = self.rx.commands
            n = 0
            while n < len(commands) and commands[-1 - n] > t:
                n += 1
            return n

    def fresh_plans_since(self, t: float, num_samples: int) -> int:
        """Commands received after ``t`` that carry a new plan made with ``num_samples``."""
        with self.lock:
            return sum(a.received > t and a.fresh and a.num_samples == num_samples
                       for a in self.rx.actions[-50:])

    def snapshot(self) -> Received:
        with self.lock:
            return Received(list(self.rx.commands), list(self.rx.actions), dict(self.rx.states),
                            list(self.rx.plan_ms), list(self.rx.jobs_done))

    def call(self, client: Any, request: Any, timeout: float, what: str) -> Any:
        wait_until(lambda: client.wait_for_service(timeout_sec=0.1), 60, f"service {what}")
        future = client.call_async(request)
        wait_until(future.done, timeout, f"the response of {what}")
        return future.result()

    def set_planner(self, **values: float | int) -> None:
        """Set planner parameters at run time (``~/set_parameters``); RuntimeError if refused."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        params = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        res = self.call(self.param_client, SetParameters.Request(parameters=params), 30,
                        "mpc_planner/set_parameters")
        refused = [r.reason for r in res.results if not r.successful]
        if refused:
            raise RuntimeError(f"planner refused {values}: {refused}")


class TrainingLoad:
    """Sends the trainer's ``~/train`` action its next goal as soon as the previous goal's
    result has arrived (its job has ended)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.started: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="training-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _wait(self, done: Callable[[], bool], timeout: float, what: str | None) -> bool:
        """Wait until ``done`` (True) or a stop (False). After ``timeout``: TimeoutError
        naming ``what``, or False when ``what`` is None."""
        deadline = time.monotonic() + timeout
        while not done():
            if self._stop.is_set():
                return False
            if time.monotonic() > deadline:
                if what is None:
                    return False
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            self._stop.wait(0.02)
        return True

    def _run(self) -> None:
        from mbrl_ros.action import TrainModel

        client = self.probe.train_client
        try:
            if not self._wait(client.server_is_ready, 60, "dynamics_trainer/train action"):
                return
            while not self._stop.is_set():
                sent = client.send_goal_async(TrainModel.Goal())
                if not self._wait(sent.done, 30, "answer to a dynamics_trainer/train goal"):
                    return
                handle = sent.result()
                if not handle.accepted:  # the previous job is still finishing
                    self._stop.wait(0.1)
                    continue
                self.started.append(time.monotonic())
                # then the next goal (a job that outlasts 300 s: it is refused until the end)
                self._wait(handle.get_result_async().done, 300, None)
        except BaseException as exc:  # reported by the main thread
            self.error = exc


# ----- analysis (pure functions of what was received) -------------------------------------------
def period_errors_ms(times: Sequence[float], period_s: float) -> np.ndarray:
    """| inter-arrival - nominal period | in ms for consecutive receipt times (s)."""
    t = np.asarray(times, dtype=np.float64)
    return np.abs(np.diff(t) - period_s) * 1e3 if t.size > 1 else np.zeros(0)


def first_commands(actions: Sequence[ActionRecord]) -> dict[tuple[int, int], float]:
    """Receipt time of the first command planned from each state ``(episode, step)``.

    Realtime planning (``PlanningLoop.tick``): at each tick the planner takes its newest
    state, sends a command tagged with that state's step and, if its planning thread is idle
    after the tick, starts a plan from that state. The thread is idle after a tick that used
    a fresh plan result (on time or late) or that counted no miss (nothing was in flight).
    The next command carrying a fresh result executes that plan. A gap in the tick counter,
    a hold or an exploration tick makes the source unknown until the next plan is started.
    """
    first: dict[tuple[int, int], float] = {}
    source: tuple[int, int] | None = None
    prev: ActionRecord | None = None
    for rec in sorted(actions, key=lambda r: r.ticks):
        if prev is None or rec.ticks != prev.ticks + 1:
            source = None
        if rec.planner in ("hold", "exploration"):
            source = None
            prev = rec
            continue
        if rec.fresh and source is not None:
            first.setdefault(source, rec.received)
        missed = prev is not None and rec.misses > prev.misses
        if rec.fresh or not missed:
            source = (rec.episode, rec.step)
        elif prev is None:
            source = None
        prev = rec
    return first


def window_stats(rx: Received, config: Config, t0: float, t1: float) -> dict[str, Any]:
    """The numbers of one configuration from what was received in ``[t0, t1]``."""
    commands = [t for t in rx.commands if t0 <= t <= t1]
    actions = [a for a in rx.actions if t0 <= a.received <= t1]
    if len(actions) < 2:
        raise RuntimeError(f"{config.name}: only {len(actions)} planned actions in the window")
    first, last = min(actions, key=lambda a: a.ticks), max(actions, key=lambda a: a.ticks)
    ticks = last.ticks - first.ticks
    misses = last.misses - first.misses
    sent = sorted(a.sent for a in actions)
    planned_from = first_commands(rx.actions)
    latencies = [planned_from[key] - t for key, t in rx.states.items()
                 if t0 <= t and key in planned_from and planned_from[key] <= t1]
    states_in_window = sum(1 for t in rx.states.values() if t0 <= t <= t1)
    plan_ms = [ms for t, ms in rx.plan_ms if t0 <= t <= t1]
    versions = [a.model_version for a in actions]
    errors = period_errors_ms(commands, config.period_s)
    latencies_ms = np.asarray(latencies, dtype=np.float64) * 1e3
    return {
        "rate_hz": config.rate_hz, "period_ms": config.period_s * 1e3,
        "num_samples": config.num_samples, "horizon": config.horizon,
        "window_s": t1 - t0, "ticks": ticks, "commands_received": len(commands),
        "commands_expected": (t1 - t0) * config.rate_hz,
        "period_error_ms": benchlib.summary(errors),
        "send_period_error_ms": benchlib.summary(period_errors_ms(sent, config.period_s)),
        "deadline_misses": misses,
        "misses_per_1000": 1000.0 * misses / ticks if ticks else float("nan"),
        "fallback_commands": sum(a.fallback for a in actions),
        "plan_ms": benchlib.summary(plan_ms),
        "plans_over_budget": sum(ms > config.period_s * 1e3 for ms in plan_ms),
        "state_to_command_ms": benchlib.summary(latencies_ms),
        "states_received": states_in_window,
        "states_planned_from": len(latencies),
        "planners_seen": sorted({a.planner for a in actions}),
        "model_versions": [min(versions), max(versions)],
        "_samples": {"period_error_ms": errors, "state_to_command_ms": latencies_ms},
    }


# ----- the run ---------------------------------------------------------------------------------
@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the nodes are stopped either way."""
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for name, proc in procs.items():
        try:
            times = proc.cpu_times()
            out[name] = times.user + times.system
        except psutil.Error:
            out[name] = float("nan")
    return out


def measure(configs: Sequence[Config], transitions: int, work: Path) -> dict[str, Any]:
    """Start the stack, train a first model, then measure each configuration with training
    running back to back; every node is stopped on the way out."""
    started = time.monotonic()
    log(f"phase 1/4: writing {transitions} random-rollout transitions for the trainer")
    dataset = work / "dataset"
    written = write_random_rollouts(dataset, transitions)
    log(f"  {written} transitions in {time.monotonic() - started:.1f} s")

    nodes = NodeProcesses(work)
    probe: Probe | None = None
    load: TrainingLoad | None = None
    first = configs[0]
    try:
        log(f"phase 2/4: starting sim, estimator, trainer and planner under {NS} "
            f"(ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']})")
        procs = {
            "shadow_hand_sim": nodes.start("shadow_hand_sim", "sim", {}),
            "state_estimator": nodes.start("state_estimator", "estimator", {}),
            "dynamics_trainer": nodes.start("dynamics_trainer", "trainer", {
                "dataset_dir": str(dataset), "max_val_loss": 1e12}),
            "mpc_planner": nodes.start("mpc_planner", "planner", {
                "policy": "plan", "act_without_schedule": True,
                "end_at_drop": False,  # one open-ended episode: a drop must not stop the clock
                "control_rate_hz": float(first.rate_hz), "num_samples": first.num_samples,
                "horizon": first.horizon}),
        }
        probe = Probe()
        procs["bench"] = psutil.Process()
        wait_until(lambda: probe.count(lambda rx: len(rx.actions)) > 0, 120,
                   "the planner's first command", nodes.check_alive)
        log(f"  stack up in {time.monotonic() - started:.1f} s (since the start)")

        log("phase 3/4: first model (trainer ~/train -> model_update -> planner)")
        load = TrainingLoad(probe)
        load.start()
        wait_until(lambda: probe.count(lambda rx: sum(
            a.fresh and a.model_version > 0 for a in rx.actions)), 180,
            "the planner's first plan on a learned model", nodes.check_alive)
        log(f"  planning on model version "
            f"{probe.count(lambda rx: rx.actions[-1].model_version)}; training goes on")
        gc.collect()
        gc.freeze()  # keep the probe's collector from pausing its receipts

        results: dict[str, Any] = {}
        for i, config in enumerate(configs):
            mark = time.monotonic()
            probe.set_planner(control_rate_hz=float(config.rate_hz),
                              num_samples=config.num_samples)
            wait_until(lambda c=config, m=mark: probe.fresh_plans_since(m, c.num_samples), 60,
                       f"plans with N={config.num_samples}", nodes.check_alive)
            settle = time.monotonic() + SETTLE_S
            wait_until(lambda s=settle: time.monotonic() > s, SETTLE_S + 1, "settling")
            log(f"phase 4/4 [{i + 1}/{len(configs)}]: {config.name}: {config.rate_hz:g} Hz, "
                f"N={config.num_samples}, H={config.horizon}, {config.ticks} ticks "
                f"(~{config.ticks / config.rate_hz:.0f} s)")
            load_start = os.getloadavg()
            cpu_start = cpu_seconds(procs)
            jobs_start = len(load.started)
            t0 = time.monotonic()
            wait_until(lambda s=t0, c=config: probe.commands_since(s) >= c.ticks,
                       3 * config.ticks / config.rate_hz + 30, f"{config.ticks} commands",
                       nodes.check_alive, poll=0.1)
            t1 = time.monotonic()
            cpu_end = cpu_seconds(procs)
            load_end = os.getloadavg()
            if load.error is not None:
                raise RuntimeError(f"the training load failed: {load.error!r}")
            rx = probe.snapshot()
            stats = window_stats(rx, config, t0, t1)
            cpu = {k: cpu_end[k] - cpu_start[k] for k in procs}
            started_in_window = len(load.started) - jobs_start
            done_in_window = sum(1 for t, _ in rx.jobs_done if t0 <= t <= t1)
            stats["training"] = {
                "ran_concurrently": started_in_window + done_in_window > 0,
                "jobs_started": started_in_window,
                "jobs_completed": done_in_window,
                "models_accepted": sum(1 for t, ok in rx.jobs_done if t0 <= t <= t1 and ok),
                "trainer_cpu_s": cpu["dynamics_trainer"],
                "trainer_cpu_fraction": cpu["dynamics_trainer"] / (t1 - t0),
            }
            stats["cpu_fraction"] = {k: v / (t1 - t0) for k, v in cpu.items()}
            stats["load_average_start"] = list(load_start)
            stats["load_average_end"] = list(load_end)
            results[config.name] = stats
            log(f"  period error p50 {stats['period_error_ms']['p50']:.2f} / p99 "
                f"{stats['period_error_ms']['p99']:.2f} / max "
                f"{stats['period_error_ms']['max']:.1f} ms; "
                f"{stats['misses_per_1000']:.0f} misses/1000 ticks; plan p50 "
                f"{stats['plan_ms']['p50']:.1f} / p99 {stats['plan_ms']['p99']:.1f} ms; "
                f"state->command p50 {stats['state_to_command_ms']['p50']:.0f} ms; "
                f"{stats['training']['jobs_completed']} trainings, trainer "
                f"{100 * stats['training']['trainer_cpu_fraction']:.0f}% of a core")
        return results
    finally:
        if load is not None:
            load.stop()
        codes = nodes.stop()
        if probe is not None:
            probe.close()
        log(f"nodes stopped (exit codes {codes}) after {time.monotonic() - started:.0f} s")


# ----- output ----------------------------------------------------------------------------------
def plot(result: dict[str, Any], rx_by_config: dict[str, dict[str, np.ndarray]], path: Path,
         command: str) -> None:
    """CDFs of the action period error and the state-to-command latency per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for name, stats in result["configs"].items():
        data = rx_by_config[name]
        err = np.sort(np.maximum(data["period_error_ms"], 1e-3))
        label = (f"{stats['rate_hz']:g} Hz, N={stats['num_samples']}: p99 "
                 f"{stats['period_error_ms']['p99']:.1f} ms, "
                 f"{stats['misses_per_1000']:.0f} misses/1000 ticks")
        line, = ax1.plot(err, np.arange(1, err.size + 1) / err.size, label=label)
        lat = np.sort(data["state_to_command_ms"])
        if lat.size:
            ax2.plot(lat, np.arange(1, lat.size + 1) / lat.size, color=line.get_color(),
                     label=f"{stats['rate_hz']:g} Hz, N={stats['num_samples']}: p50 "
                           f"{stats['state_to_command_ms']['p50']:.0f} ms")
            for k in (1, 2):
                ax2.axvline(k * stats["period_ms"], color=line.get_color(), ls=":", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_xlabel("| command inter-arrival - period | (ms)")
    ax1.set_ylabel("fraction of ticks")
    ax1.set_title("Action period error (receipt, trainer busy)")
    ax1.legend(fontsize=7, loc="upper left")
    ax2.set_xlabel("task_state k received -> first command planned from it (ms)")
    ax2.set_title("State-to-command latency (dotted: 1 and 2 periods)")
    ax2.legend(fontsize=7, loc="lower right")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    benchlib.stamp(fig, benchlib.footnote(command))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON (the PNG "
                        "goes beside it as <stem>.png)")
    parser.add_argument("--quick", action="store_true", help="one short 30 Hz window (smoke)")
    parser.add_argument("--transitions", type=int, default=None, help="random-rollout "
                        "transitions the trainer trains on (default 3000, quick 300)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    configs = QUICK if args.quick else FULL
    transitions = args.transitions or (300 if args.quick else 3000)
    ros = benchlib.ros_environment()
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench_control_"))
    os.environ.setdefault("ROS_LOG_DIR", str(work / "ros_log"))
    try:
        with sigterm_as_interrupt():
            configs_out = measure(configs, transitions, work)
    except KeyboardInterrupt:
        log("interrupted: no result written")
        return 130
    finally:
        if args.keep:
            log(f"work directory kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    # Raw samples for the picture only (the JSON keeps the summaries).
    samples = {name: stats.pop("_samples") for name, stats in configs_out.items()}
    result = {
        "benchmark": "control",
        "quick": args.quick,
        "setup": {
            "task": "baoding", "planner": "mppi", "ensemble": "3 x [250, 250] relu",
            "torch_threads": {"planner": 1, "trainer": 1}, "trainer_niceness": 10,
            "sim_control_period_s": 0.1, "estimator_control_period_s": 0.1,
            "at_30hz": "the planner's tick (command + one plan per tick); sim and estimator "
                       "stay at 10 Hz, each state is planned from up to 3 times",
            "dataset_transitions": transitions, "train_epochs": 40,
            "settle_s": SETTLE_S, "ros": ros,
        },
        "configs": configs_out,
        "elapsed_s": time.monotonic() - start,
    }
    path = benchlib.write_result(args.out, result)
    picture = path.with_suffix(".png")
    plot(result, samples, picture, benchlib.command_line())
    log(f"wrote {path} and {picture} in {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
