"""Fork a learning run at an iteration: the new run starts from the parent's data and model
and goes on under other settings (e.g. a softer planner once the model has matured).

The fork holds the parent's episodes, metrics rows and models of every iteration before
``iteration`` (files hard-linked where the filesystem allows, else copied), the parent's
model of ``iteration`` itself (it was trained on exactly that data; a parent stopped during
that training has none, and the fork trains it first), a ``spec.json`` with the
new settings and ``fork.json`` saying where it came from. ``pddm_run`` then resumes it like
any interrupted run: the transitions it reports count the parent's data too, so a
"within N transitions" criterion holds the whole history to it.

    .venv/bin/python bench/learning/fork_run.py PARENT_DIR OUT_DIR --iteration 40 \\
        --planner gamma=10 --planner sigma=0.7 [--trainer train.batch_size=256]

``--env NAME=VALUE`` (``HandEnv`` options, e.g. ``tracker_reports_velocity=true``) forks
into other *states*: each copied episode is replayed from its seed with its recorded
actions under the new options (the simulator is deterministic: the same motion, measured
differently) and stored with the states the new options give. No parent model comes
along (they learned the old states); the fork trains the model of ``iteration`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.results.metrics_log import MetricsLog, read_metrics
from mbrl_ros.sim.gym_env import HandEnv
from mbrl_ros.sim.rollout import roll_out


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def replay_episodes(parent: Path, out: Path, episodes: list[int], spec: dict[str, Any],
                    env_options: dict[str, Any]) -> dict[str, Any]:
    """Replay the parent's ``episodes`` under ``env_options`` into ``out``'s dataset;
    how many of them ended at another step than recorded (chaotic contacts can amplify
    float rounding) and the largest joint-angle difference from the recording."""
    source = EpisodeDataset(parent / "dataset")
    target = EpisodeDataset(out / "dataset")
    env = HandEnv(spec["task"], episode_length=spec.get("episode_length"),
                  **{**spec.get("env_options", {}), **env_options})
    joints = len(env.sim.joint_names)  # the task state starts with the joint angles
    other_length, joint_diff = 0, 0.0
    for e in episodes:
        recorded = source.episode(e)
        state, _ = env.reset(seed=int(recorded.meta["seed"]))
        replay = roll_out(env, state, lambda t, _, a=recorded.action: a[t], len(recorded))
        s, n = replay.states, replay.steps
        other_length += n != len(recorded)
        k = min(n, len(recorded))
        joint_diff = max(joint_diff, float(np.abs(s[:k, :joints]
                                                  - recorded.state[:k, :joints]).max()))
        target.append_episode(state=s[:-1], action=replay.actions, next_state=s[1:],
                              reward=replay.rewards, time=recorded.time[:n],
                              done=replay.terminated, step=recorded.step[:n],
                              meta={**recorded.meta, "replayed_with": env_options})
    return {"episodes_of_other_length": other_length, "max_joint_difference": joint_diff}


def fork(parent: Path, out: Path, iteration: int, planner_overrides: dict[str, Any],
         trainer_overrides: dict[str, Any] | None = None,
         env_options: dict[str, Any] | None = None,
         spec_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the fork of ``parent`` at ``iteration`` into ``out``; returns ``fork.json``."""
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty")
    every = read_metrics(parent / "metrics.csv")
    rows = [r for r in every if r["iteration"] < iteration]
    if not rows:
        raise ValueError(f"{parent} has no episodes before iteration {iteration}")
    if iteration > every[-1]["iteration"] + 1:
        raise ValueError(f"{parent}'s episodes end at iteration {every[-1]['iteration']}: "
                         f"fork at {every[-1]['iteration'] + 1} at most, not {iteration}")
    episodes = [r["episode"] for r in rows]
    if episodes != list(range(len(episodes))):
        raise ValueError(f"{parent}: episodes before iteration {iteration} are not 0..n-1")
    # without the parent's model of ``iteration`` (stopped during its training) the fork
    # trains it first, as a resumed run would
    has_model = (parent / "models" / f"iteration_{iteration:04d}.model").exists()
    spec = json.loads((parent / "spec.json").read_text())
    (out / "dataset").mkdir(parents=True)
    (out / "models").mkdir()
    replay = None
    if env_options:
        replay = replay_episodes(parent, out, episodes, spec, env_options)
    else:
        for e in episodes:
            name = f"episode_{e:06d}.npz"
            _link(parent / "dataset" / name, out / "dataset" / name)
        for path in sorted((parent / "models").glob("iteration_*.model")):
            if int(path.stem.split("_")[1]) <= iteration:
                _link(path, out / "models" / path.name)
    MetricsLog(out / "metrics.csv").extend(rows)
    spec["planner_overrides"] = {**spec.get("planner_overrides", {}), **planner_overrides}
    spec["trainer_overrides"] = {**spec.get("trainer_overrides", {}), **(trainer_overrides or {})}
    spec["env_options"] = {**spec.get("env_options", {}), **(env_options or {})}
    spec.update(spec_fields or {})
    (out / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    transitions = rows[-1]["transitions"]
    timing = json.loads((parent / "timing.json").read_text())
    # the parent's active time up to the fork, pro rata by transitions (an estimate)
    active = timing["active_s"] * transitions / max(1, int(timing["transitions"]))
    (out / "timing.json").write_text(json.dumps({"active_s": active,
                                                 "transitions": transitions}) + "\n")
    note = {"parent": str(parent), "iteration": iteration, "episodes": len(rows),
            "transitions": transitions, "planner_overrides": planner_overrides,
            "trainer_overrides": trainer_overrides or {},
            "env_options": env_options or {}, "spec_fields": spec_fields or {},
            "replay": replay, "model_of_iteration": "parent" if has_model and not replay
            else "trained by the fork",
            "active_s_estimated": active}
    (out / "fork.json").write_text(json.dumps(note, indent=2) + "\n")
    return note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parent", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--iteration", type=int, required=True,
                        help="the first iteration the fork runs itself")
    parser.add_argument("--planner", action="append", default=[], metavar="NAME=VALUE",
                        help="a planner override of the fork (repeatable)")
    parser.add_argument("--trainer", action="append", default=[], metavar="NAME=VALUE",
                        help="a trainer override of the fork's retrainings (repeatable; the "
                             "model of --iteration itself is the parent's)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a HandEnv option of the fork's states (repeatable); the "
                             "parent's episodes are replayed under it")
    parser.add_argument("--spec", action="append", default=[], metavar="NAME=VALUE",
                        help="another RunSpec field of the fork, e.g. mpc_action_noise=0.1")
    args = parser.parse_args(argv)
    overrides: dict[str, dict[str, Any]] = {"planner": {}, "trainer": {}, "env": {}, "spec": {}}
    for kind in overrides:
        for item in getattr(args, kind):
            name, sep, value = item.partition("=")
            if not sep:
                parser.error(f"--{kind} wants NAME=VALUE, got {item!r}")
            overrides[kind][name] = _value(value)
    note = fork(args.parent, args.out, args.iteration, overrides["planner"],
                overrides["trainer"], overrides["env"], overrides["spec"])
    print(json.dumps(note, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
