"""PDDM's outer loop without ROS: the plan (random rollouts, then train -> MPC rollouts per
iteration) and the one loop that walks it, whatever runs the episodes (the in-process
learning bench, or the stack through the experiment node)."""

from mbrl_ros.core.experiment.loop import (
    EpisodeOutcome,
    ExperimentBackend,
    episode_line,
    episode_row,
    iteration_summary,
    run_experiment,
)
from mbrl_ros.core.experiment.plan import Budget, Policy, Step, pddm_plan

__all__ = ["Budget", "EpisodeOutcome", "ExperimentBackend", "Policy", "Step", "episode_line",
           "episode_row", "iteration_summary", "pddm_plan", "run_experiment"]
