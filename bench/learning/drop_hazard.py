"""A learned drop hazard: ``P(the object is dropped within k steps of state s)``.

The cube's learned dynamics models foresee a roll off the fingertips only 1-2 steps ahead
(``bench_drop_foresight``), too late for a 7-step plan. A classifier fitted directly on the
loop's own episodes (each reached state labelled 1 when its episode ended in a drop at most
``k`` steps later) needs no composition of one-step predictions to see it coming; the
planner then scores ``reward - weight * hazard(predicted state)`` (``with_hazard_cost``).
A bench-side lever (``bench_drop_hazard``, ``RunSpec.drop_hazard``), not part of PDDM.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.tasks.base import Task

Log = Callable[[str], None]


class DropHazard(nn.Module):
    """``P(drop within k steps)`` of states ``[..., S]`` (their goal fields ignored)."""

    def __init__(self, task: Task, mean: Tensor, std: Tensor, hidden: int = 256) -> None:
        super().__init__()
        keep = torch.ones(task.state_dim, dtype=torch.bool)
        if task.goal_slice is not None:
            keep[task.goal_slice] = False
        self.register_buffer("keep", keep.nonzero().squeeze(1))
        self.register_buffer("mean", mean[self.keep])
        self.register_buffer("std", std[self.keep].clamp_min(1e-6))
        width = int(self.keep.numel())
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 1))

    def logits(self, states: Tensor) -> Tensor:
        x = (states.float().index_select(-1, self.keep) - self.mean) / self.std
        return self.net(x).squeeze(-1)

    def forward(self, states: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(states))


def load_hazard(path: str | Path, task: Task) -> DropHazard:
    """A hazard stored with ``torch.save(hazard.state_dict(), path)``."""
    dim = task.state_dim
    hazard = DropHazard(task, torch.zeros(dim), torch.ones(dim))
    hazard.load_state_dict(torch.load(path))
    return hazard.eval()


def labelled_states(dataset: EpisodeDataset, ids: list[int], k: int) -> tuple[Tensor, Tensor]:
    """Every episode's reached states ``s_1 .. s_T`` and their labels: 1 where the episode
    ended in a drop at most ``k`` steps later (the dropped state itself included)."""
    batch = dataset.batch(ids)  # the episodes one after another, in ``ids`` order
    _, counts = torch.unique_consecutive(batch.episode, return_counts=True)
    ends = counts.cumsum(0)
    position = torch.arange(len(batch.episode)) - torch.repeat_interleave(ends - counts, counts)
    to_end = torch.repeat_interleave(counts, counts) - 1 - position
    dropped = torch.repeat_interleave(batch.done[ends - 1], counts)
    return batch.next_state.float(), ((to_end <= k) & dropped).float()


def train_hazard(task: Task, states: Tensor, labels: Tensor, epochs: int, seed: int = 0,
                 log: Log | None = None) -> DropHazard:
    """The hazard fitted by class-balanced binary cross-entropy (Adam, minibatches of 1024)."""
    torch.manual_seed(seed)
    hazard = DropHazard(task, states.mean(0), states.std(0))
    positives = float(labels.sum())
    weight = torch.tensor((len(labels) - positives) / max(positives, 1.0))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
    opt = torch.optim.Adam(hazard.parameters(), lr=1e-3)
    for epoch in range(epochs):
        order = torch.randperm(len(labels))
        total = 0.0
        for start in range(0, len(order), 1024):
            idx = order[start:start + 1024]
            loss = loss_fn(hazard.logits(states[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log(f"hazard epoch {epoch + 1}/{epochs}: loss {total / len(labels):.4f}")
    return hazard.eval()


def with_hazard_cost(task: Task, hazard: DropHazard, weight: float) -> Task:
    """A copy of ``task`` whose reward subtracts ``weight * hazard(state)`` per step."""
    planning = copy.copy(task)
    base = task.reward

    def reward(states: Tensor, actions: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        r, terminated = base(states, actions, goals)
        with torch.no_grad():
            cost = hazard(states).to(r.dtype)
        return r - weight * cost, terminated

    planning.reward = reward  # type: ignore[method-assign]
    return planning
