#!/usr/bin/env python3
"""Benchmark the simulated hand alone and the whole lockstep stack around it.

1. Physics, per scene (Baoding, cube): control steps with uniform random actions in
   [-1, 1]^24 for about ``--seconds`` of wall time in this process, single thread (episodes
   restart every ``--episode-steps`` like PDDM's 30-step random rollouts, restarts not
   timed): ``rtf_<scene>`` = simulated seconds / wall seconds of stepping, control steps per
   second, per-step p50/p99 (``scenes.<scene>.*``), plus the cost of an extra ``observe``
   and of a 480x480 offscreen frame.
2. The simulator node's own lockstep step, in this process: physics and publishing
   (``/clock``, object and joint states) of ``ShadowHandSimNode`` under PDDM's random
   exploration (``sim_node_probe``).
3. The whole stack in lockstep (``stack``): ``shadow_hand_sim``, ``state_estimator`` and
   ``mpc_planner`` as real processes with the stack's parameter files (Baoding, PDDM's MPPI
   N=700 H=7 on one torch thread), driven like the experiment manager drives them: reset,
   goal schedule stamped with the first observation, 100-step episodes (``--quick``: 30).
   First with the random policy, then MPC on PDDM's 3 x 2 x 250 ensemble (seeded weights,
   normalizers fitted on real transitions: a plan costs what it costs on a trained model).
   Each policy first runs an untimed 10-step warm-up episode. Reported: steps per second within the
   episodes (state 0 to state 100 as this process receives them) and wall time per episode
   including the reset; where a step's time goes: physics and sim publishing (from 2), the
   estimator (its ``~/latency_ms``: joint state in, task state out), the planner's plan
   time (``planned_action.stats.plan_latency_ms``) and the rest (messaging between the
   three processes and this one, message conversion, the planner's predicted trajectory for
   its markers and its records).
   No trainer runs (``make demo`` adds one, recording every transition).
   Picture: ``sim_time_breakdown.png`` beside the JSON.

Budget: about 1 minute here (3 minutes at most on a loaded 2-core machine); ``--quick``
under 40 s.

    .venv/bin/python bench/bench_sim.py [--quick] [--out bench/results/sim.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import mbrl_ros.sim as sim  # first: picks the headless GL backend before mujoco loads

import benchlib
import lockstep_stack as stack

DEFAULT_OUT = benchlib.RESULTS / "sim.json"
EPISODE_LENGTH = 100
QUICK_EPISODE_LENGTH = 30
WARMUP_STEPS = 10
BREAKDOWN = (("physics", "physics (MuJoCo)"), ("sim_publish", "sim node: publish"),
             ("estimator", "estimator"), ("planner", "planner: plan"),
             ("rest", "messaging and the rest"))

log = benchlib.Logger("bench_sim")


# ----- 1. physics ----------------------------------------------------------------------
def bench_scene(name: str, seconds: float, episode_steps: int, seed: int) -> dict[str, Any]:
    hand = sim.HandSim(name, sim.SimConfig(seed=seed))
    rng = np.random.default_rng(seed)
    step_times: list[float] = []
    faults = 0
    sim_seconds = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        hand.reset()
        for _ in range(episode_steps):
            action = rng.uniform(-1.0, 1.0, 24)
            t0 = time.perf_counter()
            result = hand.step(action)
            step_times.append(time.perf_counter() - t0)
            sim_seconds += hand.control_dt
            faults += not result.ok
    ms = np.array(step_times) * 1e3
    wall = float(np.sum(step_times))
    stats = benchlib.summary(ms)
    return {
        "control_steps": len(step_times),
        "control_dt_s": hand.control_dt,
        "frame_skip": hand.config.frame_skip,
        "rtf": sim_seconds / wall,
        "control_steps_per_s": len(step_times) / wall,
        "physics_steps_per_s": len(step_times) * hand.config.frame_skip / wall,
        "step_ms_p50": stats["p50"],
        "step_ms_p99": stats["p99"],
        "step_ms_mean": stats["mean"],
        "physics_faults": faults,
    }


def bench_observe(name: str, n: int = 2000) -> float:
    """Microseconds per extra ``observe`` (encoders + tracker kinematics)."""
    hand = sim.HandSim(name)
    t0 = time.perf_counter()
    for _ in range(n):
        hand.observe()
    return (time.perf_counter() - t0) / n * 1e6


def bench_render(name: str, frames: int, size: int) -> float | None:
    from mbrl_ros.sim.render import RenderUnavailable, SceneRenderer

    hand = sim.HandSim(name)
    try:
        renderer = SceneRenderer(hand.scene, size, size)
    except RenderUnavailable as exc:
        log(f"  render: skipped ({exc})")
        return None
    with renderer:
        renderer.render(hand.data)  # first frame pays for shader compilation
        t0 = time.perf_counter()
        for _ in range(frames):
            renderer.render(hand.data)
        return (time.perf_counter() - t0) / frames * 1e3


# ----- 3. the stack --------------------------------------------------------------------
def policy_result(records: list[stack.EpisodeRecord], probe: dict[str, list[float]],
                  planning: bool) -> dict[str, Any]:
    """Throughput, per-step statistics and the per-step time breakdown of one policy."""
    periods = np.concatenate([r.step_periods_ms for r in records])
    in_episode_s = sum(float(np.sum(r.step_periods_ms)) / 1e3 for r in records)
    steps = sum(r.length for r in records)
    plan = [ms for r in records for k, ms in r.plan_ms.items()
            if not planning or r.sources.get(k) not in ("exploration", "hold")]
    estimator = [ms for r in records for ms in r.estimator_ms]
    means = {
        "physics": float(np.mean(probe["physics_ms"])),
        "sim_publish": float(np.mean(probe["publish_ms"])),
        "estimator": float(np.mean(estimator)),
        "planner": float(np.mean(plan)) if plan else 0.0,
    }
    means["rest"] = float(np.mean(periods)) - sum(means.values())
    return {
        "episodes": len(records),
        "steps": steps,
        "steps_per_s": steps / in_episode_s,
        "episode_wall_s": [r.wall_s for r in records],
        "episode_wall_s_mean": float(np.mean([r.wall_s for r in records])),
        "step_ms": benchlib.summary(periods),
        "estimator_ms": benchlib.summary(estimator),
        "plan_ms": benchlib.summary(plan),
        "planner_sources": dict(Counter(s for r in records for s in r.sources.values())),
        "breakdown_ms": means,
    }


def bench_stack(episodes: int, length: int, probe: dict[str, list[float]], seed: int,
                startup_timeout: float = 120.0) -> dict[str, Any]:
    """Random-policy then MPC episodes of ``length`` steps through the three processes."""
    from mbrl_ros.nodes.task_params import default_task_values, task_from_params

    task = task_from_params({**default_task_values(), "episode_length": length})
    states, actions = stack.sim_trajectory(200, seed)
    model = stack.random_pddm_model(task, states, actions, seed)
    result: dict[str, Any] = {
        "nodes": [name for name, _ in stack.NODES], "task": task.name,
        "episode_length": length, "episodes_per_policy": episodes,
        "planner": {"name": "mppi", "num_samples": 700, "horizon": 7, "torch_threads": 1},
        "model": "3 x 2 x 250 ReLU ensemble, seeded weights, normalizers from real data",
        "policies": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_sim_stack_") as tmp:
        logs = Path(tmp)
        start = time.perf_counter()
        with stack.node_processes(logs) as procs:
            def alive() -> None:
                for (name, _), proc in zip(stack.NODES, procs, strict=True):
                    if proc.poll() is not None:
                        tail = (logs / f"{name}.log").read_text()[-3000:]
                        raise stack.StackError(f"{name} exited ({proc.returncode}):\n{tail}")

            driver = stack.StackDriver(task)
            try:
                driver.wait_ready(startup_timeout, alive)
                result["startup_s"] = time.perf_counter() - start
                log(f"  nodes up in {result['startup_s']:.1f} s")
                episode_id = 1
                for policy, planning in (("random", False), ("mpc", True)):
                    if planning:
                        driver.load_model(model)
                    driver.set_policy("plan" if planning else "explore")
                    driver.run_episode(episode_id, seed + episode_id, WARMUP_STEPS)
                    episode_id += 1
                    records = []
                    for _ in range(episodes):
                        alive()
                        records.append(driver.run_episode(episode_id, seed + episode_id,
                                                          length))
                        episode_id += 1
                        r = records[-1]
                        log(f"  {policy} episode {r.episode_id}: {r.wall_s:.2f} s, "
                            f"{r.length / (np.sum(r.step_periods_ms) / 1e3):.0f} steps/s")
                    result["policies"][policy] = policy_result(records, probe, planning)
                    if planning:
                        missing = [k for r in records for k in range(r.length)
                                   if r.sources.get(k) in (None, "exploration", "hold")]
                        if missing:
                            raise stack.StackError(f"{len(missing)} MPC steps were not "
                                                   f"planned (no model?)")
            finally:
                driver.close()
    return result


# ----- picture -------------------------------------------------------------------------
def plot_breakdown(result: dict[str, Any], path: Path) -> None:
    """One stacked bar per policy (each on its own scale): where a lockstep step goes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = result["stack"]["policies"]
    labels = {"random": "random policy", "mpc": "MPC: MPPI N=700, H=7"}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(policies), 1, figsize=(10, 1.0 + 1.3 * len(policies)),
                             squeeze=False)
    for ax, (name, p) in zip(axes[:, 0], policies.items(), strict=True):
        parts = p["breakdown_ms"]
        total = p["step_ms"]["mean"]
        left = 0.0
        for i, (key, label) in enumerate(BREAKDOWN):
            width = max(parts[key], 0.0)
            ax.barh(0, width, left=left, color=colours[i], edgecolor="white", label=label)
            if width > 0.06 * total:
                ax.text(left + width / 2, 0, f"{parts[key]:.1f}", ha="center", va="center",
                        fontsize=8, color="white")
            left += width
        ax.text(left + 0.01 * total, 0, f"{total:.1f} ms/step = {p['steps_per_s']:.0f} "
                "steps/s", va="center", fontsize=9)
        ax.set_xlim(0, 1.4 * max(left, total))
        ax.set_yticks([0], [labels.get(name, name)])
        ax.set_xlabel("wall time per lockstep step (ms, mean)")
    axes[0, 0].set_title("Where a lockstep step goes: sim + estimator + planner processes, "
                         f"{result['stack']['task'].capitalize()}")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, ncol=len(BREAKDOWN), loc="lower center",
               bbox_to_anchor=(0.5, 0.04))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    benchlib.save_figure(fig, path, result["command"])


