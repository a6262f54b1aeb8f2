"""Model-free baseline: stable-baselines3 SAC on ``HandEnv``, evaluated as PDDM is.

What it measures: how PDDM's score, return, steps kept and drop rate of a SAC policy grow
with the number of real transitions, on exactly the episodes the stack's learning runs use
(``mbrl_ros.sim.HandEnv``: ``config/sim.yaml``'s simulator, the stack's task, the state
estimator's states), so a curve sits next to PDDM's at the same x axis.

How it is fair: SB3's SAC defaults (PDDM compared against SAC as published; MlpPolicy
256 x 256, Adam 3e-4, batch 256, one gradient step per transition, automatic entropy,
replay 1e6), ``learning_starts`` 1000 random transitions (PDDM starts from random data too),
one torch thread as the planner and trainer get. Every evaluation runs ``eval_episodes``
episodes on the fixed seeds ``EVAL_SEED + i`` (the same for every seed and every
evaluation), metrics by ``task.episode_metrics`` as the experiment manager computes them
(score = mean per-step PDDM score until a drop). ``eval_policy`` "sampled" (the default)
draws the actions from the policy, seeded per episode; "mean" plays its mean action, which
on Baoding (the same start and targets every episode) is one distinct episode however many
are run.

Resumable: each evaluation appends a CSV row, saves the model and the filled part of the
replay buffer under the transition count, then points ``state.json`` at them (atomic). A
restarted run continues from the newest checkpoint, drops CSV rows written after it (none
lost, none twice) and starts a fresh episode (not bitwise the run that would have been).

Run:  .venv/bin/python bench/learning/sac_baseline.py --task baoding --seed 0 \\
          --transitions 100000 --eval-every 5000 --eval-episodes 5 --out runs/sac_baoding_s0
      (``--quick``: 300 transitions, evaluations every 150, 1 episode; about 15 s).
CSV columns (``sac_eval.csv``): transitions (environment steps so far), train_episodes,
score / score_std (PDDM's per-step score averaged until a drop, mean and spread over the
evaluation episodes), return / return_std, steps_kept, drop_rate, tracking_error,
success_rate, eval_episodes, train_tps (transitions per wall second of the chunk before the
row), train_s / eval_s / wall_s (seconds spent training / evaluating / both, summed over
resumptions; start-up and checkpoint writing not counted).

Time budget: SAC makes one gradient step per transition, 11-16 ms on one thread here, so
training runs at about 25-40 transitions per wall second (2-core machine, load ~4.5 while
measured; the CSV's ``train_tps`` is the figure for a run): 10^5 transitions take about
1 hour per seed and task. An evaluation episode costs 0.3-0.5 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_BENCH = Path(__file__).resolve().parents[1]
if str(_BENCH) not in sys.path:  # run as a script: make ``import benchlib`` work
    sys.path.insert(0, str(_BENCH))

import torch  # noqa: E402
from stable_baselines3 import SAC  # noqa: E402
from stable_baselines3.common.buffers import ReplayBuffer  # noqa: E402

from mbrl_ros.core.data.storage import atomic_write  # noqa: E402
from mbrl_ros.nodes.runtime import cap_torch_threads  # noqa: E402
from mbrl_ros.sim.gym_env import HandEnv  # noqa: E402
from mbrl_ros.sim.rollout import roll_out  # noqa: E402

import benchlib  # noqa: E402

#: Evaluation episode i uses seed EVAL_SEED + i (outside the training episodes' usual seeds).
EVAL_SEED = 1_000_000
CSV_NAME = "sac_eval.csv"
STATE_NAME = "state.json"
COLUMNS = ("transitions", "train_episodes", "score", "score_std", "return", "return_std",
           "steps_kept", "drop_rate", "tracking_error", "success_rate", "eval_episodes",
           "train_tps", "train_s", "eval_s", "wall_s")
SAC_SETTINGS = {"policy": "MlpPolicy", "net_arch": [256, 256], "learning_rate": 3e-4,
                "buffer_size": 1_000_000, "batch_size": 256, "tau": 0.005, "gamma": 0.99,
                "train_freq": 1, "gradient_steps": 1, "ent_coef": "auto"}
# Must match between a run and its resumption (the transition target may grow).
SAME_ON_RESUME = ("task", "seed", "eval_every", "eval_episodes", "learning_starts", "sac",
                  "env_options", "eval_policy")
EVAL_POLICIES = ("sampled", "mean")
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones",
                 "timeouts")


def episode_rows(model: SAC, env: HandEnv, episodes: int, deterministic: bool = True
                 ) -> list[dict[str, Any]]:
    """``task.episode_metrics`` of ``episodes`` episodes on the seeds EVAL_SEED + i: the
    policy's mean action (``deterministic``), or actions drawn from it with torch seeded by
    the episode's seed, so that episodes differ where the task's start and goals do not
    (Baoding) and episode i draws the same actions however many are evaluated."""
    task = env.task
    rows = []
    for i in range(episodes):
        obs, info = env.reset(seed=EVAL_SEED + i)
        if not deterministic:
            torch.manual_seed(EVAL_SEED + i)
        run = roll_out(env, obs, lambda _, o: model.predict(o, deterministic=deterministic)[0])
        rows.append(task.episode_metrics(torch.as_tensor(run.states),
                                         torch.as_tensor(run.actions),
                                         torch.as_tensor(info["goals"][:run.steps + 1])))
    return rows


def evaluate(model: SAC, env: HandEnv, episodes: int, deterministic: bool = True
             ) -> dict[str, float]:
    """Means (and spreads) over :func:`episode_rows`."""
    return summarize(episode_rows(model, env, episodes, deterministic))


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The CSV's evaluation columns from :func:`episode_rows`."""
    table = {k: np.array([float(r[k]) for r in rows])
             for k in ("score", "return", "steps", "drop", "tracking_error", "success")}
    return {"score": table["score"].mean(), "score_std": table["score"].std(),
            "return": table["return"].mean(), "return_std": table["return"].std(),
            "steps_kept": table["steps"].mean(), "drop_rate": table["drop"].mean(),
            "tracking_error": table["tracking_error"].mean(),
            "success_rate": table["success"].mean(), "eval_episodes": len(rows)}


