"""The experiment manager's side of the MPC planner: which model it plans on, its policy
(``plan`` or ``explore``) and whether it restarted (its command counter went back)."""

from __future__ import annotations

import threading

from rcl_interfaces.srv import SetParameters
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter

from mbrl_ros.nodes.patient_calls import CallFailed, PatientCaller, status_values
from mbrl_ros.srv import GetStatus


class PlannerLink:
    """Clients of one planner node (``name``, same namespace)."""

    def __init__(self, node: Node, name: str, calls: PatientCaller,
                 group: CallbackGroup) -> None:
        self.calls = calls
        self.status_client = node.create_client(GetStatus, f"{name}/get_status",
                                                callback_group=group)
        self.params_client = node.create_client(SetParameters, f"{name}/set_parameters",
                                                callback_group=group)
        self._ticks = -1  # its command counter (restarts at 1 with it)
        self.restarted = threading.Event()

    def note_ticks(self, ticks: int) -> None:
        """From each planned action (callback thread): a counter that went back means a
        restarted planner, whose parameters are the YAML's again."""
        if ticks < self._ticks:
            self.restarted.set()
        self._ticks = ticks

    def loaded(self) -> int:
        """Newest model version it has accepted (it plans on it from the next state on; in
        lockstep no plan runs between episodes)."""
        status = self.calls.status(self.status_client)
        return int(status_values(status).get("accepted_model_version", status.model_version))

    def set_policy(self, policy: str) -> None:
        req = SetParameters.Request(parameters=[Parameter("policy", value=policy)
                                                .to_parameter_msg()])
        res = self.calls.call(self.params_client, req, self.calls.startup_timeout_s,
                              "set the planner's policy")
        if not res.results or not res.results[0].successful:
            reason = res.results[0].reason if res.results else "no result"
            raise CallFailed(f"the planner refused policy={policy}: {reason}")
