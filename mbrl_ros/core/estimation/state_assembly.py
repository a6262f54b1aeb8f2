"""Joint positions + filtered object estimates + goal -> the task's flat state (no ROS).

The learned dynamics model sees whatever the estimator assembles, so these states hold the
same quantities as the simulator's own task observation (``HandSim.observe().task_obs``):

- Baoding: ball positions in world coordinates and their linear velocities.
- Cube: the cube's position as a displacement from a fixed origin (PDDM reads its slide
  joints; in the simulated scene that origin is the cube's spawn point), its orientation as
  the angles of hinges about x, then y, then z, and the rates of those angles (PDDM's
  "angular velocity" is the hinge rates, not a body angular velocity).

Each object gets a ``ConstantVelocityKalman`` over its coordinates; the state at a stamp is
the filters' prediction to that stamp, so a tracker dropout is bridged by prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from mbrl_ros.core.estimation.kalman import ConstantVelocityKalman
from mbrl_ros.core.hinge_angles import euler_xyz_rates, nearest_euler_xyz
from mbrl_ros.core.tasks import Task
from mbrl_ros.core.tasks.base import TrackedObject
from mbrl_ros.core.validation import finite_vector

JOINT_FIELD = "joints"


@dataclass(frozen=True)
class KalmanSettings:
    """Noise model of the object filters.

    position_noise_std (m) / angle_noise_std (rad): tracker measurement noise.
    linear_accel_psd (m^2/s^3) / angular_accel_psd (rad^2/s^3): spectral density of the
    unmodelled acceleration; larger follows faster changes of velocity, smaller smooths more.
    initial_linear_rate_std (m/s) / initial_angular_rate_std (rad/s): std of the zero
    velocity assumed at the first measurement.
    linear_velocity_noise_std (m/s) / angular_velocity_noise_std (rad/s): noise of
    velocities the tracker measures itself (when it reports twists).
    """

    position_noise_std: float = 0.001
    angle_noise_std: float = 0.01
    linear_accel_psd: float = 10.0
    angular_accel_psd: float = 1000.0
    initial_linear_rate_std: float = 1.0
    initial_angular_rate_std: float = 10.0
    linear_velocity_noise_std: float = 0.01
    angular_velocity_noise_std: float = 0.1


@dataclass(frozen=True)
class AssembledState:
    """One assembled task state.

    state: flat vector in the task layout. goal: the goal written into it.
    oldest_object_time: the oldest of the objects' newest fused measurement times (s).
    bridged: names of objects without a measurement at the state's time (predicted).
    """

    state: np.ndarray
    goal: np.ndarray
    oldest_object_time: float
    bridged: tuple[str, ...]


class ObjectFilter:
    """The Kalman filter of one tracked object, fed with world poses."""

    def __init__(self, spec: TrackedObject, settings: KalmanSettings,
                 origin: ArrayLike = (0.0, 0.0, 0.0)) -> None:
        self.spec = spec
        self.origin = np.asarray(origin, dtype=np.float64)
        if self.origin.shape != (3,) or not np.all(np.isfinite(self.origin)):
            raise ValueError(f"origin of {spec.name} must be 3 finite numbers, got {origin}")
        lin, ang = (3, 3 if spec.oriented else 0)
        self.rate_std = np.array([settings.linear_velocity_noise_std] * lin
                                 + [settings.angular_velocity_noise_std] * ang)
        self.kalman = ConstantVelocityKalman(
            lin + ang,
            measurement_std=[settings.position_noise_std] * lin + [settings.angle_noise_std] * ang,
            accel_psd=[settings.linear_accel_psd] * lin + [settings.angular_accel_psd] * ang,
            initial_rate_std=([settings.initial_linear_rate_std] * lin
                              + [settings.initial_angular_rate_std] * ang),
            angular=[False] * lin + [True] * ang,
        )

    def measure(self, position: ArrayLike, quat_wxyz: ArrayLike, t: float,
                linvel: ArrayLike | None = None, angvel: ArrayLike | None = None) -> bool:
        """Fuse a world pose measured at ``t`` (and the world linear / angular velocity if
        the tracker measures them); False if out of order. ValueError on bad values."""
        pos = finite_vector(position, 3, f"{self.spec.name} position")
        z = pos - self.origin
        rate = (None if linvel is None
                else finite_vector(linvel, 3, f"{self.spec.name} linear velocity"))
        if self.spec.oriented:
            reference = None
            kf = self.kalman
            if kf.initialized and float(t) >= kf.time:
                reference = kf.predicted(t)[0][3:, 0]
            angles = nearest_euler_xyz(quat_wxyz, reference)
            z = np.concatenate([z, angles])
            if rate is not None:
                rates = (np.full(3, np.nan) if angvel is None else euler_xyz_rates(
                    angles, finite_vector(angvel, 3, f"{self.spec.name} angular velocity")))
                rate = np.concatenate([rate, rates])
        return self.kalman.update(z, t, rate, self.rate_std)

    def estimate(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates and rates at ``t`` (predicted forward, or extrapolated back if the
        newest measurement is newer than ``t``)."""
        kf = self.kalman
        if float(t) >= kf.time:
            x = kf.predicted(t)[0]
            return x[:, 0], x[:, 1]
        return kf.x[:, 0] + (float(t) - kf.time) * kf.x[:, 1], kf.x[:, 1].copy()


