"""The cube's symmetry augmentation: the 24 rotations, the hinge-angle algebra, the copies
it makes, and (on the real simulator) that a relabelled cube moves as the recorded one."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from mbrl_ros import sim
from mbrl_ros.core.data.dataset import TransitionBatch
from mbrl_ros.core.hinge_angles import euler_xyz, rate_jacobian, rates_for, rotation_xyz
from mbrl_ros.core.tasks import CUBE_LAYOUT, CubeTask
from mbrl_ros.core.tasks.cube_symmetry import (
    cube_rotations,
    multiply_by_cube_symmetry,
    symmetric_copies,
)

EULER, RATE = CUBE_LAYOUT.slice("cube_euler"), CUBE_LAYOUT.slice("cube_angvel")


def test_the_24_rotations_are_a_group_of_distinct_proper_rotations():
    g = cube_rotations()
    assert g.shape == (24, 3, 3)
    np.testing.assert_array_equal(g[0], np.eye(3))
    np.testing.assert_allclose(g @ g.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (24, 3, 3)))
    np.testing.assert_allclose(np.linalg.det(g), np.ones(24))
    flat = {tuple(m.flatten().tolist()) for m in g}
    assert len(flat) == 24
    products = {tuple((a @ b).flatten().tolist()) for a in g for b in g}
    assert products == flat


def cube_batch(n: int = 64, seed: int = 0) -> TransitionBatch:
    gen = torch.Generator().manual_seed(seed)
    state = torch.randn(n, CUBE_LAYOUT.dim, generator=gen)
    state[:, EULER] = (torch.rand(n, 3, generator=gen) - 0.5) * 1.6
    next_state = state + 0.05 * torch.randn(n, CUBE_LAYOUT.dim, generator=gen)
    return TransitionBatch.from_arrays(state, torch.randn(n, 24, generator=gen), next_state,
                                       episode=torch.arange(n) // 8, step=torch.arange(n) % 8)


def test_copies_keep_everything_but_the_labels_of_the_cube_axes():
    batch = cube_batch()
    state, next_state, src = symmetric_copies(batch.state, batch.next_state, CUBE_LAYOUT, 3,
                                              torch.Generator().manual_seed(1))
    assert src.numel() > 2 * batch.state.shape[0]  # most transitions get 3 copies
    assert torch.bincount(src).max() <= 3
    others = [i for i in range(CUBE_LAYOUT.dim) if i not in range(EULER.start, RATE.stop)
              or i in range(EULER.stop, RATE.start)]
    torch.testing.assert_close(state[:, others], batch.state[src][:, others])
    torch.testing.assert_close(next_state[:, others], batch.next_state[src][:, others])
    def numpy(x: torch.Tensor) -> np.ndarray:
        return x.double().numpy()

    for new, old in ((state, batch.state[src]), (next_state, batch.next_state[src])):
        a, a_old = numpy(new[:, EULER]), numpy(old[:, EULER])
        # the same world angular velocity, an orientation R G with G one of the 24
        omega = (rate_jacobian(a) @ numpy(new[:, RATE])[..., None])[..., 0]
        omega_old = (rate_jacobian(a_old) @ numpy(old[:, RATE])[..., None])[..., 0]
        np.testing.assert_allclose(omega, omega_old, atol=1e-4, rtol=1e-4)
        g = rotation_xyz(a_old).transpose(0, 2, 1) @ rotation_xyz(a)
        assert np.abs(g - g.round()).max() < 1e-4
        assert not np.allclose(g, np.broadcast_to(np.eye(3), g.shape), atol=1e-3)
        assert np.abs(a[:, 1]).max() <= 1.2 + 1e-6 and np.abs(a[:, [0, 2]]).max() <= 2.5 + 1e-6
    # both states of a copy turned by the same G, and the step moves as little as recorded
    g0 = rotation_xyz(numpy(batch.state[src][:, EULER])).transpose(0, 2, 1) @ rotation_xyz(
        numpy(state[:, EULER]))
    g1 = rotation_xyz(numpy(batch.next_state[src][:, EULER])).transpose(0, 2, 1) @ rotation_xyz(
        numpy(next_state[:, EULER]))
    np.testing.assert_array_equal(g0.round(), g1.round())
    assert (next_state[:, EULER] - state[:, EULER]).abs().max() < 0.5


def test_augment_hook_appends_the_copies_and_is_fixed_by_its_seed():
    batch = cube_batch()
    out = multiply_by_cube_symmetry(CUBE_LAYOUT, copies=2, seed=3)(batch)
    again = multiply_by_cube_symmetry(CUBE_LAYOUT, copies=2, seed=3)(batch)
    other = multiply_by_cube_symmetry(CUBE_LAYOUT, copies=2, seed=4)(batch)
    n = batch.state.shape[0]
    torch.testing.assert_close(out.state[:n], batch.state)
    assert out.state.shape[0] > 2 * n
    torch.testing.assert_close(out.state, again.state)
    assert not torch.equal(out.state, other.state)
    assert CubeTask().augmentation is None  # PDDM's default: no cube augmentation
    task = CubeTask(symmetry_copies=2)
    doubled = task.augmentation(batch)
    assert isinstance(doubled, TransitionBatch) and doubled.state.shape[0] > 2 * n
    # a copy's reward is its own (the goal error of its relabelled angles), not the source's
    desired = CUBE_LAYOUT.slice("desired_euler")
    own = task.reward(doubled.next_state[n:], doubled.action[n:],
                      doubled.next_state[n:, desired])[0]
    torch.testing.assert_close(doubled.reward[n:], own)
    assert not torch.allclose(doubled.reward[n:], torch.zeros_like(own))
    with pytest.raises(ValueError, match="copies"):
        multiply_by_cube_symmetry(CUBE_LAYOUT, copies=0)


def test_a_relabelled_cube_moves_in_mujoco_as_the_recorded_one():
    """The premise, on the real scene: the same hand and action, the cube's hinges set to
    a relabelled orientation and rates, one control step later the cube is where the
    recorded one is, turned by the same G."""
    scene = sim.build_cube()
    m = scene.model
    hand = sim.HandSim(scene)
    hand.reset()
    rng = np.random.default_rng(0)
    for _ in range(6):  # the cube moving and touching the hand
        hand.step(rng.uniform(-0.3, 0.3, 24))
    hinges = [m.joint(n).id for n in ("OBJRx", "OBJRy", "OBJRz")]
    qa, va = m.jnt_qposadr[hinges], m.jnt_dofadr[hinges]
    angles, rates = hand.data.qpos[qa].copy(), hand.data.qvel[va].copy()
    tested = 0
    for g in cube_rotations()[1:]:
        new_angles = euler_xyz(rotation_xyz(angles) @ g)  # orientation R G
        new_rates = rates_for(angles, rates, new_angles)  # the same world angular velocity
        if abs(float(new_angles[1])) > 1.2:
            continue
        recorded, turned = mujoco.MjData(m), mujoco.MjData(m)
        mujoco.mj_copyData(recorded, m, hand.data)
        mujoco.mj_copyData(turned, m, hand.data)
        turned.qpos[qa], turned.qvel[va] = new_angles, new_rates
        mujoco.mj_step(m, recorded, 40)
        mujoco.mj_step(m, turned, 40)
        body = m.body("cube").id
        np.testing.assert_allclose(turned.xpos[body], recorded.xpos[body], atol=1e-4)
        expected = rotation_xyz(recorded.qpos[qa]) @ g
        np.testing.assert_allclose(rotation_xyz(turned.qpos[qa]), expected, atol=1e-3)
        tested += 1
    assert tested >= 12


@pytest.mark.parametrize("bad", [-1, 24, 1.5, True, "3"])
def test_cube_task_rejects_a_bad_number_of_symmetry_copies(bad):
    with pytest.raises(ValueError, match="symmetry_copies"):
        CubeTask(symmetry_copies=bad)
