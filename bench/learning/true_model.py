"""The simulator itself as the planner's dynamics model: the "perfect model" upper bound.

``SimulatorModel`` follows the planners' ``DynamicsModel`` protocol with one member. Before
each plan the runner anchors it on the executing simulator's full MuJoCo state
(:meth:`SimulatorModel.anchor`); the planner's rollout then calls ``predict`` once per horizon
step, and each call advances every candidate by one control step with ``mujoco.rollout``
(all candidates at once, in C, on ``nthread`` threads), exactly as ``HandSim.step`` would:
the action map, the command velocity limit and ``frame_skip`` physics steps. The task state
of each result is read through ``HandSim``'s own sensors, so it is the state the learned
model is trained to predict.

``sees="state"`` is the same simulator planning from only what a task state holds: the
anchor's hand joint velocities and the objects' coordinates a state lacks (a ball's spin and
orientation) are zeroed and the objects' positions and velocities are the task state's (the
estimator's, on the learning runs). It bounds any model of the task state: if it fails, the
state, not the model, is short of what the task needs.

A task state does not hold the whole physical state (joint velocities, ball spins), so the
model keeps the full states of the batch it returned last: a ``predict`` whose input is that
very tensor continues those rollouts; any other input must be the anchored state (the first
step of a plan) and starts from the anchor. Anything else is an error, not a guess.
Solver warm starts are carried only for the first step, so predictions match ``HandSim.step``
to solver tolerance rather than bit for bit. Reading the task states loops over the batch
(one ``mj_forward`` each, about 2% of the physics it follows).
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout
from torch import Tensor

from mbrl_ros.core.planning.mpc import ModelPredictiveController
from mbrl_ros.sim import HandSim, SimState
from mbrl_ros.sim.gym_env import HandEnv

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
#: what the model plans from: the full physical state, or only what a task state holds
SEES = ("full", "state")


class SimulatorModel:
    """Ground-truth one-member "ensemble" over a private copy of a ``HandSim`` scene."""

    num_members = 1

    def __init__(self, sim: HandSim, nthread: int = 1, sees: str = "full") -> None:
        if sees not in SEES:
            raise ValueError(f"sees must be one of {SEES}, got {sees!r}")
        if sim.config.realism.enabled:
            raise ValueError("SimulatorModel needs a simulator without realism imperfections "
                             "(noise and delays make 'the true next state' ill-defined)")
        self._sim = HandSim(sim.scene, sim.config)  # own data and sensors, same scene
        self.sees = sees
        self.model = self._sim.model
        self.state_dim = int(sim.observe().task_obs.shape[0])
        self.action_dim = int(self.model.nu)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._rollout = mj_rollout.Rollout(nthread=nthread)
        self._datas = [mujoco.MjData(self.model) for _ in range(max(1, nthread))]
        self._nstate = mujoco.mj_stateSize(self.model, _FULL)
        self._reach = (None if sim.config.command_velocity_limit is None
                       else sim.config.command_velocity_limit * sim.control_dt)
        self._frame_skip = sim.config.frame_skip
        self._anchor_obs: Tensor | None = None
        self._anchor_state: np.ndarray | None = None
        self._anchor_warmstart: np.ndarray | None = None
        self._last_output: Tensor | None = None
        self._last_full: np.ndarray | None = None
        self.physics_steps = 0

    def close(self) -> None:
        self._rollout.close()

    def anchor(self, state: SimState, task_state: np.ndarray) -> None:
        """Plan from ``state`` (a ``HandSim.get_state``) whose task state is ``task_state``."""
        self._sim.set_state(state)
        d = self._sim.data
        if self.sees == "state":
            self._keep_only_the_task_state(np.asarray(task_state, dtype=np.float64))
        full = np.empty(self._nstate)
        mujoco.mj_getState(self.model, d, full, _FULL)
        self._anchor_state = full
        self._anchor_warmstart = d.qacc_warmstart.copy()
        self._anchor_obs = torch.as_tensor(np.asarray(task_state), dtype=self.dtype)
        self._last_output, self._last_full = None, None

    def _keep_only_the_task_state(self, task_state: np.ndarray) -> None:
        scene, m, d = self._sim.scene, self.model, self._sim.data
        d.qvel[:] = 0.0
        d.qpos[scene.object_qpos_adr] = scene.object_qpos_of_state(task_state)
        d.qvel[scene.object_dof_adr] = scene.object_qvel_of_state(task_state)
        mujoco.mj_forward(m, d)

    def predict(self, state: Tensor, action: Tensor, sample: bool = False,
                generator: torch.Generator | None = None) -> Tensor:
        """Next task states ``[1, B, S]`` after one control step of each action ``[B, A]``."""
        del sample, generator  # the simulator is deterministic
        if self._anchor_state is None or self._anchor_obs is None:
            raise RuntimeError("SimulatorModel.predict before anchor()")
        action = action.reshape(-1, self.action_dim)
        batch = action.shape[0]
        if state is self._last_output and self._last_full is not None:
            start, warm = self._last_full, None
        else:
            flat = state.reshape(-1, state.shape[-1])
            if not torch.allclose(flat, self._anchor_obs.expand_as(flat), atol=1e-5):
                raise ValueError("SimulatorModel can only continue its own predictions or start "
                                 "from the anchored state")
            start = np.broadcast_to(self._anchor_state, (batch, self._nstate))
            warm = np.broadcast_to(self._anchor_warmstart, (batch, self.model.nv))
        actions = action.detach().cpu().double().numpy()
        targets = self._sim.action_map.to_joint_targets(actions)
        lo, hi = self._sim.joint_limits.T
        targets = np.clip(targets, lo, hi)
        if self._reach is not None:
            q = self._joint_positions(start)
            targets = np.clip(targets, q - self._reach, q + self._reach)
        controls = np.ascontiguousarray(targets[:, None, :])
        out, _ = self._rollout.rollout(
            self.model, self._datas, np.ascontiguousarray(start), controls,
            nstep=self._frame_skip, initial_warmstart=None if warm is None
            else np.ascontiguousarray(warm))
        self.physics_steps += batch * self._frame_skip
        final = out[:, -1, :]
        states = torch.as_tensor(self._task_states(final), dtype=self.dtype).unsqueeze(0)
        self._last_output, self._last_full = states, final.copy()
        return states

    def _joint_positions(self, full: np.ndarray) -> np.ndarray:
        # FULLPHYSICS = [time, qpos, qvel, act, ...]; the hand joints lead qpos.
        return full[:, 1:1 + self.model.nu]

    def _task_states(self, full: np.ndarray) -> np.ndarray:
        nq, nv = self.model.nq, self.model.nv
        out = np.empty((full.shape[0], self.state_dim))
        for i, row in enumerate(full):
            self._sim.set_state(SimState(qpos=row[1:1 + nq], qvel=row[1 + nq:1 + nq + nv]))
            obs = self._sim.observe().task_obs
            out[i] = np.nan if obs is None else obs
        return out


def mpc_policy(env: HandEnv, mpc: ModelPredictiveController, goals: Tensor,
               true_model: SimulatorModel | None = None
               ) -> Callable[[int, np.ndarray], np.ndarray]:
    """``roll_out``'s policy for ``mpc`` on ``env``: at step ``t`` it plans from the state
    towards the goals from ``t + 1`` over the planner's horizon. A ``true_model`` is first
    anchored on the simulator's exact state (the perfect-model bound)."""
    horizon = mpc.planner.horizon

    def act(t: int, state: np.ndarray) -> np.ndarray:
        if true_model is not None:
            true_model.anchor(env.sim.get_state(), state)
        window = env.task.goal_window(goals, t + 1, horizon)
        return mpc.step(torch.as_tensor(state, dtype=torch.float32), window).numpy()

    return act
