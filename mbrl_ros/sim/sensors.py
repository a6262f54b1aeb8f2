"""Encoders and object tracker: the true MuJoCo state turned into an ``Observation``.

Tracker noise and latency act on the objects' joint coordinates (a free joint's position
and quaternion, a cube's slides and hinges); world poses and velocities are then derived
from those coordinates by MuJoCo kinematics on a scratch ``MjData``, so every field of a
reading (Cartesian pose, raw coordinates, task observation) tells the same story.
"""

from __future__ import annotations

from collections import deque

import mujoco
import numpy as np

from mbrl_ros.sim.observation import Observation
from mbrl_ros.sim.realism import RealismConfig
from mbrl_ros.sim.scene import (
    COORD_POS,
    COORD_QUAT,
    COORD_ROT,
    VEL_ANG,
    VEL_LIN,
    ObjectStates,
    Scene,
)


class Sensors:
    """Produces observations from ``data``; owns the tracker history and noise streams."""

    def __init__(
        self,
        scene: Scene,
        config: RealismConfig,
        encoder_rng: np.random.Generator,
        tracker_rng: np.random.Generator,
        dropout_rng: np.random.Generator,
    ) -> None:
        self.scene = scene
        self.config = config
        self.encoder_rng = encoder_rng
        self.tracker_rng = tracker_rng
        self.dropout_rng = dropout_rng
        self._scratch = mujoco.MjData(scene.model)
        self._history: deque[tuple[int, np.ndarray, np.ndarray]] = deque(
            maxlen=config.tracker_latency_steps + 1
        )
        qkind = np.array(scene.object_qpos_kind)
        vkind = np.array(scene.object_qvel_kind)
        self._q_pos = qkind == COORD_POS
        self._q_rot = qkind == COORD_ROT
        self._quat_starts = np.flatnonzero(qkind == COORD_QUAT)[::4]
        self._v_lin = vkind == VEL_LIN
        self._v_ang = vkind == VEL_ANG

    def reset(self, data: mujoco.MjData, step: int) -> None:
        """Forget the history; a late tracker repeats this state until it catches up."""
        self._history.clear()
        self.record(data, step)

    def record(self, data: mujoco.MjData, step: int) -> None:
        """Remember the true object coordinates after a control step (for latency)."""
        self._history.append(
            (step, data.qpos[self.scene.object_qpos_adr].copy(),
             data.qvel[self.scene.object_dof_adr].copy())
        )

    def measure(self, data: mujoco.MjData, step: int, goal: np.ndarray) -> Observation:
        """Read encoders and tracker now (fresh noise on every call)."""
        cfg = self.config
        nu = self.scene.model.nu
        joint_pos = data.qpos[:nu].copy()
        joint_vel = data.qvel[:nu].copy()
        if cfg.joint_pos_noise_std > 0:
            joint_pos += self.encoder_rng.normal(0.0, cfg.joint_pos_noise_std, nu)
        if cfg.joint_vel_noise_std > 0:
            joint_vel += self.encoder_rng.normal(0.0, cfg.joint_vel_noise_std, nu)

        objects: ObjectStates | None = None
        objects_step: int | None = None
        dropped = cfg.tracker_dropout_rate > 0 and (
            self.dropout_rng.random() < cfg.tracker_dropout_rate
        )
        if not dropped:
            objects_step, qpos, qvel = self._history[0]
            objects = self._object_states(*self._add_tracker_noise(qpos, qvel))

        mocap = self.scene.target_mocap_ids
        task_obs = None
        if objects is not None:
            task_obs = self.scene.task_observation(joint_pos, objects, goal,
                                                   data.mocap_pos[mocap])
        return Observation(
            step=step,
            time=float(data.time),
            joint_pos=joint_pos,
            joint_vel=joint_vel,
            objects=objects,
            objects_step=objects_step,
            target_pos=data.mocap_pos[mocap].copy(),
            target_quat=data.mocap_quat[mocap].copy(),
            goal=goal.copy(),
            task_obs=task_obs,
        )

    def _add_tracker_noise(
        self, qpos: np.ndarray, qvel: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        qpos, qvel = qpos.copy(), qvel.copy()
        rng = self.tracker_rng
        if cfg.object_pos_noise_std > 0:
            qpos[self._q_pos] += rng.normal(0.0, cfg.object_pos_noise_std, self._q_pos.sum())
        if cfg.object_rot_noise_std > 0:
            qpos[self._q_rot] += rng.normal(0.0, cfg.object_rot_noise_std, self._q_rot.sum())
            for start in self._quat_starts:
                quat = qpos[start:start + 4].copy()
                mujoco.mju_quatIntegrate(quat, rng.normal(0.0, cfg.object_rot_noise_std, 3), 1.0)
                qpos[start:start + 4] = quat
        if cfg.object_vel_noise_std > 0:
            qvel[self._v_lin] += rng.normal(0.0, cfg.object_vel_noise_std, self._v_lin.sum())
        if cfg.object_angvel_noise_std > 0:
            qvel[self._v_ang] += rng.normal(0.0, cfg.object_angvel_noise_std,
                                            self._v_ang.sum())
        return qpos, qvel

    def _object_states(self, qpos: np.ndarray, qvel: np.ndarray) -> ObjectStates:
        """World poses and velocities of the objects at the given object coordinates."""
        m, d = self.scene.model, self._scratch
        d.qpos[self.scene.object_qpos_adr] = qpos
        d.qvel[self.scene.object_dof_adr] = qvel
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)
        ids = self.scene.object_body_ids
        vel = np.empty((ids.size, 6))
        for i, bid in enumerate(ids):
            mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_BODY, int(bid), vel[i], 0)
        return ObjectStates(
            pos=d.xpos[ids].copy(),
            quat=d.xquat[ids].copy(),
            linvel=vel[:, 3:].copy(),
            angvel=vel[:, :3].copy(),
            qpos=qpos,
            qvel=qvel,
        )
