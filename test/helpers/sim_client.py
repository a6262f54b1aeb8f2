"""Drives a running ``shadow_hand_sim`` node from a test over real topics and services."""

from __future__ import annotations

import threading

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from visualization_msgs.msg import MarkerArray

from helpers.waiting import wait_for
from mbrl_ros.msg import ObjectStates
from mbrl_ros.nodes.conversions import ns_from_time
from mbrl_ros.srv import ResetEpisode


class SimClient:
    """Collects what the simulator publishes under ``ns`` and sends it commands."""

    def __init__(self, node, ns: str = "/hand") -> None:
        self.node = node
        self._lock = threading.Lock()
        self.joint_states: list[JointState] = []
        self.objects: list[ObjectStates] = []
        self.markers: list[MarkerArray] = []
        self.diagnostics: list[DiagnosticArray] = []
        node.create_subscription(JointState, f"{ns}/joint_states", self._add(self.joint_states), 50)
        node.create_subscription(ObjectStates, f"{ns}/object_states", self._add(self.objects), 50)
        node.create_subscription(MarkerArray, f"{ns}/scene_markers", self._add(self.markers), 5)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._add(self.diagnostics), 50)
        self.commands = node.create_publisher(Float64MultiArray, f"{ns}/joint_commands", 10)
        self.reset_client = node.create_client(ResetEpisode, f"{ns}/reset_episode")
        wait_for(lambda: self.reset_client.wait_for_service(timeout_sec=0.1), 60, "the simulator")
        wait_for(lambda: self.commands.get_subscription_count() > 0, 20, "command subscription")

    def _add(self, store: list):
        def append(msg) -> None:
            with self._lock:
                store.append(msg)
        return append

    def latest_stamp(self) -> int:
        with self._lock:
            return ns_from_time(self.joint_states[-1].header.stamp) if self.joint_states else -1

    def latest_state(self) -> JointState:
        with self._lock:
            return self.joint_states[-1]

    def reset(self, seed: int = 0) -> ResetEpisode.Response:
        before = self.latest_stamp()
        future = self.reset_client.call_async(ResetEpisode.Request(seed=seed))
        res = wait_for(lambda: future.done() and future.result(), 30, "the reset response")
        assert res.success, res.message
        stamp = ns_from_time(res.first_observation_stamp)
        wait_for(lambda: self.latest_stamp() >= stamp and stamp > before, 10,
                 "the first observation")
        return res

    def send(self, q) -> None:
        self.commands.publish(Float64MultiArray(data=[float(v) for v in q]))

    def step(self, q) -> JointState:
        """Lockstep: send one command and wait for the state it produced."""
        before = self.latest_stamp()
        self.send(q)
        wait_for(lambda: self.latest_stamp() > before, 20, "the next lockstep state")
        return self.latest_state()

    def latest_objects(self) -> ObjectStates:
        with self._lock:
            return self.objects[-1]

    def diagnostic_value(self, key: str) -> str | None:
        with self._lock:
            for array in reversed(self.diagnostics):
                for status in array.status:
                    if status.name.endswith("shadow_hand_sim"):
                        for kv in status.values:
                            if kv.key == key:
                                return kv.value
        return None


def positions(state: JointState) -> np.ndarray:
    return np.asarray(state.position)
