"""PDDM's outer loop as a list of steps: random rollouts, then iterations of train + rollouts.

The experiment manager walks this plan; keeping it a plain list makes the budget visible
(how many episodes of which policy, when the model is retrained) and testable without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Policy = Literal["random", "mpc"]


@dataclass(frozen=True)
class Budget:
    """Episode counts of one run (PDDM Baoding: 150 random, 200 x 40 MPC, 5 random each)."""

    random_rollouts: int = 150
    iterations: int = 200
    rollouts_per_iteration: int = 40
    random_rollouts_per_iteration: int = 5

    def __post_init__(self) -> None:
        for name in ("random_rollouts", "iterations", "rollouts_per_iteration",
                     "random_rollouts_per_iteration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Budget.{name} must be an int >= 0, got {value!r}")
        if self.random_rollouts == 0 and self.iterations > 0:
            raise ValueError("Budget needs random_rollouts >= 1 to train the first model")

    @property
    def episodes(self) -> int:
        per_iteration = self.rollouts_per_iteration + self.random_rollouts_per_iteration
        return self.random_rollouts + self.iterations * per_iteration


@dataclass(frozen=True)
class Step:
    """One item of the plan: ``train`` before iteration ``iteration``, or one episode."""

    kind: Literal["train", "episode"]
    iteration: int  # 0: the initial random rollouts
    policy: Policy | None = None


def pddm_plan(budget: Budget) -> list[Step]:
    """Initial random episodes (iteration 0), then per iteration: train, MPC, random."""
    steps = [Step("episode", 0, "random") for _ in range(budget.random_rollouts)]
    for it in range(1, budget.iterations + 1):
        steps.append(Step("train", it))
        steps += [Step("episode", it, "mpc") for _ in range(budget.rollouts_per_iteration)]
        steps += [Step("episode", it, "random")
                  for _ in range(budget.random_rollouts_per_iteration)]
    return steps