# ----- files ------------------------------------------------------------------------------
def save_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """The filled rows of an SB3 replay buffer (not its whole preallocated size), atomically."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    atomic_write(path, lambda f: np.savez(
        f, pos=buffer.pos, full=buffer.full, buffer_size=buffer.buffer_size,
        **{f: getattr(buffer, f)[:n] for f in BUFFER_FIELDS}))


def load_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Fill a fresh replay buffer from ``save_buffer``'s file."""
    with np.load(path) as data:
        full = bool(data["full"])
        n = len(data["observations"])
        if n > buffer.buffer_size or (full and n != buffer.buffer_size):
            raise ValueError(f"{path}: {n} saved rows do not fit a buffer of "
                             f"{buffer.buffer_size}")
        for f in BUFFER_FIELDS:
            getattr(buffer, f)[:n] = data[f]
        buffer.pos, buffer.full = int(data["pos"]), full



def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


class EvalLog:
    """``sac_eval.csv``: one row per evaluation; ``keep(n)`` drops rows past checkpoint n."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> list[dict[str, float]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def keep(self, n: int) -> int:
        """Rewrite the file with its header and first ``n`` rows; returns rows dropped."""
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        if lines and lines[0].split(",") != list(COLUMNS):
            raise ValueError(f"{self.path} has columns {lines[0]}, expected {COLUMNS}")
        body = lines[1:]
        if len(body) < n:
            raise ValueError(f"{self.path} has {len(body)} rows but the checkpoint says {n}")
        benchlib.atomic_text(self.path, "\n".join([",".join(COLUMNS), *body[:n]]) + "\n")
        return len(body) - n

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_cell(row[c]) for c in COLUMNS])
            f.flush()
            os.fsync(f.fileno())


# ----- the run ----------------------------------------------------------------------------
def run_sac(task: str, seed: int, transitions: int, eval_every: int, eval_episodes: int,
            out_dir: Path, learning_starts: int = 1000, env_options: dict | None = None,
            log: Callable[[str], None] | None = None, eval_policy: str = "sampled") -> Path:
    """Train SAC on ``HandEnv(task, **env_options)`` up to ``transitions`` environment steps,
    evaluating at 0 and every ``eval_every`` (``eval_policy``: "sampled" or "mean" actions);
    resumes from ``out_dir`` if it holds a run. Returns the CSV (``sac_eval.csv``)."""
    if eval_policy not in EVAL_POLICIES:
        raise ValueError(f"eval_policy must be one of {EVAL_POLICIES}, got {eval_policy!r}")
    for name, value in (("transitions", transitions), ("eval_every", eval_every),
                        ("eval_episodes", eval_episodes)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if int(learning_starts) != learning_starts or learning_starts < 0:
        raise ValueError(f"learning_starts must be an integer >= 0, got {learning_starts}")
    log = log or benchlib.Logger("sac")
    cap_torch_threads(1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env_options = dict(env_options or {})
    config = {"task": task, "seed": int(seed), "eval_every": int(eval_every),
              "eval_episodes": int(eval_episodes), "learning_starts": int(learning_starts),
              "sac": SAC_SETTINGS, "env_options": env_options, "eval_seed": EVAL_SEED,
              "eval_policy": eval_policy}
    train_env = HandEnv(task, **env_options)
    eval_env = HandEnv(task, **env_options)
    csv_log = EvalLog(out_dir / CSV_NAME)
    state_path = out_dir / STATE_NAME
    if state_path.exists():
        model, progress = _resume(state_path, config, train_env, csv_log, log)
    else:
        benchlib.atomic_text(csv_log.path, ",".join(COLUMNS) + "\n")  # a run never checkpointed
        settings = {k: v for k, v in SAC_SETTINGS.items() if k not in ("policy", "net_arch")}
        model = SAC(SAC_SETTINGS["policy"], train_env, learning_starts=learning_starts,
                    policy_kwargs={"net_arch": list(SAC_SETTINGS["net_arch"])}, seed=seed,
                    device="cpu", verbose=0, **settings)
        progress = {"transitions": 0, "rows": 0, "train_s": 0.0, "eval_s": 0.0, "wall_s": 0.0}
        _evaluate_and_save(model, eval_env, config, progress, float("nan"), out_dir,
                           csv_log, transitions, log)
    while progress["transitions"] < transitions:
        chunk = min(eval_every, transitions - progress["transitions"])
        start = time.perf_counter()
        model.learn(chunk, reset_num_timesteps=False, log_interval=10**9)
        took = time.perf_counter() - start
        progress["train_s"] += took
        progress["wall_s"] += took
        _evaluate_and_save(model, eval_env, config, progress, chunk / took, out_dir, csv_log,
                           transitions, log)
    return csv_log.path


def _resume(state_path: Path, config: dict, env: HandEnv, csv_log: EvalLog,
            log: Callable[[str], None]) -> tuple[SAC, dict]:
    saved = json.loads(state_path.read_text())
    saved["config"].setdefault("eval_policy", "mean")  # runs from before the choice existed
    changed = [k for k in SAME_ON_RESUME if saved["config"].get(k) != config[k]]
    if changed:
        raise ValueError(f"{state_path.parent} holds a run with other settings ({changed}); "
                         "use another directory")
    progress = saved["progress"]
    dropped = csv_log.keep(progress["rows"])
    model = SAC.load(state_path.parent / progress["model"], env=env, device="cpu")
    load_buffer(model.replay_buffer, state_path.parent / progress["buffer"])
    if model.num_timesteps != progress["transitions"]:
        raise ValueError(f"checkpoint model has {model.num_timesteps} steps, state.json says "
                         f"{progress['transitions']}")
    model.set_random_seed(config["seed"] + progress["transitions"])  # fresh episodes
    log(f"resuming {config['task']} seed {config['seed']} at {progress['transitions']} "
        f"transitions ({progress['rows']} evaluations"
        f"{f', {dropped} unsaved row(s) dropped' if dropped else ''})")
    return model, progress


def _evaluate_and_save(model: SAC, env: HandEnv, config: dict, progress: dict,
                       train_tps: float, out_dir: Path, csv_log: EvalLog, target: int,
                       log: Callable[[str], None]) -> None:
    start = time.perf_counter()
    metrics = evaluate(model, env, config["eval_episodes"],
                       deterministic=config["eval_policy"] == "mean")
    took = time.perf_counter() - start
    done = int(model.num_timesteps)
    progress["eval_s"] += took
    progress["wall_s"] += took
    row = {"transitions": done, "train_episodes": int(model._episode_num), **metrics,
           "train_tps": train_tps, **{k: progress[k] for k in ("train_s", "eval_s", "wall_s")}}
    csv_log.append(row)
    # checkpoint files are named by their transition count; state.json switches atomically
    model_name, buffer_name = f"sac_{done:010d}.zip", f"buffer_{done:010d}.npz"
    model.save(out_dir / model_name)
    save_buffer(model.replay_buffer, out_dir / buffer_name)
    previous = {progress.get("model"), progress.get("buffer")}
    progress.update(transitions=done, rows=progress["rows"] + 1, model=model_name,
                    buffer=buffer_name)
    benchlib.write_result(out_dir / STATE_NAME, {"config": config, "progress": progress})
    for old in previous - {None, model_name, buffer_name}:
        (out_dir / old).unlink(missing_ok=True)
    length = env.task.episode_length
    log(f"sac {config['task']} seed {config['seed']}: {done}/{target} transitions | score "
        f"{metrics['score']:.4f} return {metrics['return']:.1f} kept "
        f"{metrics['steps_kept']:.1f}/{length} drops {metrics['drop_rate']:.0%} | "
        f"{train_tps:.0f} transitions/s, wall {progress['wall_s']:.0f} s")


def evaluate_checkpoint(out_dir: Path, episodes: int, log: Callable[[str], None] | None = None
                        ) -> Path:
    """The run's newest checkpoint on ``episodes`` episodes drawn from its stochastic policy
    (training evaluations with "mean" actions are one distinct episode on Baoding) beside
    the mean action's; written to ``sac_eval_stochastic.json`` keyed by its transitions."""
    log = log or benchlib.Logger("sac")
    cap_torch_threads(1)
    state = json.loads((out_dir / STATE_NAME).read_text())
    config, progress = state["config"], state["progress"]
    env = HandEnv(config["task"], **config.get("env_options", {}))
    model = SAC.load(out_dir / progress["model"], device="cpu")
    path = out_dir / "sac_eval_stochastic.json"
    result = json.loads(path.read_text()) if path.exists() else {"evaluations": {}}
    drawn = episode_rows(model, env, episodes, deterministic=False)
    row = {"stochastic": summarize(drawn),
           "episode_returns": [float(r["return"]) for r in drawn],
           "mean_action": evaluate(model, env, 1)}
    result["evaluations"][str(progress["transitions"])] = row
    result["evaluations"] = dict(sorted(result["evaluations"].items(), key=lambda kv: int(kv[0])))
    benchlib.write_result(path, {**result, "task": config["task"], "seed": config["seed"]})
    m = row["stochastic"]
    log(f"sac {config['task']} seed {config['seed']} at {progress['transitions']}: "
        f"{episodes} stochastic episodes: drops {m['drop_rate']:.0%}, kept "
        f"{m['steps_kept']:.1f} steps, score {m['score']:.4f} (std {m['score_std']:.4f}), "
        f"error {m['tracking_error']:.4f}; mean action: drops "
        f"{row['mean_action']['drop_rate']:.0%} -> {path}")
    return path


