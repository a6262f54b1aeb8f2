"""The ``dynamics_trainer``'s ``~/train`` action (``mbrl_ros/action/TrainModel``).

A goal is refused at once, with a logged reason and a ``train_request`` diagnostics
problem, when :meth:`TrainingJobs.refusal` names one (a job is running, too little data,
epochs out of range, no CUDA); the newest reason is in ``get_status`` (``train_refusal``)
since a rejected goal carries none. An accepted goal starts its job at once; every epoch
sends feedback, and the job's end the typed result: SUCCEEDED when the job ran to its end
(``accepted`` says whether the model validated and was published), CANCELED when a cancel
stopped it (no model published), ABORTED when it could not start.

The goal stays ACCEPTED while its job runs and its execute callback runs once the job has
ended: the node spins a single-threaded executor, which would block on a waiting execute
callback, or spin without pause on an awaiting coroutine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from mbrl_ros.action import TrainModel
from mbrl_ros.msg import TrainingMetrics
from mbrl_ros.nodes.trainer_jobs import TrainingJobs
from mbrl_ros.nodes.trainer_messages import training_metrics_message


@dataclass
class _Goal:
    handle: ServerGoalHandle
    result: TrainModel.Result | None = None  # set when its job has ended
    outcome: str = "succeed"  # succeed | canceled | abort


class TrainAction:
    """Goals of ``~/train`` <-> training jobs (at most one runs: one goal at a time)."""

    def __init__(self, node: Node, jobs: TrainingJobs, params: Callable[[], Mapping[str, Any]],
                 problem: Callable[[str, str], None], group: CallbackGroup) -> None:
        self.node, self.jobs, self._params, self._problem = node, jobs, params, problem
        self.log = node.get_logger()
        self.refusal = ""  # the newest refused goal's reason (get_status: train_refusal)
        self._lock = threading.Lock()
        self._goals: dict[int, _Goal] = {}  # running, by job id
        self._ended: dict[bytes, _Goal] = {}  # their job ended, by goal id
        self._server = ActionServer(
            node, TrainModel, "~/train", execute_callback=self._execute,
            goal_callback=self._on_goal, handle_accepted_callback=self._on_accepted,
            cancel_callback=self._on_cancel, callback_group=group)

    @staticmethod
    def _describe(goal: TrainModel.Goal) -> str:
        return f"train request (from_scratch={goal.from_scratch}, epochs={goal.epochs})"

    def _refuse(self, goal: TrainModel.Goal, reason: str) -> None:
        self.refusal = reason
        self._problem("train_request", f"{self._describe(goal)} refused: {reason}")

    # ----- executor callbacks -------------------------------------------------------------
    def _on_goal(self, goal: TrainModel.Goal) -> GoalResponse:
        reason = self.jobs.refusal(self._params(), goal.epochs)
        if reason is not None:
            self._refuse(goal, reason)
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle: ServerGoalHandle) -> None:
        goal = handle.request
        with self._lock:  # a job that ends at once reports after its goal is registered
            accepted, job_id, message = self.jobs.submit(self._params(), goal.epochs,
                                                         goal.from_scratch)
            if accepted:
                self._goals[job_id] = _Goal(handle)
        if accepted:
            self.log.info(f"{self._describe(goal)} accepted: {message}")
            return
        self._refuse(goal, message)  # another goal started a job in between
        current = self.jobs.current
        result = TrainModel.Result(model_version=current.version if current else 0,
                                   message=message)
        self._end(_Goal(handle, result, "abort"))

    def _on_cancel(self, handle: ServerGoalHandle) -> CancelResponse:
        with self._lock:
            job_id = next((j for j, g in self._goals.items() if g.handle == handle), None)
        if job_id is None or not self.jobs.cancel(job_id):
            return CancelResponse.REJECT  # its job has ended: its result is on its way
        self.log.info(f"job {job_id}: cancel requested")
        return CancelResponse.ACCEPT

    def _execute(self, handle: ServerGoalHandle) -> TrainModel.Result:
        """Runs once the goal's job has ended (``_end``): the outcome and the result."""
        with self._lock:
            goal = self._ended.pop(bytes(handle.goal_id.uuid))
        getattr(handle, goal.outcome)()
        return goal.result

    # ----- job thread ---------------------------------------------------------------------
    def on_epoch(self, job_id: int, epoch: int, epochs: int, train: float, val: float) -> None:
        with self._lock:
            goal = self._goals.get(job_id)
        if goal is not None:
            goal.handle.publish_feedback(TrainModel.Feedback(
                epoch=epoch, epochs=epochs, train_loss=train, val_loss=val))

    def on_finished(self, job_id: int, message: str, m: dict[str, Any]) -> None:
        metrics = training_metrics_message(m)
        self._finish(job_id, "succeed", message, metrics)

    def on_cancelled(self, job_id: int, why: str) -> None:
        self._finish(job_id, "canceled", why, TrainingMetrics())

    def _finish(self, job_id: int, outcome: str, message: str,
                metrics: TrainingMetrics) -> None:
        with self._lock:
            goal = self._goals.pop(job_id, None)
        if goal is None:  # none expected: a goal is registered before its job can report
            return
        current = self.jobs.current  # not accepted: the model it had, 0: none
        version = (metrics.model_version if metrics.accepted
                   else current.version if current is not None else 0)
        goal.result = TrainModel.Result(
            accepted=metrics.accepted, model_version=version,
            num_transitions=metrics.num_transitions, job_id=job_id, message=message,
            metrics=metrics)
        goal.outcome = outcome
        self._end(goal)

    def _end(self, goal: _Goal) -> None:
        if not self.node.context.ok():  # shutting down: no executor to report on
            return
        with self._lock:
            self._ended[bytes(goal.handle.goal_id.uuid)] = goal
        goal.handle.execute()  # -> _execute on the executor

    def destroy(self) -> None:
        self._server.destroy()
