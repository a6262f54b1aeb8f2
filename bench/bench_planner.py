#!/usr/bin/env python3
"""Planner latency at PDDM's Baoding size, ours vs pytorch-mppi and torchrl, one CPU thread.

What: time to a plan (p50/p99 over interleaved calls) of our planners (MPPI, CEM with 1
and with 5 iterations, random shooting, gradient) and of two peer MPPI implementations,
pytorch-mppi's ``MPPI`` and torchrl's ``MPPIPlanner``, on the same ``EnsembleDynamics``
weights (3 members x 2 x 250 ReLU, state 40, action 24) with the Baoding reward, N=700
samples, horizon 7, one update per call (PDDM's setting); plus scaling points at
N = 100, 2000, 4096 (H=7) and H = 15, 30 (N=700) for our MPPI and the peers, and the
N=700 / N=4096 points on CUDA when a GPU is present. Efficiency = GFLOP of the plan's
network passes / time / the single-thread matmul peak measured in the same run, in the
planner's precision (fp32; the bfloat16 planners against the bfloat16 peak, which a CPU
with AVX512-BF16 or AMX puts well above the fp32 one).

Fairness: every planner runs in this process, on one thread, under no_grad, with the same
allocator settings, and the calls are interleaved round by round with a rotating order, so
load drifts hit all alike. Peers roll an "ensemble state" (the E members' states side by
side) with one ``predict`` call per step for all samples and members, insert the scheduled
goals and use minus the members' mean Baoding reward as cost: the same N x E x H network
passes and reward as ours (see ``planner_peers.py``). Differences, all part of what a user
of each library gets: we filter the noise (PDDM's beta) and book -500 per step after a
predicted drop; pytorch-mppi draws N(0, 0.9^2) noise around its own shifted plan; torchrl
samples N(0, 1) around zero each call (no warm start), refits a std too, computes the
return from an advantage module (return minus the best return, to keep exp() finite) and
pays its per-step TensorDict/env bookkeeping. The gradient planner optimizes 8 restarts x
20 Adam steps (its N is 8), its backward pass counted as one forward (weights frozen).
Our latency is time to the plan; ``ours_mppi_with_prediction`` adds the chosen plan's
predicted trajectory (markers, disagreement) that the planner node computes after sending.
The glibc allocator is first left at its defaults for a few rounds of the MPPI trio, then
tuned with ``tune_malloc_for_planning`` (as the planner node does) for everything else.

Time budget: about 2 minutes on this 2-core machine when quiet, 3.5 minutes with the other
core busy (budget: 6); ``--quick`` about 10 s (3 points, 5 rounds).

Run: ``.venv/bin/python bench/bench_planner.py [--quick] [--repeats N] [--out F]``
(writes ``F`` and the picture ``F`` with ``.png``; default ``bench/results/planner.json``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
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
from mbrl_ros.core.planning.mpc import shift_plan
from mbrl_ros.core.tasks import BaodingTask

import benchlib
from planner_peers import PytorchMPPIPeer, TorchRLMPPIPeer

N_SAMPLES, HORIZON, GAMMA, SIGMA = 700, 7, 20.0, 0.9
CEM_ITERATIONS = 5  # PDDM-style CEM (our CEMConfig default)
DEFAULT_OUT = benchlib.RESULTS / "planner.json"
log = benchlib.Logger("bench_planner")

OURS = ("ours_mppi", "ours_mppi_with_prediction", "ours_mppi_bf16", "ours_random", "ours_cem_1",
        "ours_cem_5", "ours_gradient")
PEERS = ("pytorch_mppi", "torchrl_mppi")
TRIO = ("ours_mppi", *PEERS)
DESCRIPTIONS = {
    "ours_mppi": "our PDDM MPPI (filtered noise, one update), time to the plan",
    "ours_mppi_with_prediction": "ours_mppi plus the chosen plan's predicted trajectory "
                                 "(one more rollout, for markers and disagreement)",
    "ours_mppi_bf16": "ours_mppi with the model's forward in bfloat16 (inference_dtype; "
                      "normalization, reward and the update stay fp32)",
    "ours_random": "our random shooting, N uniform sequences",
    "ours_cem_1": "our CEM, 1 iteration of N samples, 50 elites",
    "ours_cem_5": "our CEM, 5 iterations of N samples, 50 elites (5x the passes)",
    "ours_gradient": "our gradient planner, 8 restarts x 20 Adam steps (N is 8 here)",
    "pytorch_mppi": "pytorch-mppi MPPI, lambda 1/gamma, noise sigma 0.9",
    "torchrl_mppi": "torchrl MPPIPlanner, 1 optim step, top_k = N, temperature gamma",
}


@dataclass(frozen=True)
class Point:
    """One benchmark configuration: sample count, horizon, device, which planners."""

    n: int
    h: int
    device: str
    planners: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"N{self.n}_H{self.h}_{self.device}"


def time_call(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> float:
    """Wall time of one call in ms (device-synchronized on CUDA)."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return 1e3 * (time.perf_counter() - start)


