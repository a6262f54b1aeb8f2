#!/usr/bin/env python3
"""Planner latency at PDDM's Baoding size, side by side with pytorch-mppi, on one CPU thread.

Both planners plan on the same ``EnsembleDynamics`` (3 members x 2 x 250 ReLU, state 40,
action 24) with N=700 samples, horizon 7, one MPPI update per call, and the Baoding reward.
Fairness: pytorch-mppi plans over an "ensemble state" of E*S numbers (each member's own
predicted state side by side), its dynamics function makes one ``predict`` call per step
for all samples and members (exactly our call), writes the scheduled goals into the
predicted states as we do, and its running cost is minus the members' mean Baoding reward;
so both evaluate N x E x H network passes per plan and the same reward. Its noise is
N(0, 0.9^2) and lambda = 1/gamma with PDDM's gamma 20, bounds [-1, 1]. We additionally
filter the noise (PDDM) and mask rewards after a drop, inside our timing. Both latencies are
time to the plan (what the controller executes); our ``PlanResult`` computes the chosen
plan's predicted trajectory (markers, disagreement) on demand, and that cost is reported
separately (``ours_with_predicted_trajectory_*``: plan + that extra rollout).
Both run in one process; the glibc allocator is first left at its defaults (phase 2), then
tuned with ``tune_malloc_for_planning`` (phase 3, the headline numbers) for both alike.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_planner.py [--quick] [--repeats N] [--out F]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

from mbrl_ros.core.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.mpc import shift_plan
from mbrl_ros.core.planners import (
    CEMConfig,
    CEMPlanner,
    GradientConfig,
    GradientPlanner,
    MPPIConfig,
    MPPIPlanner,
    Planner,
    RandomShootingConfig,
    RandomShootingPlanner,
    tune_malloc_for_planning,
)
from mbrl_ros.core.tasks import BaodingTask

N_SAMPLES, HORIZON, GAMMA = 700, 7, 20.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "planner.json"


def log(msg: str) -> None:
    print(f"[bench_planner {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "mujoco", "pytorch_mppi", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average": list(os.getloadavg()),
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def matmul_peak_gflops(quick: bool) -> dict:
    """Single-thread fp32 matmul throughput at our layer shapes and a large square one."""
    shapes = {
        "bmm_3x700x64x250": (3, 700, 64, 250),
        "bmm_3x700x250x250": (3, 700, 250, 250),
        "bmm_3x2100x250x250": (3, 2100, 250, 250),
        "mm_2048": (1, 2048, 2048, 2048),
    }
    out = {}
    for name, (b, m, k, n) in shapes.items():
        x, w = torch.randn(b, m, k), torch.randn(b, k, n)
        for _ in range(2):
            torch.bmm(x, w)
        reps = 3 if quick else (5 if m >= 2048 else 15)
        best = min(time_call(lambda x=x, w=w: torch.bmm(x, w)) for _ in range(reps))
        out[name] = 2.0 * b * m * k * n / (best * 1e-3) / 1e9
    out["peak"] = max(out.values())
    return out


def build_model(seed: int = 0) -> EnsembleDynamics:
    """PDDM-size ensemble with random weights and Baoding-like normalization statistics."""
    torch.manual_seed(seed)
    model = EnsembleDynamics(EnsembleConfig(state_dim=40, action_dim=24))
    states = torch.randn(4096, 40) * 0.3
    states[:, 24:36] = torch.randn(4096, 12) * 0.02
    states[:, 26] += 0.2
    states[:, 32] += 0.2
    actions = torch.rand(4096, 24) * 2 - 1
    model.fit_normalizer(states, actions, states + 0.01 * torch.randn_like(states))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def start_state(task: BaodingTask) -> torch.Tensor:
    goals = task.episode_goals(0, 2)
    state = torch.zeros(40)
    state[24:26], state[26] = goals[0, 0:2], 0.2
    state[30:32], state[32] = goals[0, 2:4], 0.2
    state[36:40] = goals[0]
    return state


def flops_per_pass(model: EnsembleDynamics) -> int:
    """Multiply-adds x 2 of one member's network on one sample."""
    sizes = [model.state_dim + model.action_dim, *model.config.hidden_sizes, model.state_dim]
    return sum(2 * a * b for a, b in itertools.pairwise(sizes))


