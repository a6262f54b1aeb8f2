#!/usr/bin/env python3
"""Soak: the whole learning stack for a long time; memory, threads and data counts.

What runs: ``mbrl-ros launch mbrl_ros baoding.launch.yaml`` (``python -m
mbrl_ros.launch.cli``; simulator, state estimator, dynamics trainer, MPC planner and
experiment manager as processes under the launcher, respawn on as shipped) in lockstep mode,
the learning run, or ``--mode realtime``. PDDM's loop keeps collecting, retraining and
publishing models for the whole ``--duration`` (default 30 min); then the bench stops the
launcher with SIGINT, as Ctrl-C would, and the nodes shut down cleanly.

The budget (an overrides file applied last, see ``soak_overrides``): PDDM's model and
planner as shipped (ensemble 3 x 2 x 250, 40 epochs, batch 512, MPPI N=700, H=7, 100-step
Baoding episodes), so a plan, a training job and a model message cost what they cost in a
real run, with the demo's iteration (20 random episodes first, then per iteration: retrain
from scratch, 5 MPC + 1 random episode; PDDM's is 40 + 5). Measured here: an iteration
takes about 20 s plus training (4 s on 2,000 transitions, 9 s on 5,000), so in 30 minutes
the trainer retrains, the planner loads a new model and the experiment renders its rollout
about 40 times (with PDDM's 40 rollouts per iteration it would be about 7): what a soak
needs to show a per-cycle leak. The iteration count is set from the duration so the run
cannot end before it, yet small (the experiment keeps its plan as a list).
``--quick`` (the smoke test's) shrinks everything: 20-step episodes, 2 x 2 x 64 ensemble
trained 5 epochs, N=100, no rendering, 50 s (about 40 trainings).

Sampled every ``--interval`` seconds (default 5) from /proc for the launcher and every
child process of it (found by parent PID; the node name from its ``__node:=`` remap): RSS
(``VmRSS``), anonymous RSS (``RssAnon``), PSS (``/proc/<pid>/smaps_rollup``, which counts
shared library pages once across the processes), thread count and CPU time. A PID change
for a node is a respawn. Reported per process: RSS at the end of warm-up, at the end, max;
the growth slope (MB/hour, least squares over the samples after warm-up, on the current
PID); threads min/max after warm-up and at the end; CPU seconds; respawns. Warm-up ends
at 10% of the run or when the first model is accepted, whichever is later (at most half the
run): before the first model the planner has not loaded torch weights and the trainer has
not trained. (The experiment renders its first rollout one iteration later, which loads
the offscreen GL stack: in runs of a few minutes that step lands after warm-up.)

The trainer must hold its dataset in memory (the whole dataset is its training set), so its
RSS grows with the data; ``trainer_data_mb_per_hour`` gives that expected rate (in-memory
bytes per stored transition x transitions stored per hour after warm-up), to read the
trainer's slope against.

Transitions: "executed" is counted by the bench's own subscriber from the stack's topics,
independent of the trainer: a transition (episode N, step k) was executed when the planner's
``planned_action`` for (N, k) and the estimator's ``task_state`` (N, k + 1) were both
published, k < T (the episode's length from its ``goal_schedule``), i.e. the action led to a
next state. The subscriber uses the trainer's QoS (reliable, depth 200). Not the
experiment's ``metrics.csv``: its ``transitions`` column is the trainer's own count (not an
independent source) and its ``steps`` end at a drop. Not the planner's stats: they count
plans, not steps that reached the hand and produced a state. "Recorded" is the trainer's
dataset read from disk after the clean stop (grouped by the stream's episode id in each
episode file's meta) and its ``~/num_transitions`` topic (last value before the stop). The
episode running when the stop came is accounted separately: the trainer stores what it has
of it at shutdown (``flushed``), and the bench may have seen a step more or less than it.
In realtime mode step 0 of an episode has no action by design (README, Known limitations),
so an episode executes T - 1 transitions.

Run: ``.venv/bin/python bench/bench_soak.py [--duration 1800] [--mode lockstep|realtime]
[--out bench/results/soak.json]`` (also writes ``soak_memory.png`` beside the JSON);
``make bench-soak DURATION=1800``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import benchlib

NAME = "bench_soak"
DEFAULT_OUT = benchlib.RESULTS / "soak.json"
DEFAULT_DURATION_S = 1800.0
QUICK_DURATION_S = 50.0
NS = "/hand"
RUN_NAME = "soak"
LAUNCHER = "launcher"
NODE_ORDER = ("shadow_hand_sim", "state_estimator", "dynamics_trainer", "mpc_planner",
              "experiment", LAUNCHER)
WARMUP_FRACTION = 0.1
WARMUP_MAX_FRACTION = 0.5
# Far below any real iteration (full: 6 episodes of 100 steps; quick: 3 of 20): the
# experiment's iteration count is set from these so the run cannot end before the soak.
MIN_ITERATION_S = {"full": 2.0, "quick": 0.25}
STOP_TIMEOUT_S = 60.0
MB = 1024.0 * 1024.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
log = benchlib.Logger(NAME)


def soak_overrides(duration_s: float, quick: bool) -> str:
    """The overrides file (applied last by the launch file) for a soak of ``duration_s``."""
    iterations = int(duration_s / MIN_ITERATION_S["quick" if quick else "full"]) + 50
    if quick:
        return f"""\
