"""What the simulated hand reports after a reset or a control step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mbrl_ros.sim.scene import ObjectStates


@dataclass(frozen=True)
class Observation:
    """One reading of encoders and object tracker (noisy/late if realism is configured).

    step: control steps since the last reset; time: simulated seconds since that reset.
    joint_pos / joint_vel: (24,) rad and rad/s, scene ``joint_names`` order.
    objects: tracked object states, or None when the tracker dropped this reading.
    objects_step: the control step the object reading was taken at (``step`` minus the
        tracker latency), None on dropout.
    target_pos / target_quat: (n_targets, 3) and (n_targets, 4) world poses of the goal
        visuals (exact: goals are commanded, not measured).
    goal: the goal in force, scene ``goal_shape``.
    task_obs: the flat task observation in the scene's ``obs_layout`` (PDDM's layout), or
        None when the objects are missing.
    """

    step: int
    time: float
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    objects: ObjectStates | None
    objects_step: int | None
    target_pos: np.ndarray
    target_quat: np.ndarray
    goal: np.ndarray
    task_obs: np.ndarray | None

    @property
    def objects_valid(self) -> bool:
        return self.objects is not None


@dataclass(frozen=True)
class StepResult:
    """Outcome of ``HandSim.step``.

    fault: None if the physics stayed sane, else why the guard tripped (a MuJoCo warning or
    non-finite state). reset: the episode was restarted from the keyframe because of it; the
    observation is then the first one of the new episode.
    """

    observation: Observation
    fault: str | None = None
    reset: bool = False

    @property
    def ok(self) -> bool:
        return self.fault is None