# ----- main ----------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="result JSON (sim_time_breakdown.png goes beside it)")
    parser.add_argument("--quick", action="store_true",
                        help="1 s per scene, no render, one 30-step episode per policy "
                        "(smoke test)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="wall seconds per scene (default 5, --quick 1)")
    parser.add_argument("--episode-steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render-frames", type=int, default=None,
                        help="frames for the 480x480 render timing (default 10, --quick 0 "
                        "= skip)")
    parser.add_argument("--stack-episodes", type=int, default=None,
                        help="100-step lockstep episodes per policy (default 3, --quick 1; "
                        "0: skip the stack)")
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    frames = args.render_frames if args.render_frames is not None else (0 if args.quick else 10)
    length = QUICK_EPISODE_LENGTH if args.quick else EPISODE_LENGTH
    episodes = (args.stack_episodes if args.stack_episodes is not None
                else (1 if args.quick else 3))
    if seconds <= 0 or args.episode_steps <= 0 or frames < 0 or episodes < 0 or args.seed < 0:
        parser.error("--seconds and --episode-steps must be positive, the rest >= 0")
    benchlib.ros_environment(fresh_domain=True)
    start = time.perf_counter()

    result: dict[str, Any] = {"seconds_per_scene": seconds, "episode_steps": args.episode_steps,
                              "scenes": {}}
    for name in ("baoding", "cube"):
        log(f"scene {name}: random actions for {seconds:g} s")
        stats = bench_scene(name, seconds, args.episode_steps, args.seed)
        stats["observe_us"] = bench_observe(name)
        result["scenes"][name] = stats
        result[f"rtf_{name}"] = stats["rtf"]
        log(f"  {name}: rtf {stats['rtf']:.1f}, {stats['control_steps_per_s']:.0f} steps/s, "
            f"p50 {stats['step_ms_p50']:.2f} ms, p99 {stats['step_ms_p99']:.2f} ms")
    if frames > 0:
        log(f"render: {frames} frames of 480x480")
        result["render_ms_480"] = bench_render("baoding", frames, 480)
        result["gl_backend"] = os.environ.get("MUJOCO_GL")

    if episodes > 0:
        probe_steps = 100 if args.quick else 1000
        log(f"sim node probe: {probe_steps} lockstep steps in this process")
        probe = stack.probe_sim_node(probe_steps, args.seed)
        result["sim_node_probe"] = {"physics_ms": benchlib.summary(probe["physics_ms"]),
                                    "publish_ms": benchlib.summary(probe["publish_ms"])}
        log(f"  physics {np.mean(probe['physics_ms']):.2f} ms, publish "
            f"{np.mean(probe['publish_ms']):.2f} ms per step")
        log(f"stack: sim + estimator + planner processes, {episodes} x {length} steps "
            "per policy")
        result["stack"] = bench_stack(episodes, length, probe, args.seed)
        for policy, p in result["stack"]["policies"].items():
            result[f"lockstep_steps_per_s_{policy}"] = p["steps_per_s"]
            result[f"lockstep_episode_s_{policy}"] = p["episode_wall_s_mean"]
            b = p["breakdown_ms"]
            log(f"  {policy}: {p['steps_per_s']:.0f} steps/s, {p['episode_wall_s_mean']:.2f} s "
                f"per episode; per step " + ", ".join(f"{k} {v:.1f}" for k, v in b.items())
                + " ms")

    result["wall_s"] = time.perf_counter() - start
    out = benchlib.write_result(args.out, result)
    written = [out]
    if "stack" in result:
        picture = out.parent / "sim_time_breakdown.png"
        plot_breakdown({**result, "command": benchlib.command_line()}, picture)
        written.append(picture)
    log(f"wrote {', '.join(map(str, written))} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