/**:
  ros__parameters:
    episode_length: 20
/**/dynamics_trainer:
  ros__parameters:
    ensemble:
      members: 2
      hidden: [64, 64]
    train:
      epochs: 5
      batch_size: 64
/**/mpc_planner:
  ros__parameters:
    num_samples: 100
/**/experiment:
  ros__parameters:
    random_rollouts: 8
    iterations: {iterations}
    rollouts_per_iteration: 2
    random_rollouts_per_iteration: 1
    render_rollouts: false
"""
    return f"""\
/**/experiment:
  ros__parameters:
    random_rollouts: 20
    iterations: {iterations}
    rollouts_per_iteration: 5
    random_rollouts_per_iteration: 1
"""


# ----- /proc sampling ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One reading of one process (MB, seconds since the launcher started)."""

    t: float
    pid: int
    rss_mb: float
    anon_mb: float
    pss_mb: float
    threads: int
    cpu_s: float


def _status_fields(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kb(text: str) -> float:
    return float(text.split()[0]) / 1024.0 if text else float("nan")


def read_sample(pid: int, t: float) -> Sample | None:
    """RSS, anonymous RSS, PSS, threads and CPU time of ``pid``; None if it is gone."""
    try:
        status = _status_fields(pid)
        pss = float("nan")
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss = _kb(line.split(":", 1)[1])
                    break
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    after_comm = stat.rsplit(")", 1)[1].split()
    cpu_s = (int(after_comm[11]) + int(after_comm[12])) / CLK_TCK  # utime, stime
    return Sample(t=t, pid=pid, rss_mb=_kb(status.get("VmRSS", "")),
                  anon_mb=_kb(status.get("RssAnon", "")), pss_mb=pss,
                  threads=int(status.get("Threads", "0")), cpu_s=cpu_s)


def node_label(pid: int) -> str | None:
    """A node's name from its ``__node:=`` remap (else its executable's name)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    for arg in argv:
        if arg.startswith("__node:="):
            return arg.split(":=", 1)[1]
    script = next((a for a in argv[1:] if a and not a.startswith("-")), argv[0])
    return Path(script).name or None


def children_of(parent: int) -> dict[str, int]:
    """``{label: pid}`` of the direct children of ``parent`` (from /proc/*/stat)."""
    found: dict[str, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        label = node_label(int(entry.name))
        if label is not None:
            found[label] = int(entry.name)
    return found


class ProcessSampler:
    """Samples the launcher and its children; keeps every sample and every PID seen."""

    def __init__(self, launcher_pid: int, t0: float) -> None:
        self.launcher_pid, self.t0 = launcher_pid, t0
        self.samples: dict[str, list[Sample]] = defaultdict(list)
        self.pids: dict[str, list[int]] = defaultdict(list)
        self.cost_ms: list[float] = []

    def sample(self) -> None:
        start = time.perf_counter()
        t = time.monotonic() - self.t0
        targets = {LAUNCHER: self.launcher_pid, **children_of(self.launcher_pid)}
        for label, pid in targets.items():
            reading = read_sample(pid, t)
            if reading is None:
                continue
            if not self.pids[label] or self.pids[label][-1] != pid:
                self.pids[label].append(pid)
            self.samples[label].append(reading)
        self.cost_ms.append((time.perf_counter() - start) * 1e3)

    def latest(self) -> dict[str, Sample]:
        return {label: s[-1] for label, s in self.samples.items() if s}


# ----- what the bench receives -------------------------------------------------------------------
@dataclass
class Stream:
    """What the bench's subscriber saw (filled by the executor thread, under ``lock``)."""

    states: set[tuple[int, int]] = field(default_factory=set)
    actions: set[tuple[int, int]] = field(default_factory=set)
    lengths: dict[int, int] = field(default_factory=dict)
    drops: dict[int, int] = field(default_factory=dict)
    stale_states: set[tuple[int, int]] = field(default_factory=set)
    trainings: list[dict[str, Any]] = field(default_factory=list)
    num_transitions: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Probe:
    """The bench's ROS node: counts states, actions, schedules, training results and the
    trainer's ``~/num_transitions`` (single-threaded executor in a thread)."""

    def __init__(self, t0: float) -> None:
        import torch
        from std_msgs.msg import Float64

        from mbrl_ros.core.tasks.from_values import stack_task
        from mbrl_ros.msg import GoalSchedule, PlannedAction, TaskState, TrainingMetrics
        from mbrl_ros.nodes.conversions import RECORDED_QOS_DEPTH, SCHEDULE_SUB_QOS
        from mbrl_ros.srv import GetStatus

        self.t0 = t0
        self.stream = Stream()
        task = stack_task("baoding")  # the soak's task, to see where a drop ended one
        self._dims = (task.state_dim, task.goal_dim)
        self._terminal = lambda state, goal: bool(task.terminates(
            torch.tensor(state, dtype=torch.float64), torch.tensor(goal, dtype=torch.float64)))
        self._ros = benchlib.ProbeNode("bench_soak_probe")
        node = self.node = self._ros.node
        node.create_subscription(TaskState, f"{NS}/task_state", self._on_state,
                                 RECORDED_QOS_DEPTH)
        node.create_subscription(PlannedAction, f"{NS}/planned_action", self._on_action,
                                 RECORDED_QOS_DEPTH)
        node.create_subscription(GoalSchedule, f"{NS}/goal_schedule", self._on_schedule,
                                 SCHEDULE_SUB_QOS)
        node.create_subscription(TrainingMetrics, f"{NS}/dynamics_trainer/metrics",
                                 self._on_metrics, 10)
        node.create_subscription(Float64, f"{NS}/dynamics_trainer/num_transitions",
                                 self._on_count, 10)
        self.status_client = node.create_client(GetStatus, f"{NS}/dynamics_trainer/get_status")
        self._ros.start()

    def close(self) -> None:
        self._ros.close()

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _on_state(self, msg: Any) -> None:
        key = (int(msg.episode_id), int(msg.step))
        # A drop ends an episode at that state; the shortened schedule that says so can be
        # replaced in the depth-1 latched publisher by the next episode's before this
        # subscriber (on a busy machine) took it, so the bench sees the drop itself.
        dropped = (not msg.stale and key[1] > 0
                   and (len(msg.state), len(msg.goal)) == self._dims
                   and self._terminal(msg.state, msg.goal))
        with self.stream.lock:
            self.stream.states.add(key)
            if msg.stale:
                self.stream.stale_states.add(key)
            if dropped:
                self.stream.drops[key[0]] = min(key[1], self.stream.drops.get(key[0], key[1]))

    def _on_action(self, msg: Any) -> None:
        with self.stream.lock:
            self.stream.actions.add((int(msg.episode_id), int(msg.step)))

    def _on_schedule(self, msg: Any) -> None:
        with self.stream.lock:
            self.stream.lengths[int(msg.episode_id)] = int(msg.episode_length)

    def _on_metrics(self, msg: Any) -> None:
        record = {"t": self._now(), "accepted": bool(msg.accepted),
                  "model_version": int(msg.model_version),
                  "num_transitions": int(msg.num_transitions),
                  "duration_s": float(msg.duration_s)}
        with self.stream.lock:
            self.stream.trainings.append(record)

    def _on_count(self, msg: Any) -> None:
        with self.stream.lock:
            self.stream.num_transitions.append((self._now(), int(msg.data)))

    def first_model_t(self) -> float | None:
        with self.stream.lock:
            return next((r["t"] for r in self.stream.trainings if r["accepted"]), None)

    def counts(self) -> tuple[int, int, int]:
        """(transitions executed so far, the trainer's last count, models accepted)."""
        with self.stream.lock:
            lengths = episode_lengths(self.stream.lengths, self.stream.drops)
            executed = sum(executed_per_episode(self.stream.states, self.stream.actions,
                                                lengths).values())
            stored = self.stream.num_transitions[-1][1] if self.stream.num_transitions else 0
            models = sum(r["accepted"] for r in self.stream.trainings)
        return executed, stored, models

    def trainer_status(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The trainer's ``~/get_status`` (None if it does not answer in time)."""
        from mbrl_ros.srv import GetStatus

        if not self.status_client.wait_for_service(timeout_sec=min(timeout, 5.0)):
            return None
        future = self.status_client.call_async(GetStatus.Request())
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        res = future.result() if future.done() else None
        if res is None:
            return None
        return {"state": res.state, "model_version": int(res.model_version),
                "num_transitions": int(res.num_transitions),
                "num_episodes": int(res.num_episodes),
                "values": {kv.key: kv.value for kv in res.values}}


# ----- analysis (pure functions) -----------------------------------------------------------------
def episode_lengths(scheduled: Mapping[int, int], drops: Mapping[int, int]) -> dict[int, int]:
    """Each episode's length: its schedule's, or the step of its first dropped state."""
    return {e: min(length, drops[e]) if e in drops and length > 0 else length
            for e, length in scheduled.items()}


def executed_per_episode(states: Iterable[tuple[int, int]], actions: Iterable[tuple[int, int]],
                         lengths: Mapping[int, int]) -> dict[int, int]:
    """Transitions executed per episode: steps k with an action (N, k) and a next state
    (N, k + 1), k below the episode's length (any k for an episode without a schedule)."""
    state_set = set(states)
    counts: dict[int, int] = defaultdict(int)
    for episode, step in actions:
        length = lengths.get(episode, 0)
        if (length <= 0 or step < length) and (episode, step + 1) in state_set:
            counts[episode] += 1
    return dict(counts)


def growth_mb_per_hour(t_s: np.ndarray, values_mb: np.ndarray) -> float:
    """Least-squares slope of ``values_mb`` over ``t_s`` in MB/hour (NaN below 3 points)."""
    ok = np.isfinite(values_mb)
    if ok.sum() < 3 or np.ptp(t_s[ok]) <= 0:
        return float("nan")
    slope, _ = np.polyfit(t_s[ok] / 3600.0, values_mb[ok], 1)
    return float(slope)


def process_summary(samples: list[Sample], pids: list[int], warm_t: float) -> dict[str, Any]:
    """What the JSON reports for one process (see the module docstring)."""
    current = [s for s in samples if s.pid == pids[-1]]
    after = [s for s in current if s.t >= warm_t] or current[-1:]
    t = np.array([s.t for s in after])
    threads = [s.threads for s in after]
    out: dict[str, Any] = {
        "pids": list(pids), "respawns": len(pids) - 1, "samples": len(samples),
        "rss_warm_mb": after[0].rss_mb, "rss_end_mb": current[-1].rss_mb,
        "rss_max_mb": max(s.rss_mb for s in samples),
        "rss_growth_mb_per_hour": growth_mb_per_hour(t, np.array([s.rss_mb for s in after])),
        "anon_warm_mb": after[0].anon_mb, "anon_end_mb": current[-1].anon_mb,
        "anon_growth_mb_per_hour": growth_mb_per_hour(t, np.array([s.anon_mb for s in after])),
        "pss_warm_mb": after[0].pss_mb, "pss_end_mb": current[-1].pss_mb,
        "pss_growth_mb_per_hour": growth_mb_per_hour(t, np.array([s.pss_mb for s in after])),
        "threads_min": min(threads), "threads_max": max(threads), "threads_end": threads[-1],
        "cpu_s": sum(_cpu_per_pid(samples).values()),
        "first_sample_s": samples[0].t, "last_sample_s": samples[-1].t,
    }
    span = samples[-1].t - samples[0].t
    out["cpu_share"] = out["cpu_s"] / span if span > 0 else float("nan")
    return out


def _cpu_per_pid(samples: list[Sample]) -> dict[int, float]:
    """CPU seconds used by each PID while sampled (a respawned process starts from 0)."""
    cpu: dict[int, float] = {}
    for s in samples:
        cpu[s.pid] = s.cpu_s
    return cpu


def warmup_end(duration_s: float, first_model_t: float | None) -> float:
    """10% of the run or the first accepted model, whichever is later; at most half."""
    start = WARMUP_FRACTION * duration_s
    if first_model_t is not None:
        start = max(start, first_model_t)
    return min(start, WARMUP_MAX_FRACTION * duration_s)


def recorded_per_episode(dataset_dir: Path) -> tuple[dict[int, int], dict[int, list[str]],
                                                     int, float]:
    """The trainer's dataset on disk: transitions and end reasons per stream episode id,
    total transitions and in-memory bytes per transition (what the trainer holds)."""
    from mbrl_ros.core.data.dataset import EpisodeDataset

    dataset = EpisodeDataset(dataset_dir)
    counts: dict[int, int] = defaultdict(int)
    ends: dict[int, list[str]] = defaultdict(list)
    for dataset_id in dataset.episode_ids:
        meta = dataset.episode_meta(dataset_id)
        counts[int(meta["episode_id"])] += len(dataset.batch([dataset_id]))
        ends[int(meta["episode_id"])].append(str(meta.get("end", "")))
    total = dataset.num_transitions
    dims = dataset.dims
    # float32 state, next_state, action, reward; bool done; float64 time (dataset.py)
    per_transition = float("nan") if dims is None else (2 * dims[0] + dims[1] + 1) * 4 + 1 + 8
    return dict(counts), dict(ends), total, per_transition


def finished_episodes(states: Iterable[tuple[int, int]], lengths: Mapping[int, int]
                      ) -> set[int]:
    """Episodes whose last state (step T) was published: they ran to their end."""
    state_set = set(states)
    return {e for e, length in lengths.items() if length > 0 and (e, length) in state_set}


def first_observed_episode(states: Iterable[tuple[int, int]],
                           actions: Iterable[tuple[int, int]],
                           scheduled: Iterable[int] | None = None) -> int | None:
    """The first episode the bench saw from its start on every stream: its state 0 came,
    its action 0 or, before it, a state and an action of the previous episode, and its
    goal schedule (``scheduled``: the episodes whose schedule came; None: not asked). The
    bench's subscriber matches the stack's publishers a few seconds after they start, each
    publisher on its own, and the latched schedule publisher hands a late subscriber only
    the newest one: without its schedule an episode's length is unknown."""
    state_set, action_set = set(states), set(actions)
    with_state = {e for e, _ in state_set}
    with_action = {e for e, _ in action_set}
    with_schedule = None if scheduled is None else set(scheduled)
    for episode in sorted(e for e, k in state_set if k == 0):
        if with_schedule is not None and episode not in with_schedule:
            continue
        if (episode, 0) in action_set or (episode - 1 in with_state
                                          and episode - 1 in with_action):
            return episode
    return None


def transition_accounting(executed: Mapping[int, int], lengths: Mapping[int, int],
                          recorded: Mapping[int, int], ends: Mapping[int, list[str]],
                          finished: set[int], observed_from: int | None,
                          states: Iterable[tuple[int, int]] = ()) -> dict[str, Any]:
    """Executed vs recorded over the episodes the bench saw from their start
    (``observed_from`` on), with the episode cut by the stop (the newest one, if its last
    state never came) accounted separately; earlier episodes are listed as not observed."""
    everything = sorted(set(executed) | set(recorded))
    episodes = [e for e in everything if observed_from is not None and e >= observed_from]
    unseen = [e for e in everything if e not in episodes]
    newest = max(episodes) if episodes else None
    cut = newest if newest is not None and newest not in finished else None
    complete = [e for e in episodes if e != cut]
    mismatched = [{"episode_id": e, "executed": executed.get(e, 0),
                   "recorded": recorded.get(e, 0), "length": lengths.get(e, 0),
                   "ends": ends.get(e, [])}
                  for e in complete if executed.get(e, 0) != recorded.get(e, 0)]
    short = [e for e in complete if e not in finished]
    last_step: dict[int, int] = {}
    for e, k in states:
        last_step[e] = max(k, last_step.get(e, k))
    executed_complete = sum(executed.get(e, 0) for e in complete)
    recorded_complete = sum(recorded.get(e, 0) for e in complete)
    out: dict[str, Any] = {
        "episodes": len(episodes),
        "executed": sum(executed.get(e, 0) for e in episodes),
        "recorded": sum(recorded.get(e, 0) for e in episodes),
        "complete_episodes": len(complete),
        "executed_complete_episodes": executed_complete,
        "recorded_complete_episodes": recorded_complete,
        "difference_complete_episodes": recorded_complete - executed_complete,
        "episodes_with_a_difference": mismatched[:20],
        "episodes_not_run_to_the_end": len(short),
        "short_episodes": [{"episode_id": e, "length": lengths.get(e, 0),
                            "last_state_seen": last_step.get(e), "ends": ends.get(e, [])}
                           for e in short[:20]],
        "cut_episode": None,
        "not_observed": {"episodes": len(unseen), "episode_ids": unseen[:50],
                         "recorded": sum(recorded.get(e, 0) for e in unseen)},
        "recorded_all": sum(recorded.values()),
    }
    out["difference"] = out["recorded"] - out["executed"]
    if cut is not None:
        out["cut_episode"] = {
            "episode_id": cut, "length": lengths.get(cut, 0), "executed": executed.get(cut, 0),
            "recorded": recorded.get(cut, 0),
            "difference": recorded.get(cut, 0) - executed.get(cut, 0),
            "ends": ends.get(cut, [])}
    return out


# ----- running the stack -------------------------------------------------------------------------
def start_launcher(work: Path, overrides: Path, mode: str, out_log: Path) -> subprocess.Popen:
    """The stack through the launcher, output to ``out_log``; results in ``work/runs``."""
    cmd = [sys.executable, "-m", "mbrl_ros.launch.cli", "launch", "mbrl_ros",
           "baoding.launch.yaml", f"mode:={mode}", f"overrides:={overrides}",
           f"runs_dir:={work / 'runs'}", f"run_name:={RUN_NAME}"]
    with open(out_log, "w") as out:
        return subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "ROS_LOG_DIR": str(work / "ros_log")})


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_launcher(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int:
    """SIGINT (a clean stop, like Ctrl-C), SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10.0)


def short_name(label: str) -> str:
    return {"shadow_hand_sim": "sim", "state_estimator": "est", "dynamics_trainer": "trainer",
            "mpc_planner": "planner", "experiment": "exp", LAUNCHER: "launch"}.get(label, label)


def ordered(labels: Iterable[str]) -> list[str]:
    labels = list(labels)
    known = [n for n in NODE_ORDER if n in labels]
    return known + sorted(set(labels) - set(known))


@dataclass
class StackRun:
    """What a run of the stack left behind for the analysis."""

    sampler: ProcessSampler
    stream: Stream
    first_model_t: float | None
    trainer_status: dict[str, Any] | None
    exit_code: int
    stop_s: float
    log_at_stop: int  # size of the launcher's output when the stop began


def run_stack(duration: float, mode: str, interval: float, progress_every: float,
              work: Path, overrides: Path, out_log: Path) -> StackRun:
    """Run the stack for ``duration`` seconds, sampling and counting; stop it cleanly."""
    t0 = time.monotonic()
    probe = Probe(t0)
    proc = None
    try:
        proc = start_launcher(work, overrides, mode, out_log)
        log(f"launched the stack (pid {proc.pid}, {mode}, {duration:g} s); output in {out_log}")
        sampler = ProcessSampler(proc.pid, t0)
        next_progress = progress_every
        while (elapsed := time.monotonic() - t0) < duration:
            if proc.poll() is not None:
                raise RuntimeError(f"the stack ended after {elapsed:.0f} s (exit code "
                                   f"{proc.returncode}) before the soak did:\n{tail(out_log)}")
            sampler.sample()
            if elapsed >= next_progress:
                next_progress += progress_every
                progress(sampler, probe, elapsed, duration)
            time.sleep(max(0.0, min(interval, duration - (time.monotonic() - t0))))
        sampler.sample()
        progress(sampler, probe, time.monotonic() - t0, duration)
        status = probe.trainer_status()
        log("stopping the stack (SIGINT to the launcher)")
        log_at_stop = out_log.stat().st_size
        stop_start = time.monotonic()
        code = stop_launcher(proc)
        stop_s = time.monotonic() - stop_start
        time.sleep(1.0)  # what the nodes published last reaches the probe
    finally:
        if proc is not None and proc.poll() is None:
            stop_launcher(proc, timeout=10.0)
        probe.close()
    return StackRun(sampler, probe.stream, probe.first_model_t(), status, code, stop_s,
                    log_at_stop)


def stop_report(run: StackRun, out_log: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """How the stop went and the [ERROR] lines of the stack's output, before and during it."""
    with open(out_log, "rb") as f:
        before, during = (part.decode(errors="replace").splitlines()
                          for part in (f.read(run.log_at_stop), f.read()))
    escalations = [line for line in during if "escalating" in line]
    errors = [line for line in before if "[ERROR]" in line]
    stop_errors = [line for line in during if "[ERROR]" in line]
    log(f"the launcher exited with {run.exit_code} after {run.stop_s:.1f} s"
        + (f"; {len(escalations)} escalation(s)" if escalations else "")
        + (f"; [ERROR] lines in the stack's output: {len(errors)} while running, "
           f"{len(stop_errors)} while stopping" if errors or stop_errors else ""))
    stop = {"launcher_exit_code": run.exit_code, "stop_s": run.stop_s,
            "escalations": escalations,
            "note": "SIGINT to the launcher; it sends SIGINT to every node, SIGTERM to those "
                    "still running 5 s later (an escalation), then SIGKILL"}
    error_lines = {"while_running": len(errors), "while_stopping": len(stop_errors),
                   "first": (errors + stop_errors)[:20],
                   "node_exits": [line for line in before if "[launch]: process [" in line
                                  and "started" not in line][:20]}
    return stop, error_lines


def transitions_report(run: StackRun, dataset_dir: Path, warm_t: float
                       ) -> tuple[dict[str, Any], float, float]:
    """The accounting of executed vs recorded transitions, the dataset's bytes per
    transition and the trainer's data growth after warm-up (MB/hour)."""
    stream = run.stream
    lengths = episode_lengths(stream.lengths, stream.drops)
    executed = executed_per_episode(stream.states, stream.actions, lengths)
    recorded, ends, total_on_disk, bytes_per_transition = recorded_per_episode(dataset_dir)
    accounting = transition_accounting(executed, lengths, recorded, ends,
                                       finished_episodes(stream.states, lengths),
                                       first_observed_episode(stream.states, stream.actions,
                                                              stream.lengths),
                                       stream.states)
    counts = stream.num_transitions
    accounting.update({
        "recorded_on_disk": total_on_disk,
        "drops_seen": len(stream.drops),
        "drops_whose_shortened_schedule_was_missed": sum(
            stream.lengths.get(e, 0) > step for e, step in stream.drops.items()),
        "num_transitions_topic_last": counts[-1][1] if counts else None,
        "trainer_status_before_stop": run.trainer_status,
        "stale_states_seen": len(stream.stale_states),
        "executed_source": "the bench's subscriber: planned_action (N, k) and task_state "
                           "(N, k+1), k < the episode's length",
        "recorded_source": "the trainer's dataset on disk after the stop (episode files, "
                           "grouped by the stream's episode id)",
        "compared": "episodes the bench saw from their start (the first few of a run can "
                    "pass before its subscriber matched the stack's publishers: "
                    "not_observed)",
    })
    after = [(t, n) for t, n in counts if t >= warm_t]
    data_rate = float("nan")
    if len(after) >= 2 and after[-1][0] > after[0][0]:
        per_hour = (after[-1][1] - after[0][1]) / ((after[-1][0] - after[0][0]) / 3600.0)
        data_rate = per_hour * bytes_per_transition / MB
    return accounting, bytes_per_transition, data_rate


def soak(duration: float, mode: str, interval: float, progress_every: float, quick: bool,
         work: Path, ros: dict[str, str]) -> dict[str, Any]:
    """Run the stack for ``duration`` seconds, sampling; stop it; count; summarize."""
    overrides = work / "soak_overrides.yaml"
    overrides.write_text(soak_overrides(duration, quick))
    out_log = work / "launch.log"
    run = run_stack(duration, mode, interval, progress_every, work, overrides, out_log)
    stop, error_lines = stop_report(run, out_log)
    warm_t = warmup_end(duration, run.first_model_t)
    sampler = run.sampler
    processes = {label: process_summary(sampler.samples[label], sampler.pids[label], warm_t)
                 for label in ordered(sampler.samples)}
    accounting, bytes_per_transition, data_rate = transitions_report(
        run, work / "runs" / RUN_NAME / "dataset", warm_t)
    trainings = run.stream.trainings
    return {
        "setup": {
            "mode": mode, "quick": quick, "duration_s": duration, "interval_s": interval,
            "launch": "mbrl_ros baoding.launch.yaml (python -m mbrl_ros.launch.cli launch)",
            "overrides": overrides.read_text(),
            "warmup_rule": f"later of {WARMUP_FRACTION:.0%} of the run and the first accepted "
                           f"model, at most {WARMUP_MAX_FRACTION:.0%}",
            "ros": ros,
        },
        "warmup_end_s": warm_t,
        "first_model_s": run.first_model_t,
        "processes": processes,
        "samples": {label: [[s.t, s.pid, s.rss_mb, s.pss_mb, s.threads, s.cpu_s]
                            for s in sampler.samples[label]] for label in processes},
        "sample_columns": ["t_s", "pid", "rss_mb", "pss_mb", "threads", "cpu_s"],
        "sample_cost_ms": benchlib.summary(sampler.cost_ms),
        "transitions": accounting,
        "trainer_data_mb_per_hour": data_rate,
        "dataset_bytes_per_transition": bytes_per_transition,
        "trainings": {
            "jobs": len(trainings), "accepted": sum(r["accepted"] for r in trainings),
            "last_model_version": max((r["model_version"] for r in trainings), default=0),
            "duration_s": benchlib.summary([r["duration_s"] for r in trainings]),
            "times_s": [round(r["t"], 1) for r in trainings],
        },
        "stop": stop,
        "error_lines": error_lines,
        "episodes_run": len(run.stream.lengths),
    }


def progress(sampler: ProcessSampler, probe: Probe, elapsed: float, duration: float) -> None:
    latest = sampler.latest()
    rss = " ".join(f"{short_name(k)} {latest[k].rss_mb:.0f}" for k in ordered(latest))
    executed, stored, models = probe.counts()
    log(f"{elapsed / 60:5.1f}/{duration / 60:.1f} min | RSS MB: {rss} | transitions executed "
        f"{executed}, stored {stored} | models {models}")


# ----- picture ----------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 2]})
    warm_min = result["warmup_end_s"] / 60.0
    for label, rows in result["samples"].items():
        data = np.asarray(rows, dtype=float)
        if data.size == 0:
            continue
        stats = result["processes"][label]
        slope = stats["rss_growth_mb_per_hour"]
        text = f"{label}: {stats['rss_end_mb']:.0f} MB, {slope:+.1f} MB/h"
        if stats["respawns"]:
            text += f", {stats['respawns']} respawn(s)"
        line, = ax1.plot(data[:, 0] / 60.0, data[:, 2], label=text)
        ax2.plot(data[:, 0] / 60.0, data[:, 4], color=line.get_color(), label=label)
    for ax in (ax1, ax2):
        ax.axvline(warm_min, color="0.4", ls=":", lw=1.0)
        ax.grid(alpha=0.3)
    acc = result["transitions"]
    ax1.set_ylabel("RSS (MB)")
    ax1.set_title(f"Soak, {result['setup']['mode']}, {result['setup']['duration_s'] / 60:.0f} "
                  f"min: {acc['executed']} transitions executed, {acc['recorded']} recorded, "
                  f"{result['trainings']['accepted']} models (dotted: end of warm-up)",
                  fontsize=10)
    ax1.legend(fontsize=7, loc="upper left")
    ax2.set_ylabel("threads")
    ax2.set_xlabel("minutes since launch")
    ax2.legend(fontsize=7, loc="upper left", ncol=3)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    benchlib.stamp(fig, benchlib.footnote(command))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _finite(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1f}"


def report(result: dict[str, Any]) -> None:
    for label, s in result["processes"].items():
        log(f"{label:17s} RSS warm {_finite(s['rss_warm_mb'])} end {_finite(s['rss_end_mb'])} "
            f"max {_finite(s['rss_max_mb'])} MB, {_finite(s['rss_growth_mb_per_hour'])} MB/h "
            f"(PSS {_finite(s['pss_growth_mb_per_hour'])} MB/h); threads "
            f"{s['threads_min']}-{s['threads_max']} (end {s['threads_end']}); CPU "
            f"{s['cpu_s']:.0f} s; respawns {s['respawns']}")
    acc = result["transitions"]
    cut = acc["cut_episode"]
    unseen = acc["not_observed"]
    log(f"transitions: executed {acc['executed']}, recorded {acc['recorded']} "
        f"(complete episodes {acc['executed_complete_episodes']} vs "
        f"{acc['recorded_complete_episodes']}; cut episode "
        + (f"{cut['episode_id']}: {cut['executed']} vs {cut['recorded']}" if cut else "none")
        + f"; {unseen['episodes']} episode(s) before the bench's subscriber matched, "
        f"{unseen['recorded']} recorded); trainer's topic said "
        f"{acc['num_transitions_topic_last']}; trainer data "
        f"{_finite(result['trainer_data_mb_per_hour'])} MB/h")


class _Interrupted(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="result JSON (<stem>_memory.png goes beside it)")
    parser.add_argument("--duration", type=float, default=None, help="seconds the stack runs "
                        f"(default {DEFAULT_DURATION_S:g}, --quick {QUICK_DURATION_S:g})")
    parser.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between samples (default 5, --quick 2)")
    parser.add_argument("--progress-every", type=float, default=None,
                        help="seconds between progress lines (default 60, --quick 20)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny budget and 50 s (the smoke test's)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    duration = args.duration or (QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S)
    interval = args.interval or (2.0 if args.quick else 5.0)
    if duration <= 0 or interval <= 0:
        parser.error("--duration and --interval must be > 0")
    progress_every = args.progress_every or (20.0 if args.quick else 60.0)
    ros = benchlib.ros_environment(fresh_domain=True)
    work = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    start = time.monotonic()

    def interrupt(*_: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGTERM, interrupt)
    ok = False
    try:
        result = soak(duration, args.mode, interval, progress_every, args.quick, work, ros)
        ok = True
    except (KeyboardInterrupt, _Interrupted):
        log("interrupted: no result written")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.keep or not ok:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = {"benchmark": "soak", **result, "elapsed_s": time.monotonic() - start}
    path = benchlib.write_result(args.out, result)
    picture = path.with_name(path.stem + "_memory.png")
    plot(result, picture, benchlib.command_line())
    report(result)
    log(f"wrote {path} and {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
