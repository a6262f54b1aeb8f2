"""The task state a planner on the ROS stack sees, computed from ``HandSim`` readings directly.

On the stack the simulator publishes joint states and object poses (no twists: the
``tracker_reports_velocity`` default) and the ``state_estimator`` node assembles the task
state with ``TaskStateAssembler``: a constant-velocity Kalman filter per object, reset at
each episode, objects stamped ``tracker_latency_steps`` control steps late, a missing
reading bridged by the filters' prediction, goal fields written from the schedule.
``TaskStateSource("estimator")`` does exactly that without messages, so a ROS-free loop (the
gymnasium wrapper, the learning benches) sees the same states as the stack's lockstep runs.
``TaskStateSource("sim")`` takes the simulator's exact task observation instead (true
velocities; PDDM's simulated setting); it needs a tracker reading every step.

``tracker_velocity=True`` is the stack with ``tracker_reports_velocity``: the tracker's
twists are fused too. Sampled 10 times a second, poses alone cannot give the balls' velocity
at the moment of a state (a filter or a finite difference lags by half a step and misses the
contacts of the last 0.1 s: on PDDM-loop data both are off by 60% of the speed), and the
dynamics models predict the balls markedly better from the measured velocity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from mbrl_ros.core.estimation.state_assembly import KalmanSettings, TaskStateAssembler
from mbrl_ros.core.robot.spec import load_robot
from mbrl_ros.core.tasks import Task
from mbrl_ros.sim.observation import Observation

STATE_SOURCES = ("estimator", "sim")



class TaskStateSource:
    """Turns the observations of one episode into task states ``[S]`` (float64).

    Call ``reset()`` at each episode start, then ``state(obs, goal)`` once per observation in
    step order (the reset's first reading, then one per control step). ``control_dt`` is
    the simulator's control period (the filters' time line is ``step * control_dt``).
    """

    def __init__(self, task: Task, control_dt: float, source: str = "estimator",
                 kalman: KalmanSettings | None = None,
                 origins: Mapping[str, Sequence[float]] | None = None,
                 tracker_velocity: bool = False) -> None:
        if source not in STATE_SOURCES:
            raise ValueError(f"state source must be one of {STATE_SOURCES}, got {source!r}")
        if not (np.isfinite(control_dt) and control_dt > 0):
            raise ValueError(f"control_dt must be > 0, got {control_dt}")
        self.task = task
        self.source = source
        self.control_dt = float(control_dt)
        self.tracker_velocity = bool(tracker_velocity)
        if origins is None:  # where the estimator measures them from: the robot file's
            origins = load_robot().origins_of(o.name for o in task.tracked_objects)
        self.assembler = TaskStateAssembler(task, kalman or KalmanSettings(), origins)

    def reset(self) -> None:
        """A new episode: the filters forget everything (the estimator does this when the
        episode's goal schedule arrives)."""
        self.assembler.reset()

    def state(self, obs: Observation, goal: np.ndarray) -> np.ndarray:
        """The task state of ``obs`` with ``goal`` (the schedule row of ``obs.step``) in its
        goal fields. ValueError if no state can be formed (no tracker reading yet)."""
        goal = np.asarray(goal, dtype=np.float64).ravel()
        if self.source == "sim":
            if obs.task_obs is None:
                raise ValueError(f"no tracker reading at step {obs.step}: state_source 'sim' "
                                 "needs one every step (use 'estimator' with tracker dropout)")
            state = np.array(obs.task_obs, dtype=np.float64)
            self.task.insert_goal_(torch.from_numpy(state), torch.from_numpy(goal))
            return state
        if obs.objects is not None:
            t_objects = obs.objects_step * self.control_dt
            objects = obs.objects
            for i, name in enumerate(self.assembler.object_names):
                # a late tracker repeats its reading: same time, refused as a duplicate
                twist = ((objects.linvel[i], objects.angvel[i]) if self.tracker_velocity
                         else (None, None))
                self.assembler.add_object(name, objects.pos[i], objects.quat[i], t_objects,
                                          *twist)
        return self.assembler.assemble(obs.joint_pos, obs.step * self.control_dt, goal).state