class TaskStateAssembler:
    """Builds the task's flat state from joint positions, object poses and the goal.

    ``joint_pos`` are the 24 hand joints in the task's order (PDDM's actuator order).
    ``origins`` maps object names to the world point their state position is measured from
    (default the world origin; the cube's spawn point for the simulated cube task).
    """

    def __init__(self, task: Task, settings: KalmanSettings | None = None,
                 origins: Mapping[str, Sequence[float]] | None = None) -> None:
        if not task.tracked_objects:
            raise ValueError(f"task {task.name!r} declares no tracked objects")
        self.task = task
        self.layout = task.layout
        self.objects = task.tracked_objects
        covered = {JOINT_FIELD, *task.goal_fields}
        for obj in self.objects:
            covered.update(obj.fields)
        if covered != set(self.layout.names):
            raise ValueError(f"state fields {sorted(self.layout.names)} are not exactly the "
                             f"assembled ones {sorted(covered)}")
        origins = dict(origins or {})
        unknown = set(origins) - {o.name for o in self.objects}
        if unknown:
            raise ValueError(f"origins given for unknown objects {sorted(unknown)}")
        settings = settings or KalmanSettings()
        self.filters = {o.name: ObjectFilter(o, settings, origins.get(o.name, (0.0, 0.0, 0.0)))
                        for o in self.objects}
        self._joints = self.layout.slice(JOINT_FIELD)
        self.num_joints = self._joints.stop - self._joints.start

    @property
    def object_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objects)

    @property
    def rejected(self) -> int:
        """Object measurements refused as out of order, all objects together."""
        return sum(f.kalman.rejected for f in self.filters.values())

    def reset(self) -> None:
        """Drop every filter's history (a new episode)."""
        for f in self.filters.values():
            f.kalman.reset()

    def ready(self) -> bool:
        """True once every object has been measured at least once."""
        return all(f.kalman.initialized for f in self.filters.values())

    def newest_object_time(self) -> float | None:
        """Time of the newest measurement fused for any object (None before any)."""
        times = [f.kalman.last_measurement_time for f in self.filters.values()
                 if f.kalman.last_measurement_time is not None]
        return max(times) if times else None

    def add_object(self, name: str, position: ArrayLike, quat_wxyz: ArrayLike, t: float,
                   linvel: ArrayLike | None = None, angvel: ArrayLike | None = None) -> bool:
        """Fuse one object's world pose (and velocity, if measured) taken at ``t``; False
        if out of order, ValueError on bad values."""
        try:
            f = self.filters[name]
        except KeyError:
            raise ValueError(f"unknown object {name!r}; this task tracks "
                             f"{list(self.object_names)}") from None
        return f.measure(position, quat_wxyz, t, linvel, angvel)

    def assemble(self, joint_pos: ArrayLike, t: float, goal: ArrayLike) -> AssembledState:
        """The state at ``t``. ValueError on bad inputs or an object never measured."""
        q = np.asarray(joint_pos, dtype=np.float64)
        g = np.asarray(goal, dtype=np.float64).ravel()
        if q.shape != (self.num_joints,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint positions must be {self.num_joints} finite numbers")
        if g.shape != (self.task.goal_dim,) or not np.all(np.isfinite(g)):
            raise ValueError(f"goal must be {self.task.goal_dim} finite numbers")
        missing = [n for n, f in self.filters.items() if not f.kalman.initialized]
        if missing:
            raise ValueError(f"no measurement yet of {missing}")
        state = np.empty(self.layout.dim)
        state[self._joints] = q
        bridged = []
        oldest = float("inf")
        for obj in self.objects:
            kf = self.filters[obj.name].kalman
            coords, rates = self.filters[obj.name].estimate(t)
            state[self.layout.slice(obj.position_field)] = coords[:3]
            state[self.layout.slice(obj.velocity_field)] = rates[:3]
            if obj.oriented:
                state[self.layout.slice(obj.euler_field)] = coords[3:]
                state[self.layout.slice(obj.euler_rate_field)] = rates[3:]
            oldest = min(oldest, kf.last_measurement_time)
            if kf.last_measurement_time != float(t):
                bridged.append(obj.name)
        self.task.insert_goal_(torch.from_numpy(state), torch.from_numpy(g))  # writes state
        return AssembledState(state, g, oldest, tuple(bridged))