class PeerMPPI:
    """pytorch-mppi on the same ensemble, task and goals (see the module docstring)."""

    def __init__(self, model: EnsembleDynamics, task: BaodingTask, goals: torch.Tensor) -> None:
        from pytorch_mppi import MPPI

        e, s, a = model.num_members, model.state_dim, model.action_dim
        self.e, self.s = e, s

        def dynamics(state: torch.Tensor, action: torch.Tensor, t: int) -> torch.Tensor:
            k = state.shape[0]
            members = state.view(k, e, s).transpose(0, 1)
            nxt = model.predict(members, action)
            task.insert_goal_(nxt, goals[t])
            return nxt.transpose(0, 1).reshape(k, e * s)

        def running_cost(state: torch.Tensor, action: torch.Tensor, t: int) -> torch.Tensor:
            reward, _ = task.reward(state.view(state.shape[0], e, s), action[:, None], goals[t])
            return -reward.mean(dim=1)

        self.mppi = MPPI(
            dynamics,
            running_cost,
            nx=e * s,
            noise_sigma=torch.eye(a) * 0.9**2,
            num_samples=N_SAMPLES,
            horizon=HORIZON,
            lambda_=1.0 / GAMMA,
            u_min=-torch.ones(a),
            u_max=torch.ones(a),
            step_dependent_dynamics=True,
            device="cpu",
        )

    def command(self, state: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.mppi.command(state.repeat(self.e))


class WarmStarted:
    """Calls a planner as the MPC does: shifted previous plan and previous action.

    ``with_prediction`` also asks for the chosen plan's predicted trajectory (markers).
    """

    def __init__(self, planner: Planner, state: torch.Tensor, goals: torch.Tensor,
                 with_prediction: bool = False) -> None:
        self.planner, self.state, self.goals = planner, state, goals
        self.with_prediction = with_prediction
        self.plan: torch.Tensor | None = None
        self.prev: torch.Tensor | None = None

    def __call__(self) -> None:
        warm = None if self.plan is None else shift_plan(self.plan)
        result = self.planner.plan(self.state, self.goals, warm, self.prev)
        self.plan, self.prev = result.actions, result.actions[0]
        if self.with_prediction:
            result.predicted_states  # noqa: B018 (triggers the evaluation rollout)


def interleaved(
    calls: dict[str, Callable[[], object]], warmup: int, repeats: int, offset: int = 0
) -> dict[str, list[float]]:
    """Time the calls in rounds, rotating their order, so all see the same machine noise."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        k = (i + offset) % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(time_call(calls[name]))
    return times


def latency(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    return [time_call(fn) for _ in range(repeats)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per planner")
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (10 if args.quick else 100)
    warmup = 2 if args.quick else 10
    extra_repeats = max(3, repeats // 5)
    if repeats < 1:
        parser.error("--repeats must be >= 1")

    torch.set_num_threads(1)
    info = machine_info()
    log(f"cpu {info['cpu_model']}, {info['cores']} cores, torch {torch.__version__}, 1 thread")

    log("phase 1/5: single-thread matmul peak")
    peak = matmul_peak_gflops(args.quick)
    log(f"  peak {peak['peak']:.1f} GFLOP/s")

    task = BaodingTask()
    model = build_model()
    state = start_state(task)
    goals = task.goal_window(task.episode_goals(0), 1, HORIZON)
    e = model.num_members
    plan_flops = N_SAMPLES * e * HORIZON * flops_per_pass(model)  # same count for the peer

    ours = WarmStarted(MPPIPlanner(model, task, MPPIConfig(seed=0)), state, goals)
    ours_predicted = WarmStarted(MPPIPlanner(model, task, MPPIConfig(seed=1)), state, goals,
                                 with_prediction=True)
    peer = PeerMPPI(model, task, goals)
    calls = {"ours": ours, "peer": lambda: peer.command(state), "ours_predicted": ours_predicted}

    log(f"phase 2/5: glibc's default allocator, {extra_repeats} interleaved rounds")
    default_ms = interleaved(calls, warmup, extra_repeats)
    log(f"  ours p50 {statistics.median(default_ms['ours']):.1f} ms, "
        f"peer p50 {statistics.median(default_ms['peer']):.1f} ms")

    tuned = tune_malloc_for_planning()
    log(f"phase 3/5: allocator tuned for planning ({'applied' if tuned else 'not glibc'}); "
        f"ours (MPPI) vs pytorch-mppi, {warmup} warm-up + {repeats} interleaved rounds")
    interleaved(calls, warmup, 0)
    times: dict[str, list[float]] = {name: [] for name in calls}
    chunk = max(1, repeats // 5)
    for done in range(0, repeats, chunk):
        for name, values in interleaved(calls, 0, min(chunk, repeats - done), done).items():
            times[name] += values
        log(f"  {done + min(chunk, repeats - done)}/{repeats}: ours p50 "
            f"{statistics.median(times['ours']):.1f} ms, peer p50 "
            f"{statistics.median(times['peer']):.1f} ms, ours + predicted trajectory p50 "
            f"{statistics.median(times['ours_predicted']):.1f} ms")
    ours_ms, peer_ms = times["ours"], times["peer"]

    log("phase 4/5: other planners (tuned allocator)")
    others = {
        "random_shooting": RandomShootingPlanner(model, task, RandomShootingConfig(seed=0)),
        "cem_1_iteration": CEMPlanner(model, task, CEMConfig(iterations=1, seed=0)),
        "cem_5_iterations": CEMPlanner(model, task, CEMConfig(seed=0)),
        "gradient_8x20": GradientPlanner(model, task, GradientConfig(seed=0)),
    }
    extra = {}
    for name, planner in others.items():
        planner_ms = latency(WarmStarted(planner, state, goals), min(warmup, 3), extra_repeats)
        extra[f"{name}_p50_ms"] = statistics.median(planner_ms)
        log(f"  {name}: p50 {extra[f'{name}_p50_ms']:.1f} ms ({extra_repeats} calls)")

    log("phase 5/5: summary")
    ours_p50, peer_p50 = statistics.median(ours_ms), statistics.median(peer_ms)
    result = {
        "benchmark": "planner",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "config": {
            "ensemble": model.config.to_dict(),
            "num_samples": N_SAMPLES,
            "horizon": HORIZON,
            "gamma": GAMMA,
            "threads": 1,
            "repeats": repeats,
            "warmup": warmup,
            "quick": args.quick,
        },
        "fairness": (
            "same EnsembleDynamics weights, N=700, H=7, one update per call; pytorch-mppi "
            "state = E member states side by side, one predict call per step for all "
            "samples x members, goals inserted, running cost = -mean member Baoding reward; "
            "calls interleaved (alternating order), both under torch.no_grad, 1 thread, "
            "same process and allocator settings"
        ),
        "ours_p50_ms": ours_p50,
        "ours_p99_ms": percentile(ours_ms, 99),
        "peer_p50_ms": peer_p50,
        "peer_p99_ms": percentile(peer_ms, 99),
        "speedup_vs_pytorch_mppi": peer_p50 / ours_p50,
        "allocator_tuned": tuned,
        "ours_with_predicted_trajectory_p50_ms": statistics.median(times["ours_predicted"]),
        "ours_with_predicted_trajectory_p99_ms": percentile(times["ours_predicted"], 99),
        "default_allocator": {
            "ours_p50_ms": statistics.median(default_ms["ours"]),
            "peer_p50_ms": statistics.median(default_ms["peer"]),
            "ours_with_predicted_trajectory_p50_ms": statistics.median(
                default_ms["ours_predicted"]),
            "rounds": extra_repeats,
        },
        "planning_gflop": plan_flops / 1e9,
        "matmul_peak_gflops": peak,
        "ours_gflops": plan_flops / (ours_p50 * 1e-3) / 1e9,
        "peer_gflops": plan_flops / (peer_p50 * 1e-3) / 1e9,
        "efficiency": plan_flops / (ours_p50 * 1e-3) / 1e9 / peak["peak"],
        "peer_efficiency": plan_flops / (peer_p50 * 1e-3) / 1e9 / peak["peak"],
        **extra,
        "load_average_end": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    log(f"ours p50 {ours_p50:.1f} ms p99 {result['ours_p99_ms']:.1f} ms | pytorch-mppi p50 "
        f"{peer_p50:.1f} ms p99 {result['peer_p99_ms']:.1f} ms | speedup "
        f"{result['speedup_vs_pytorch_mppi']:.2f}x | efficiency {result['efficiency']:.0%}")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