def matmul_peak_gflops(quick: bool, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Matmul throughput in ``dtype`` at our layer shapes and a large square one; ``peak`` =
    best."""
    shapes = {
        "bmm_3x700x64x250": (3, 700, 64, 250),
        "bmm_3x700x250x250": (3, 700, 250, 250),
        "bmm_3x2100x250x250": (3, 2100, 250, 250),
        "mm_2048": (1, 2048, 2048, 2048),
    }
    if device != "cpu":
        shapes["mm_4096"] = (1, 4096, 4096, 4096)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    out = {}
    for name, (b, m, k, n) in shapes.items():
        x = torch.randn(b, m, k, device=device, dtype=dtype)
        w = torch.randn(b, k, n, device=device, dtype=dtype)
        for _ in range(2):
            torch.bmm(x, w)
        reps = 3 if quick else (5 if m >= 2048 else 15)
        best = min(time_call(lambda x=x, w=w: torch.bmm(x, w), sync) for _ in range(reps))
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
    """Both balls resting on their first targets, 0.2 m up, joints at zero."""
    goals = task.episode_goals(0, 2)
    state = torch.zeros(40)
    task.insert_goal_(state, goals[0])
    state[24:26], state[26] = state[36:38], 0.2
    state[30:32], state[32] = state[38:40], 0.2
    return state


def flops_per_pass(model: EnsembleDynamics) -> int:
    """Multiply-adds x 2 of one member's network on one sample."""
    sizes = [model.state_dim + model.action_dim, *model.config.hidden_sizes, model.state_dim]
    return sum(2 * a * b for a, b in itertools.pairwise(sizes))


def sequence_steps(name: str, n: int, h: int) -> int:
    """Forward-equivalent (sequence, step) rollouts through all members per plan."""
    if name == "ours_cem_5":
        return CEM_ITERATIONS * n * h
    if name == "ours_gradient":
        cfg = GradientConfig()
        # iterations forward + backward (input gradients only: about one forward) + final score
        return cfg.num_samples * h * (2 * cfg.iterations + 1)
    if name == "ours_mppi_with_prediction":
        return (n + 1) * h
    return n * h


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


class Bench:
    """Builds the planners of each point on one set of weights and times them interleaved."""

    def __init__(self, model: EnsembleDynamics, task: BaodingTask) -> None:
        self.task = task
        self.models = {"cpu": model}
        self.peer_status: dict[str, dict[str, Any]] = {
            "pytorch_mppi": {"status": "ok", "version": benchlib.package_version("pytorch_mppi")},
            "torchrl": {"status": "ok", "version": benchlib.package_version("torchrl")},
        }

    def model(self, device: str) -> EnsembleDynamics:
        if device not in self.models:
            self.models[device] = copy.deepcopy(self.models["cpu"]).to(device)
        return self.models[device]

    def bf16_model(self, device: str) -> EnsembleDynamics:
        """A copy of the weights that plans with a bfloat16 forward pass."""
        key = f"{device}_bf16"
        if key not in self.models:
            self.models[key] = copy.deepcopy(self.model(device))
            self.models[key].set_inference_dtype(torch.bfloat16)
        return self.models[key]

    def calls(self, point: Point) -> dict[str, Callable[[], object]]:
        """The point's planners as zero-argument calls (peers that fail are left out)."""
        model, task = self.model(point.device), self.task
        n, h, dev = point.n, point.h, point.device
        state = start_state(task).to(dev)
        goals = task.goal_window(task.episode_goals(0), 1, h).to(dev)
        ours: dict[str, Callable[[], Planner]] = {
            "ours_mppi": lambda: MPPIPlanner(
                model, task, MPPIConfig(horizon=h, num_samples=n, seed=0), device=dev),
            "ours_mppi_with_prediction": lambda: MPPIPlanner(
                model, task, MPPIConfig(horizon=h, num_samples=n, seed=1), device=dev),
            "ours_mppi_bf16": lambda: MPPIPlanner(
                self.bf16_model(dev), task, MPPIConfig(horizon=h, num_samples=n, seed=0),
                device=dev),
            "ours_random": lambda: RandomShootingPlanner(
                model, task, RandomShootingConfig(horizon=h, num_samples=n, seed=0), device=dev),
            "ours_cem_1": lambda: CEMPlanner(
                model, task, CEMConfig(horizon=h, num_samples=n, iterations=1, seed=0),
                device=dev),
            "ours_cem_5": lambda: CEMPlanner(
                model, task,
                CEMConfig(horizon=h, num_samples=n, iterations=CEM_ITERATIONS, seed=0),
                device=dev),
            "ours_gradient": lambda: GradientPlanner(
                model, task, GradientConfig(horizon=h, seed=0), device=dev),
        }
        calls: dict[str, Callable[[], object]] = {}
        for name in point.planners:
            if name in ours:
                calls[name] = WarmStarted(ours[name](), state, goals,
                                          with_prediction=name == "ours_mppi_with_prediction")
            elif name == "pytorch_mppi":
                peer = self._peer("pytorch_mppi", lambda: PytorchMPPIPeer(
                    model, task, goals, n, h, GAMMA, SIGMA, device=dev), state, dev)
                if peer is not None:
                    calls[name] = peer
            elif name == "torchrl_mppi":
                peer = self._peer("torchrl", lambda: TorchRLMPPIPeer(
                    model, task, goals, n, h, GAMMA, device=dev), state, dev)
                if peer is not None:
                    calls[name] = peer
        return calls

    def _peer(self, key: str, build: Callable[[], Any], state: torch.Tensor, device: str
              ) -> Callable[[], object] | None:
        """A peer's call after one trial plan; on any failure record why and skip it.

        A failure on the CPU marks the peer failed; one on CUDA only its ``cuda`` entry.
        """
        status = self.peer_status[key]
        failed_here = status.get("cuda", {}).get("status") == "failed" and device != "cpu"
        if status["status"] != "ok" or failed_here:
            return None
        try:
            peer = build()
            action = peer.command(state)
            if not bool(torch.isfinite(action).all()):
                raise RuntimeError("the trial plan returned non-finite actions")
        except Exception as exc:  # a peer's failure is a result, not a crash
            reason = f"{type(exc).__name__}: {exc}"[:500]
            if device == "cpu":
                status.update(status="failed", reason=reason)
            else:
                status["cuda"] = {"status": "failed", "reason": reason}
            log(f"  {key} failed on {device}: {reason[:200]}")
            return None
        return lambda: peer.command(state)


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, offset: int = 0,
                sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Time the calls in rounds, rotating their order, so all see the same machine noise."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        k = (i + offset) % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(time_call(calls[name], sync))
    return times


def run_point(bench: Bench, point: Point, warmup: int, rounds: int,
              progress_chunks: int = 1) -> dict[str, list[float]]:
    """Warm up, then time the point's planners in interleaved rounds (progress per chunk)."""
    calls = bench.calls(point)
    sync = torch.cuda.synchronize if point.device.startswith("cuda") else None
    interleaved(calls, warmup, sync=sync)
    times: dict[str, list[float]] = {name: [] for name in calls}
    chunk = max(1, math.ceil(rounds / progress_chunks))
    for done in range(0, rounds, chunk):
        for name, values in interleaved(calls, min(chunk, rounds - done), done, sync).items():
            times[name] += values
        if progress_chunks > 1:
            log(f"  {min(done + chunk, rounds)}/{rounds} rounds: " + ", ".join(
                f"{name} {benchlib.percentile(times[name], 50):.1f}" for name in TRIO
                if name in times) + " ms p50")
    return times


def point_result(point: Point, times: dict[str, list[float]], fpp: int, members: int,
                 peak: float, bf16_peak: float | None = None) -> dict[str, Any]:
    """Per-planner p50/p99 (ms), GFLOP per plan, GFLOP/s, efficiency, us per sample-step.

    Efficiency is against the matmul peak of the planner's own precision: ``bf16_peak`` for
    the ``*_bf16`` planners (where given), else ``peak`` (fp32)."""
    planners = {}
    for name, samples in times.items():
        stats = benchlib.summary(samples)
        steps = sequence_steps(name, point.n, point.h)
        gflop = steps * members * fpp / 1e9
        gflops = gflop / (stats["p50"] * 1e-3)
        planners[name] = {
            "p50_ms": stats["p50"],
            "p99_ms": stats["p99"],
            "max_ms": stats["max"],
            "mean_ms": stats["mean"],
            "calls": stats["n"],
            "gflop": gflop,
            "gflops": gflops,
            "efficiency": gflops / (bf16_peak if bf16_peak and name.endswith("_bf16")
                                    else peak),
            "us_per_sample_step": 1e3 * stats["p50"] / steps,
        }
    return {"N": point.n, "H": point.h, "device": point.device, "rounds": len(
        next(iter(times.values()), [])), "planners": planners}


def peer_ratios(point: dict[str, Any]) -> dict[str, dict[str, float]]:
    """peer time / ours_mppi time (p50 and p99) for each peer that ran; > 1: ours faster."""
    planners = point["planners"]
    ours = planners.get("ours_mppi")
    out = {}
    for peer in PEERS:
        if ours is not None and peer in planners:
            out[peer] = {"p50": planners[peer]["p50_ms"] / ours["p50_ms"],
                         "p99": planners[peer]["p99_ms"] / ours["p99_ms"]}
    return out


def headline(points: list[dict[str, Any]], peak: float) -> dict[str, Any]:
    """The flat numbers the README quotes (None where a planner did not run)."""
    def find(n: int, h: int, device: str = "cpu") -> dict[str, Any]:
        for p in points:
            if (p["N"], p["H"], p["device"]) == (n, h, device):
                return p["planners"]
        return {}

    def get(planners: dict[str, Any], name: str, key: str) -> float | None:
        return planners[name][key] if name in planners else None

    main = find(N_SAMPLES, HORIZON)
    out: dict[str, Any] = {"N": N_SAMPLES, "H": HORIZON, "threads": 1,
                           "matmul_peak_gflops": peak,
                           "planning_gflop": get(main, "ours_mppi", "gflop")}
    for name in (*TRIO, *OURS[1:]):
        out[f"{name}_p50_ms"] = get(main, name, "p50_ms")
        out[f"{name}_p99_ms"] = get(main, name, "p99_ms")
        out[f"{name}_efficiency"] = get(main, name, "efficiency")
    for prefix, (n, h) in (("", (N_SAMPLES, HORIZON)), ("n4096_", (4096, HORIZON)),
                           ("h30_", (N_SAMPLES, 30))):
        planners = find(n, h)
        ours = get(planners, "ours_mppi", "p50_ms")
        if prefix:
            for name in TRIO:
                out[f"{prefix}{name}_p50_ms"] = get(planners, name, "p50_ms")
        bf16 = get(planners, "ours_mppi_bf16", "p50_ms")
        for peer in PEERS:
            theirs = get(planners, peer, "p50_ms")
            out[f"{prefix}speedup_vs_{peer}"] = (theirs / ours if theirs is not None and ours
                                                 else None)
            out[f"{prefix}bf16_speedup_vs_{peer}"] = (theirs / bf16 if theirs is not None
                                                      and bf16 else None)
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    """Bars (p50, p99 whisker) at N=700 H=7 and p50 vs N and vs H for the MPPI trio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    colors = {"ours": "tab:blue", "pytorch_mppi": "tab:orange", "torchrl_mppi": "tab:green"}
    cpu = [p for p in result["points"] if p["device"] == "cpu"]
    main = next(p for p in cpu if (p["N"], p["H"]) == (N_SAMPLES, HORIZON))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    names = [n for n in (*TRIO, *OURS[1:]) if n in main["planners"]]
    p50 = [main["planners"][n]["p50_ms"] for n in names]
    p99 = [main["planners"][n]["p99_ms"] for n in names]
    ax = axes[0]
    ax.bar(range(len(names)), p50, yerr=[[0] * len(names), [b - a for a, b in zip(p50, p99,
           strict=True)]], capsize=4,
           color=[colors.get(n, colors["ours"]) for n in names])
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=30,
                  ha="right", fontsize=8)
    for i, (value, top) in enumerate(zip(p50, p99, strict=True)):
        ax.text(i, top, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("time to plan, ms (bar p50, whisker p99)")
    load = result["load_average_end"][0]
    ax.set_title(f"N={N_SAMPLES}, H={HORIZON}, 3 x 2 x 250 ensemble, 1 thread "
                 f"(load average at end {load:.1f})", fontsize=9)
    for ax, key, fixed, label in ((axes[1], "N", ("H", HORIZON), "samples N (H=7)"),
                                  (axes[2], "H", ("N", N_SAMPLES), "horizon H (N=700)")):
        for name in TRIO:
            pts = sorted((p[key], p["planners"][name]["p50_ms"]) for p in cpu
                         if p[fixed[0]] == fixed[1] and name in p["planners"])
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, "o-", label=name.replace("_", " "),
                        color=colors.get(name, colors["ours"]))
        ax.set_xlabel(label)
        ax.set_ylabel("p50 ms")
        if key == "N":
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        xs_all = sorted({p[key] for p in cpu if p[fixed[0]] == fixed[1]})
        ax.set_xticks(xs_all, [str(x) for x in xs_all])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[1].set_title("cost vs N", fontsize=9)
    axes[2].set_title("cost vs H", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    benchlib.save_figure(fig, path, result["command"])


def points_for(quick: bool, cuda: bool) -> list[Point]:
    """The main point (all planners) first, then the scaling points (MPPI trio)."""
    main = Point(N_SAMPLES, HORIZON, "cpu", (*TRIO, *OURS[1:]))
    sizes = (4096,) if quick else (100, 2000, 4096)
    horizons = (30,) if quick else (15, 30)
    scaling = [Point(n, HORIZON, "cpu", TRIO) for n in sizes]
    scaling += [Point(N_SAMPLES, h, "cpu", TRIO) for h in horizons]
    if cuda:
        scaling += [Point(n, HORIZON, "cuda", TRIO) for n in (N_SAMPLES, 4096)]
    return [main, *scaling]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds at the main point (scaling points: a third)")
    parser.add_argument("--quick", action="store_true", help="few rounds, 3 points (smoke run)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 100)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    scaling_repeats = max(3, repeats // 3)
    allocator_rounds = max(3, repeats // 5)
    warmup = 1 if args.quick else 5
    started = time.perf_counter()

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    info = benchlib.machine_info()
    log(f"cpu {info['cpu_model']}, {info['cores']} cores, torch {torch.__version__}, 1 thread, "
        f"cuda {'yes' if cuda else 'no'}")
    points = points_for(args.quick, cuda)

    log("phase 1/5: single-thread matmul peak")
    peak = matmul_peak_gflops(args.quick)
    bf16_peak = matmul_peak_gflops(args.quick, dtype=torch.bfloat16)
    log(f"  peak {peak['peak']:.1f} GFLOP/s (bfloat16: {bf16_peak['peak']:.1f})")
    cuda_peak = matmul_peak_gflops(args.quick, "cuda") if cuda else None

    task = BaodingTask()
    model = build_model()
    bench = Bench(model, task)
    fpp, members = flops_per_pass(model), model.num_members

    log(f"phase 2/5: glibc's default allocator, MPPI trio, {allocator_rounds} rounds")
    trio_main = Point(N_SAMPLES, HORIZON, "cpu", TRIO)
    default_ms = run_point(bench, trio_main, warmup, allocator_rounds)
    log("  " + ", ".join(f"{k} {benchlib.percentile(v, 50):.1f} ms" for k, v in
                         default_ms.items()))

    tuned = tune_malloc_for_planning()
    log(f"phase 3/5: allocator tuned ({'applied' if tuned else 'not glibc'}); all planners at "
        f"N={N_SAMPLES} H={HORIZON}, {warmup} warm-up + {repeats} interleaved rounds")
    results = [point_result(points[0], run_point(bench, points[0], warmup, repeats, 5), fpp,
                            members, peak["peak"], bf16_peak["peak"])]

    log(f"phase 4/5: scaling points, MPPI trio, {scaling_repeats} rounds each")
    for point in points[1:]:
        on_cpu = point.device == "cpu"
        p_peak = peak["peak"] if on_cpu or not cuda_peak else cuda_peak["peak"]
        times = run_point(bench, point, max(1, warmup // 2), scaling_repeats)
        results.append(point_result(point, times, fpp, members, p_peak,
                                    bf16_peak["peak"] if on_cpu else None))
        log(f"  {point.label}: " + ", ".join(
            f"{k} {v['p50_ms']:.1f} ms" for k, v in results[-1]["planners"].items()))

    log("phase 5/5: summary and picture")
    main_planners = results[0]["planners"]
    result: dict[str, Any] = {
        "benchmark": "planner",
        "config": {
            "ensemble": model.config.to_dict(),
            "gamma": GAMMA,
            "sigma": SIGMA,
            "threads": 1,
            "repeats": repeats,
            "scaling_repeats": scaling_repeats,
            "warmup": warmup,
            "quick": args.quick,
            "points": [p.label for p in points],
            "units": "ms per plan; gflop per plan; us_per_sample_step = p50 / forward-"
                     "equivalent (sequence, step) rollouts through all members",
        },
        "fairness": (
            "same EnsembleDynamics weights, N, H, one update per call (CEM 5: five), 1 thread, "
            "no_grad, one process and allocator setting, calls interleaved with rotating "
            "order. Peers roll an ensemble state (E member states side by side) with one "
            "predict call per step for all samples x members, goals inserted, reward = mean "
            "member Baoding reward: the same N x E x H network passes and reward as ours. "
            "Differences that belong to each library: ours filters the noise (PDDM beta) and "
            "books -500 per step after a predicted drop; pytorch-mppi samples N(0, 0.9^2) "
            "around its shifted plan; torchrl samples N(0, 1) around zero (no warm start), "
            "refits a std, weights via an advantage module (return - best return) and pays "
            "its per-step TensorDict/env overhead (that is what a user gets)."
        ),
        "planner_descriptions": DESCRIPTIONS,
        "peers": bench.peer_status,
        "torchrl": bench.peer_status["torchrl"],
        "cuda": ({"device": torch.cuda.get_device_name(0), "matmul_peak_gflops": cuda_peak}
                 if cuda else "not available"),
        "matmul_peak_gflops": peak["peak"],
        "matmul_shapes_gflops": peak,
        "matmul_peak_gflops_bf16": bf16_peak["peak"],
        "matmul_shapes_gflops_bf16": bf16_peak,
        "allocator": {
            "tuned": tuned,
            "rounds_default": allocator_rounds,
            "default_p50_ms": {k: benchlib.percentile(v, 50) for k, v in default_ms.items()},
            "tuned_p50_ms": {k: main_planners[k]["p50_ms"] for k in default_ms
                             if k in main_planners},
        },
        "points": results,
        "ratios": {f"N{p['N']}_H{p['H']}_{p['device']}": peer_ratios(p) for p in results},
        "headline": headline(results, peak["peak"]),
        "elapsed_s": time.perf_counter() - started,
        "load_average_start": info["load_average"],
        "load_average_end": list(os.getloadavg()),
    }
    out = benchlib.write_result(args.out, result)
    result["command"] = benchlib.command_line()
    png = out.with_suffix(".png")
    plot(result, png)
    h = result["headline"]
    log(f"ours MPPI p50 {h['ours_mppi_p50_ms']:.1f} ms p99 {h['ours_mppi_p99_ms']:.1f} ms | "
        + " | ".join(f"{peer} p50 {h[f'{peer}_p50_ms']:.1f} ms ({h[f'speedup_vs_{peer}']:.2f}x)"
                     for peer in PEERS if h[f"{peer}_p50_ms"] is not None)
        + f" | efficiency {h['ours_mppi_efficiency']:.0%} | {result['elapsed_s']:.0f} s")
    log(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
