"""Step a ``HandEnv`` episode with any policy and keep what it saw.

Every in-process episode (the learning runs, their replays under other states, the
closed-loop and SAC evaluations) is the same loop: act, step, record, stop at a drop or at
the episode's end. It lives here once; the caller resets the env (and prepares its policy
from the reset's goals) and hands over the first state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mbrl_ros.sim.gym_env import HandEnv

#: ``act(t, state)``: the action of step ``t`` from the state before it
Policy = Callable[[int, np.ndarray], np.ndarray]


@dataclass
class Rollout:
    """One episode as stepped: ``states [T + 1, S]`` (float64, the first is the reset
    state), ``actions [T, A]`` as executed (before the env's clipping), ``rewards [T]``,
    ``terminated [T]`` (True only at a drop)."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.actions)

    def transitions(self, control_dt: float) -> dict[str, np.ndarray]:
        """The episode as the arguments of ``EpisodeDataset.append_episode``: each step's
        state, action, next state, reward, time (``control_dt`` apart from 0) and done."""
        return {"state": self.states[:-1], "action": self.actions,
                "next_state": self.states[1:], "reward": self.rewards,
                "time": np.arange(self.steps) * control_dt, "done": self.terminated}


def roll_out(env: HandEnv, first_state: np.ndarray, act: Policy,
             max_steps: int | None = None) -> Rollout:
    """Step ``env`` from ``first_state`` (what ``reset`` returned) with ``act`` until the
    episode terminates (a drop), is truncated (its length, a fault) or ``max_steps`` ran."""
    state = first_state
    states = [np.asarray(state, dtype=np.float64)]
    actions, rewards, terminated = [], [], []
    t = 0
    while max_steps is None or t < max_steps:
        action = np.asarray(act(t, state), dtype=np.float64)  # the env's state, as returned
        state, reward, done, truncated, _ = env.step(action)
        states.append(np.asarray(state, dtype=np.float64))
        actions.append(action)
        rewards.append(float(reward))
        terminated.append(bool(done))
        t += 1
        if done or truncated:
            break
    dim = env.task.action_dim
    return Rollout(states=np.asarray(states), actions=np.asarray(actions).reshape(-1, dim),
                   rewards=np.asarray(rewards, dtype=np.float64),
                   terminated=np.asarray(terminated, dtype=bool))
