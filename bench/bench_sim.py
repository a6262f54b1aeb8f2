"""Benchmark the simulated hand: physics real-time factor and control-step cost per task.

For each scene, runs control steps with uniform random actions in [-1, 1]^24 for about
``--seconds`` of wall time (single thread; episodes restart every ``--episode-steps`` like
PDDM's 30-step random rollouts, restarts not timed) and writes
``rtf_<scene>`` = simulated seconds / wall seconds of stepping, control steps per second,
per-step p50/p99 in ms, plus machine info, to ``--out`` (JSON).

    python bench/bench_sim.py --out bench/results/sim.json --seconds 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import mbrl_ros.sim as sim  # first: picks the headless GL backend before mujoco loads


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mujoco": version("mujoco"),
        "torch": version("torch"),
        "platform": platform.platform(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def bench_scene(name: str, seconds: float, episode_steps: int, seed: int) -> dict:
    hand = sim.HandSim(name, sim.SimConfig(seed=seed))
    rng = np.random.default_rng(seed)
    step_times: list[float] = []
    faults = 0
    sim_seconds = 0.0
    start = time.perf_counter()
    next_report = start + 1.0
    while time.perf_counter() - start < seconds:
        hand.reset()
        for _ in range(episode_steps):
            action = rng.uniform(-1.0, 1.0, 24)
            t0 = time.perf_counter()
            result = hand.step(action)
            step_times.append(time.perf_counter() - t0)
            sim_seconds += hand.control_dt
            faults += not result.ok
        now = time.perf_counter()
        if now >= next_report:
            print(f"  {name}: {len(step_times)} steps, "
                  f"{sim_seconds / sum(step_times):.1f}x real time", flush=True)
            next_report = now + 1.0
    ms = np.array(step_times) * 1e3
    wall = float(np.sum(step_times))
    return {
        "control_steps": len(step_times),
        "control_dt_s": hand.control_dt,
        "frame_skip": hand.config.frame_skip,
        "rtf": sim_seconds / wall,
        "control_steps_per_s": len(step_times) / wall,
        "physics_steps_per_s": len(step_times) * hand.config.frame_skip / wall,
        "step_ms_p50": float(np.percentile(ms, 50)),
        "step_ms_p99": float(np.percentile(ms, 99)),
        "step_ms_mean": float(ms.mean()),
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
        print(f"  render: skipped ({exc})")
        return None
    with renderer:
        renderer.render(hand.data)  # first frame pays for shader compilation
        t0 = time.perf_counter()
        for _ in range(frames):
            renderer.render(hand.data)
        return (time.perf_counter() - t0) / frames * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/sim.json")
    parser.add_argument("--seconds", type=float, default=5.0, help="wall seconds per scene")
    parser.add_argument("--episode-steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render-frames", type=int, default=10,
                        help="frames for the 480x480 render timing (0: skip)")
    args = parser.parse_args()
    if args.seconds <= 0 or args.episode_steps <= 0:
        parser.error("--seconds and --episode-steps must be positive")

    result: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_info(), "seconds_per_scene": args.seconds,
                    "episode_steps": args.episode_steps, "scenes": {}}
    for name in ("baoding", "cube"):
        print(f"scene {name}: random actions for {args.seconds:.0f} s", flush=True)
        stats = bench_scene(name, args.seconds, args.episode_steps, args.seed)
        stats["observe_us"] = bench_observe(name)
        result["scenes"][name] = stats
        result[f"rtf_{name}"] = stats["rtf"]
        print(f"  {name}: rtf {stats['rtf']:.1f}, {stats['control_steps_per_s']:.0f} steps/s, "
              f"p50 {stats['step_ms_p50']:.2f} ms, p99 {stats['step_ms_p99']:.2f} ms", flush=True)
    if args.render_frames > 0:
        print("render: 480x480 frames", flush=True)
        result["render_ms_480"] = bench_render("baoding", args.render_frames, 480)
        result["gl_backend"] = os.environ.get("MUJOCO_GL")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
