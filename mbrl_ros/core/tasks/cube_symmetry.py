"""The cube's rotational symmetry as a data augmentation (the analogue of PDDM's Baoding
ball swap).

The die is a cube of uniform density whose geometry is unchanged by the 24 rotations that
map a cube onto itself. Turning the labels of its body axes by such a rotation ``G`` turns
its orientation ``R`` into ``R G`` and leaves the physics as it was: the same position,
the same world velocities, the same contacts. So every recorded transition is, relabelled,
a transition at another orientation, and a model trained on the relabelled copies learns
that a cube turned a quarter turn behaves as one that was not: the orientations the goals
ask for (+-1.5 rad, nearly a quarter turn) look like the start pose it has seen most.

The state holds the cube's x-y-z hinge angles (``R = Rx(a) Ry(b) Rz(c)``, the algebra in
``mbrl_ros.core.hinge_angles``) and their rates; relabelling recomputes both: angles of
``R G``, rates that give the same world angular velocity. A copy is only made where the new
angles stay inside the range the data covers (``max_pitch`` away from the hinges' gimbal
lock at ``b = +-pi/2``, ``max_angle`` for the other two), and the next state's angles are
taken on the branch nearest the state's, so a copied transition moves as little as the
recorded one. The algebra runs in float64 numpy on the CPU (the data's device is kept).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mbrl_ros.core.hinge_angles import euler_xyz, nearest_branch, rates_for, rotation_xyz
from mbrl_ros.core.tasks.layouts import StateLayout


def cube_rotations() -> np.ndarray:
    """The 24 rotations of a cube: the signed permutation matrices of determinant +1
    (``[24, 3, 3]`` float64, the identity first)."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    return np.stack(mats)


def symmetric_copies(state: Tensor, next_state: Tensor, layout: StateLayout, copies: int,
                     generator: torch.Generator, max_pitch: float = 1.2,
                     max_angle: float = 2.5) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``copies`` relabelled copies of each transition ``(state, next_state)``
    (``[N, S]``), each with a rotation drawn uniformly from those that keep both states'
    angles in range (``|b| <= max_pitch``, ``|a|, |c| <= max_angle``). Returns the copied
    states, next states and the index of each copy's source transition."""
    euler, rate = layout.slice("cube_euler"), layout.slice("cube_angvel")
    group = cube_rotations()[1:]  # the identity is the recorded transition itself
    s = state.detach().cpu().to(torch.float64)
    n = next_state.detach().cpu().to(torch.float64)
    a0, r0 = s[:, euler].numpy(), s[:, rate].numpy()
    a1, r1 = n[:, euler].numpy(), n[:, rate].numpy()
    ang0 = euler_xyz(rotation_xyz(a0)[:, None] @ group)  # [N, 23, 3]
    ang1 = nearest_branch(euler_xyz(rotation_xyz(a1)[:, None] @ group), ang0)

    def in_range(ang: np.ndarray) -> np.ndarray:
        return ((np.abs(ang[..., 1]) <= max_pitch) & (np.abs(ang[..., 0]) <= max_angle)
                & (np.abs(ang[..., 2]) <= max_angle))

    valid = torch.from_numpy(in_range(ang0) & in_range(ang1))
    draws = torch.rand(valid.shape[0], copies, valid.shape[1], generator=generator,
                       dtype=torch.float64)
    scores = torch.where(valid.unsqueeze(1), draws, torch.full_like(draws, -1.0))
    choice = scores.argmax(-1)  # [N, copies]: a uniform valid rotation, -1 scored if none
    ok = scores.gather(-1, choice.unsqueeze(-1)).squeeze(-1) >= 0
    # the same rotation twice for one transition would be a duplicate: keep distinct ones
    for k in range(1, copies):
        ok[:, k] &= (choice[:, k:k + 1] != choice[:, :k]).all(-1)
    src, k = ok.nonzero(as_tuple=True)
    pick = choice[src, k].numpy()
    idx = src.numpy()
    new_a0, new_a1 = ang0[idx, pick], ang1[idx, pick]
    new_r0 = rates_for(a0[idx], r0[idx], new_a0)
    new_r1 = rates_for(a1[idx], r1[idx], new_a1)
    out_s, out_n = s[src].clone(), n[src].clone()
    out_s[:, euler], out_s[:, rate] = torch.from_numpy(new_a0), torch.from_numpy(new_r0)
    out_n[:, euler], out_n[:, rate] = torch.from_numpy(new_a1), torch.from_numpy(new_r1)
    return out_s.to(state.dtype), out_n.to(next_state.dtype), src


def multiply_by_cube_symmetry(layout: StateLayout, copies: int = 3, seed: int = 0,
                              reward: Callable[[Tensor, Tensor], Tensor] | None = None
                              ) -> Callable[[Any], Any]:
    """Dataset augment hook: the batch followed by up to ``copies`` relabelled copies of
    each transition (see the module docstring); the draw is fixed by ``seed``.

    Uses ``type(batch).concatenate`` (as ``TransitionBatch`` provides). A copy's reward is
    ``reward(next_state, action)`` (the goal error changes with the labels; None: the
    source's); its other fields are the source transition's.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")

    def augment(batch: Any) -> Any:
        generator = torch.Generator().manual_seed(seed)
        state, next_state, src = symmetric_copies(batch.state, batch.next_state, layout,
                                                  copies, generator)
        fields = {name: getattr(batch, name)[src.to(getattr(batch, name).device)]
                  for name in ("action", "reward", "done", "episode", "step", "time")}
        state, next_state = state.to(batch.state.device), next_state.to(batch.state.device)
        if reward is not None:
            fields["reward"] = reward(next_state, fields["action"]).to(batch.reward.dtype)
        copy = type(batch)(state=state, next_state=next_state, **fields)
        return type(batch).concatenate([batch, copy])

    return augment
