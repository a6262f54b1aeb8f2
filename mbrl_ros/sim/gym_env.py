"""``HandEnv``: a gymnasium environment with the same episodes as the stack's learning runs.

For model-free baselines (SAC) and ROS-free learning loops that must be comparable with
the ROS stack's lockstep runs step for step:

- simulator: ``HandSim`` with ``SimConfig()`` defaults, which are ``config/sim.yaml``'s
  (``frame_skip`` 40 = 0.1 s steps, ``command_velocity_limit`` 3 rad/s, every realism
  setting off, no start-state noise); ``**sim_options`` override ``SimConfig`` fields
  (``realism`` may be a ``RealismConfig`` or a dict of its fields);
- task: built like every node builds it (``core.tasks.from_values``: the stack's task
  defaults, which ``config/<task>.yaml`` repeats), ``task_params`` override them;
- episode, as the experiment manager runs it (docs/node_graph.md): ``reset(seed=s)`` is
  ``reset_episode(seed=s)`` (the keyframe, every random stream reseeded with ``s``) with the
  goal schedule ``task.episode_goals(s, T + 1)``; state ``k`` carries schedule row ``k``;
- observation: the task state (40 Baoding, 39 cube) as the ``state_estimator`` assembles
  it from the simulator's joint and object readings (``state_source="estimator"``, Kalman
  velocities from poses, or from the tracker's twists too with
  ``tracker_reports_velocity``, as the stack's sim parameter of that name), or the
  simulator's exact task observation (``"sim"``);
- action: PDDM's normalized action in [-1, 1]^24 through the scene's ``ActionMap``
  (Baoding 0.9 of the range around the keyframe, cube the full range), as the planner;
- reward: ``task.reward`` of the reached state against its goal (PDDM's, with the drop
  penalty); terminated on a drop, truncated after ``episode_length`` steps (Baoding 100,
  cube 70); ``info["score"]`` is PDDM's per-step score of the reached state.

Without a seed, ``reset`` draws the episode seed from the env's ``np_random`` (gymnasium's
seed semantics: ``reset(seed=s)`` then seedless resets reproduce a sequence of episodes).
With the default settings a Baoding episode is the same for every seed (fixed targets, no
start noise): only the policy varies it.

With tracker dropouts (realism) the start state is read again until the tracker sees the
objects, as the stack's lockstep simulator re-publishes until the estimator has a state.
A physics fault (MuJoCo warning or non-finite state, rare) ends the episode as truncated with
``info["fault"]`` set; the returned observation is the last trustworthy state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from mbrl_ros.core.estimation.state_assembly import KalmanSettings
from mbrl_ros.core.tasks.from_values import stack_task
from mbrl_ros.sim.realism import RealismConfig
from mbrl_ros.sim.simulator import HandSim, SimConfig
from mbrl_ros.sim.task_state import TaskStateSource

#: Episode seeds drawn by seedless resets lie in [0, MAX_EPISODE_SEED).
MAX_EPISODE_SEED = 2**31 - 1
#: A start state needs a tracker reading; with dropouts it is read again up to this often.
MAX_REREADS = 1000


def sim_config(**options: Any) -> SimConfig:
    """``SimConfig`` with ``options`` over its defaults; ``realism`` may be a plain dict."""
    realism = options.get("realism")
    if isinstance(realism, Mapping):
        options["realism"] = RealismConfig.from_dict(realism)
    try:
        return SimConfig(**options)
    except TypeError as exc:
        raise ValueError(f"bad simulator options {sorted(options)}: {exc}") from exc


class HandEnv(gym.Env):
    """The simulated hand on PDDM's Baoding or cube task (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str = "baoding", episode_length: int | None = None, *,
                 state_source: str = "estimator", task_params: Mapping[str, Any] | None = None,
                 kalman: KalmanSettings | None = None, render_mode: str | None = None,
                 tracker_reports_velocity: bool = False, **sim_options: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.task = stack_task(task, episode_length, task_params)
        self.sim = HandSim(task, sim_config(**sim_options))
        self.source = TaskStateSource(self.task, self.sim.control_dt, state_source, kalman,
                                      tracker_velocity=tracker_reports_velocity)
        if tuple(self.source.assembler.object_names) != tuple(self.sim.scene.object_names):
            raise ValueError("the task's tracked objects do not match the scene's")
        self.render_mode = render_mode
        self.episode_length = self.task.episode_length
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.task.state_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.task.action_dim,), np.float32)
        self.episode_seed: int | None = None
        self._goals = np.zeros((0, self.task.goal_dim))
        self._state: np.ndarray | None = None
        self._step = 0
        self._over = True
        self._renderer = None

    @property
    def goals(self) -> np.ndarray:
        """The current episode's goal schedule ``[T + 1, G]`` (row k: goal of state k)."""
        return self._goals.copy()

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` is the experiment manager's episode seed."""
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, MAX_EPISODE_SEED))
        self.episode_seed = int(seed)
        obs = self.sim.reset(seed=self.episode_seed)
        for _ in range(MAX_REREADS):  # as the lockstep simulator re-publishes until it has one
            if obs.objects is not None:
                break
            obs = self.sim.observe()
        else:
            raise RuntimeError(f"no tracker reading of the start state in {MAX_REREADS} tries")
        length = self.task.episode_length
        self._goals = self.task.episode_goals(self.episode_seed, length + 1).double().numpy()
        self._show_goal(0)
        self.source.reset()
        self._state = self.source.state(obs, self._goals[0])
        self._step = 0
        self._over = False
        return self._state.astype(np.float32), {
            "goals": self._goals.copy(), "step": 0, "episode_seed": self.episode_seed}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One 0.1 s control step with ``action`` (clipped to [-1, 1])."""
        if self._over:
            raise RuntimeError("the episode is over (or never started): call reset() first")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.task.action_dim,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be {self.task.action_dim} finite numbers, got shape "
                             f"{a.shape}")
        a = np.clip(a, -1.0, 1.0)
        result = self.sim.step(a)
        k = self._step + 1
        if result.fault is None:
            self._show_goal(k)
            self._state = self.source.state(result.observation, self._goals[k])
        state, goal = torch.from_numpy(self._state), torch.from_numpy(self._goals[k])
        with torch.no_grad():
            reward, dropped = self.task.reward(state, torch.from_numpy(a), goal)
            score = self.task.step_score(state, goal)
            error = self.task.step_error(state, goal)
        terminated = bool(dropped)
        truncated = (k >= self.task.episode_length or result.fault is not None) and not terminated
        self._step = k
        self._over = terminated or truncated
        info = {"score": float(score), "tracking_error": float(error), "dropped": terminated,
                "step": k, "fault": result.fault}
        return self._state.astype(np.float32), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """An RGB frame of the scene (``render_mode="rgb_array"``), else None."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from mbrl_ros.sim.render import SceneRenderer

            self._renderer = SceneRenderer(self.sim.scene, 320, 240)
        return self._renderer.render(self.sim.data)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _show_goal(self, step: int) -> None:
        """Move the target visuals to the goal of ``step`` (as the simulator node does)."""
        self.sim.set_goal(self._goals[step].reshape(self.sim.scene.goal_shape),
                          self.task.goal_frame)
