"""The experiment manager's side of the dynamics trainer: training jobs, the episodes it
stored, and the ones it missed.

The trainer records the episodes from the topics by itself; this asks it (``get_status``)
whether it stored each one, sends what it missed (``store_episode``, oldest first, while it
answers), and trains through its ``~/train`` action: a goal, feedback every epoch, the typed
result. A trainer that dies is noticed by its silent ``~/num_transitions`` heartbeat: the
episodes go on without it; a goal lost with it (it answers again, idle, and does not know
the goal) is sent again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from std_msgs.msg import Float64

from mbrl_ros.action import TrainModel
from mbrl_ros.nodes.episode_record import Backlog, EpisodeRecord
from mbrl_ros.nodes.patient_calls import CALL_ATTEMPT_S, CallFailed, PatientCaller, status_values
from mbrl_ros.nodes.trainer_status import TrainerLoopStatus
from mbrl_ros.srv import GetStatus, StoreEpisode

#: The trainer publishes ~/num_transitions every second: silent this long = not running.
TRAINER_SILENT_S = 1.5
#: A trainer that neither stores an episode nor records it this long did not see its end.
NOT_RECORDING_S = 3.0
#: Training progress at info level at most this often (every epoch at debug level).
PROGRESS_LOG_S = 30.0


class TooLittleData(CallFailed):
    """The trainer has too little data for a model yet: the loop keeps collecting."""


class ResultProbe:
    """A second ``get_result`` request for a training goal, asked at most every ``every_s``
    while the trainer says it is not training: a trainer that restarted answers it at once
    (unknown goal). A probe sent before a respawned trainer's result service was matched is
    never answered; after ``expires_s`` it is cancelled so that the next one can go out."""

    def __init__(self, now: float, every_s: float = 1.0,
                 expires_s: float = CALL_ATTEMPT_S) -> None:
        self.every_s, self.expires_s = every_s, expires_s
        self.future: Any = None
        self._next, self._expires = now + every_s, 0.0

    def expire(self, now: float) -> None:
        """Cancel and forget a probe unanswered past its expiry."""
        if self.future is not None and not self.future.done() and now > self._expires:
            self.future.cancel()
            self.future = None

    def due(self, now: float) -> bool:
        """Time to ask again: none is out (or it was answered) and ``every_s`` passed."""
        return now > self._next and (self.future is None or self.future.done())

    def sent(self, future: Any, now: float) -> None:
        """``future`` is the probe now out (None: the check found no reason to ask)."""
        self.future, self._next, self._expires = future, now + self.every_s, now + self.expires_s


class TrainerLink:
    """Clients and subscriptions of one trainer node (``name``, same namespace)."""

    def __init__(self, node: Node, name: str, calls: PatientCaller, task_name: str,
                 group: CallbackGroup) -> None:
        self.node, self.calls, self.task_name = node, calls, task_name
        self.log = node.get_logger()
        self.backlog = Backlog()  # episodes it did not confirm (episode_record.py)
        self.train_client = ActionClient(node, TrainModel, f"{name}/train",
                                         callback_group=group)
        self.status_client = node.create_client(GetStatus, f"{name}/get_status",
                                                callback_group=group)
        self.store_client = node.create_client(StoreEpisode, f"{name}/store_episode",
                                               callback_group=group)
        node.create_subscription(Float64, f"{name}/num_transitions", self._on_count, 10,
                                 callback_group=group)
        self._lock = threading.Lock()
        self._heard = -1e9  # time.monotonic() of its newest heartbeat
        self._count = 0  # its newest num_transitions
        self.total: int | None = None  # num_transitions in its newest status

    # ----- callbacks ----------------------------------------------------------------------
    def _on_count(self, msg: Float64) -> None:
        with self._lock:
            self._heard = time.monotonic()
            self._count = int(msg.data)

    def _on_feedback(self, msg: Any) -> None:
        f = msg.feedback
        text = (f"training: epoch {f.epoch}/{f.epochs}, train loss {f.train_loss:.4g}, "
                f"val loss {f.val_loss:.4g}")
        self.log.debug(text)
        self.log.info(text, throttle_duration_sec=PROGRESS_LOG_S)

    def silent(self) -> bool:
        with self._lock:
            return time.monotonic() - self._heard > TRAINER_SILENT_S

    def status(self) -> GetStatus.Response:
        return self.calls.status(self.status_client)

    def connected(self) -> bool:
        """Both of its inputs flow: it received task states and matched planned_action."""
        loop = self.loop_status(self.status())
        return loop.recorder_states > 0 and loop.action_publishers > 0

    @staticmethod
    def loop_status(status: GetStatus.Response) -> TrainerLoopStatus:
        """The typed part of its status (``trainer_status.py``)."""
        return TrainerLoopStatus.from_values(status_values(status))

    # ----- episodes -----------------------------------------------------------------------
    def confirm_episode(self, record: EpisodeRecord) -> int:
        """After an episode: wait until the trainer stored it (or cannot); queue it for
        ``flush_backlog`` when it lacks transitions of it. Returns its transition count."""
        before, trainer = self.total, self._stored_status(record.episode_id)
        with self._lock:
            transitions = trainer.num_transitions if trainer is not None else self._count
        self.total = None if trainer is None else trainer.num_transitions
        if (trainer is None or before is None
                or trainer.num_transitions - before < record.transitions_seen()):
            # it stores what it lacks of it (or nothing)
            self.backlog.add(record.store_request(self.task_name))
        return transitions

    def _stored_status(self, episode_id: int) -> GetStatus.Response | None:
        """Its status once it has stored ``episode_id``. When it cannot (it is down, or it
        restarted during the episode and never saw its end) the run goes on: None (down), or
        its status."""
        deadline = time.monotonic() + 60.0
        not_recording_since: float | None = None
        while True:
            status = self.calls.try_status(self.status_client)
            now = time.monotonic()
            if status is None and self.silent():
                self.log.warning(f"episode {episode_id}: the trainer is not running (no "
                                 f"num_transitions for {TRAINER_SILENT_S:g} s); the episodes "
                                 "go on")
                return None
            loop = None if status is None else self.loop_status(status)
            if loop is None:
                pass  # it runs but did not answer in time: ask again
            elif loop.max_episode_id >= episode_id:
                return status
            elif loop.open_episode_id == episode_id or loop.unsaved_episodes > 0:
                not_recording_since = None
            elif not_recording_since is None:
                not_recording_since = now
            elif now - not_recording_since > NOT_RECORDING_S:
                self.log.warning(f"episode {episode_id}: the trainer neither stored nor "
                                 "records it (it missed the episode: down or restarting); the "
                                 "run goes on")
                return status
            if now > deadline:
                raise CallFailed(f"the trainer did not store episode {episode_id} in 60 s "
                                 f"({loop})")
            time.sleep(0.05)

    def flush_backlog(self) -> None:
        """Send the trainer the episodes it missed, oldest first, while it answers."""
        while self.backlog and not self.silent():
            request = self.backlog.requests[0]
            try:
                res = self.calls.call(self.store_client, request, 2 * CALL_ATTEMPT_S,
                                      "send a missed episode")
            except CallFailed:
                if self.calls.stop.is_set():
                    raise
                return  # gone again: the next episode tries
            if res.busy:
                return
            self.backlog.requests.popleft()
            if res.stored or not res.success:
                self.total = None  # its count moved: check the next episode too
                log = self.log.info if res.success else self.log.warning
                log(f"sent the trainer episode {request.episode_id} it missed: {res.message}")

    # ----- training -----------------------------------------------------------------------
    def train_ready(self) -> bool:
        """Its ``~/train`` action server is discovered."""
        return self.train_client.server_is_ready()

    def train(self, iteration: int, iterations: int, model_version: int, epochs: int,
              timeout_s: float, planner_loaded: Callable[[], int]) -> int:
        """One training job for ``iteration``; once accepted, waits until the planner loaded
        it. Returns the model version the planner plans on afterwards."""
        self.flush_backlog()  # the missed episodes are trained on too
        start = time.monotonic()
        try:
            result = self._run_training(epochs, start + timeout_s, iteration, iterations)
        except TooLittleData as exc:  # drops end episodes early: keep collecting
            plan = f"planning on model v{model_version}" if model_version else "exploring"
            self.log.warning(f"iteration {iteration}: {exc}; {plan}")
            return model_version
        took, metrics = time.monotonic() - start, result.metrics
        if not result.accepted:
            self.log.warning(f"iteration {iteration}: the trainer rejected the new model "
                             f"({result.message}; val loss {metrics.val_loss:.3g}); planning "
                             f"on model v{model_version}")
            return model_version
        version = result.model_version
        self.calls.wait(lambda: planner_loaded() >= version, 60.0,
                        f"the planner to load model v{version}")
        multi = list(metrics.val_multi_step_mse)
        self.log.info(
            f"iteration {iteration}: model v{version} (job {result.job_id}) on "
            f"{result.num_transitions} transitions in {took:.1f} s: val one-step mse "
            f"{metrics.val_one_step_mse:.3g}, {len(multi)}-step "
            f"{multi[-1] if multi else float('nan'):.3g}, disagreement "
            f"{metrics.val_disagreement:.3g}")
        return version

    def _run_training(self, epochs: int, deadline: float, iteration: int,
                      iterations: int) -> TrainModel.Result:
        """A ``~/train`` goal's result. A goal the trainer lost (it restarted: it answers
        idle and does not know the goal) is sent again; so is one refused while another job
        ran (a goal repeated after a slow answer), once that job has ended."""
        goal = self._send_goal(epochs, deadline)
        self.log.info(f"iteration {iteration}/{iterations}: training ({epochs or 'default'} "
                      "epochs)")
        result = goal.get_result_async()
        probe = ResultProbe(time.monotonic())
        while True:
            for answer in (result, probe.future):
                if answer is None or not answer.done():
                    continue
                response = answer.result()
                if response.status == GoalStatus.STATUS_SUCCEEDED:
                    return response.result
                if response.status != GoalStatus.STATUS_UNKNOWN:
                    raise CallFailed(f"the training goal ended with status {response.status}:"
                                     f" {response.result.message}")
                self.log.warning("the trainer restarted during training (it does not know "
                                 "the goal): sending it again")
                goal = self._send_goal(epochs, deadline)
                result, probe = goal.get_result_async(), ResultProbe(time.monotonic())
            now = time.monotonic()
            if now > deadline:
                raise CallFailed("timed out waiting for the training result")
            if self.calls.stop.is_set():
                raise CallFailed("stopped")
            probe.expire(now)
            if probe.due(now):
                status = self.calls.try_status(self.status_client)
                ask = (status is not None and status.state != "training"
                       and self.train_client.server_is_ready())
                # the one it answers: done, or unknown
                probe.sent(goal.get_result_async() if ask else None, time.monotonic())
            time.sleep(0.05)

    def _send_goal(self, epochs: int, deadline: float):
        """An accepted ``~/train`` goal's handle. Refused for too little data: TooLittleData;
        while another job runs: sent again once it ended; otherwise CallFailed."""
        request = TrainModel.Goal(from_scratch=True, epochs=epochs)
        startup = time.monotonic() + self.calls.startup_timeout_s
        while True:
            until = min(deadline, startup)
            self.calls.wait(lambda: self.train_client.server_is_ready(),
                            max(0.0, until - time.monotonic()), "the trainer's train action")
            sent = self.train_client.send_goal_async(request, feedback_callback=self._on_feedback)
            answered = time.monotonic() + 2 * CALL_ATTEMPT_S
            while not sent.done() and time.monotonic() < answered:
                if self.calls.stop.is_set():
                    raise CallFailed("stopped")
                time.sleep(0.01)
            if not sent.done():
                self.log.warning("the trainer did not answer the training goal in "
                                 f"{2 * CALL_ATTEMPT_S:g} s; sending it again (restarting?)")
            elif sent.result().accepted:
                return sent.result()
            else:
                reason = self.loop_status(self.status()).train_refusal
                if "too little data" in reason:
                    raise TooLittleData(f"the trainer refused to train: {reason}")
                if "still running" not in reason:
                    raise CallFailed(f"the trainer refused to train: {reason}")
                self.log.warning(f"the trainer refused to train ({reason}): sending the goal "
                                 "again once that job has ended")
                self.calls.wait(lambda: self.status().state != "training",
                                max(0.0, deadline - time.monotonic()), "the running job's end")
            if time.monotonic() > deadline:
                raise CallFailed("timed out sending the training goal")

    def describe(self) -> dict[str, Any]:
        """For the node's diagnostics."""
        return {"missed_episodes_pending": len(self.backlog),
                "missed_episodes_dropped": self.backlog.dropped}