FULL = {"transitions": 100_000, "eval_every": 5000, "eval_episodes": 5, "learning_starts": 1000}
QUICK = {"transitions": 300, "eval_every": 150, "eval_episodes": 1, "learning_starts": 100}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--task", choices=("baoding", "cube"), default="baoding")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transitions", type=int, help="default 100000 (--quick 300)")
    parser.add_argument("--eval-every", type=int, help="default 5000 (--quick 150)")
    parser.add_argument("--eval-episodes", type=int, help="default 5 (--quick 1)")
    parser.add_argument("--learning-starts", type=int, help="default 1000 (--quick 100)")
    parser.add_argument("--eval-policy", choices=EVAL_POLICIES, default="sampled",
                        help="evaluation episodes draw actions from the policy (sampled, "
                        "seeded per episode) or play its mean action")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default runs/sac_<task>_s<seed>)")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--evaluate-stochastic", type=int, metavar="EPISODES", default=None,
                        help="no training: the newest checkpoint in --out on this many "
                        "episodes of its stochastic policy (sac_eval_stochastic.json)")
    args = parser.parse_args(argv)
    if args.evaluate_stochastic is not None:
        if args.out is None or args.evaluate_stochastic < 1:
            parser.error("--evaluate-stochastic needs --out and at least 1 episode")
        print(f"results: {evaluate_checkpoint(args.out, args.evaluate_stochastic)}", flush=True)
        return 0
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    out = args.out or Path("runs") / f"sac_{args.task}_s{args.seed}"
    path = run_sac(args.task, args.seed, args.transitions, args.eval_every,
                   args.eval_episodes, out, learning_starts=args.learning_starts,
                   eval_policy=args.eval_policy)
    print(f"results: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
