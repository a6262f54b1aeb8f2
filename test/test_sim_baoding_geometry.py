"""Where PDDM's palm-frame target ellipse lands in this scene, and why ours is recentred."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

import mbrl_ros.sim as sim


@pytest.fixture(scope="module")
def settled() -> sim.HandSim:
    """The Baoding scene after 2 s at zero action (the keyframe pose), default config."""
    hand = sim.HandSim("baoding")
    for _ in range(20):
        assert hand.step(np.zeros(24)).ok
    return hand


def test_pddm_ellipse_projection_at_the_keyframe():
    scene = sim.build_scene("baoding")
    d = mujoco.MjData(scene.model)
    mujoco.mj_resetDataKeyframe(scene.model, d, scene.key_id)
    mujoco.mj_forward(scene.model, d)
    projected = sim.palm_ellipse_in_world(scene.model, d)
    expected = sim.PDDM_ELLIPSE_IN_WORLD
    np.testing.assert_allclose(projected.centre_xy, expected.centre_xy, atol=1e-4)
    np.testing.assert_allclose(projected.radii_xy, expected.radii_xy, atol=1e-4)
    # radii of BAODING_TARGET_ELLIPSE are PDDM's, projected
    np.testing.assert_allclose(sim.BAODING_TARGET_ELLIPSE.radii_xy, expected.radii_xy)


def test_balls_rest_where_the_target_ellipse_is_centred(settled):
    balls = settled.observe().objects.pos
    np.testing.assert_allclose(balls[:, 2], 0.156, atol=0.002)
    mid = balls[:, :2].mean(axis=0)
    np.testing.assert_allclose(sim.BAODING_TARGET_ELLIPSE.centre_xy, mid, atol=2e-3)
    # PDDM's own centre would be 5 cm or more behind the balls in this model
    assert np.linalg.norm(np.subtract(sim.PDDM_ELLIPSE_IN_WORLD.centre_xy, mid)) > 0.05


def test_targets_start_on_their_balls(settled):
    balls = settled.observe().objects.pos[:, :2]
    start = sim.BAODING_TARGET_ELLIPSE.targets_at(0)
    err = np.linalg.norm(start - balls, axis=1)
    assert np.all(err < 0.017), err
    pddm_angles = sim.TargetEllipse(sim.BAODING_TARGET_ELLIPSE.centre_xy,
                                    sim.BAODING_TARGET_ELLIPSE.radii_xy,
                                    (3 * math.pi / 4, -math.pi / 4))
    assert np.all(np.linalg.norm(pddm_angles.targets_at(0) - balls, axis=1) > 2 * err)


def test_schedule_is_ccw_with_period_60_and_opposite_targets():
    e = sim.BAODING_TARGET_ELLIPSE
    traj = e.targets_at(np.arange(61))
    assert traj.shape == (61, 2, 2)
    np.testing.assert_allclose(traj[60], traj[0], atol=1e-12)
    centre = np.broadcast_to(np.array(e.centre_xy), (61, 2))
    np.testing.assert_allclose(traj[:, 0] + traj[:, 1], 2 * centre, atol=1e-12)
    rel = traj[1:, 0] - e.centre_xy
    prev = traj[:-1, 0] - e.centre_xy
    cross = prev[:, 0] * rel[:, 1] - prev[:, 1] * rel[:, 0]
    assert np.all(cross > 0)  # counter-clockwise seen from above
