"""The package's custom interfaces, built by rosidl, crossing real process boundaries."""

from __future__ import annotations

import hashlib

import pytest
from helpers.ros import spinning_node, start_process, stop_process
from helpers.waiting import call_service, wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


def _model_update():
    from mbrl_ros.msg import ModelUpdate

    msg = ModelUpdate()
    payload = bytes(range(256)) * 64
    msg.format_version = ModelUpdate.FORMAT_VERSION
    msg.version = 7
    msg.architecture = '{"num_members": 3, "hidden_sizes": [250, 250]}'
    msg.task = "baoding"
    msg.state_fields = ["joints", "ball1_pos"]
    msg.weights = payload
    msg.checksum = hashlib.sha256(payload).hexdigest()
    msg.metrics.val_multi_step_mse = [0.1, 0.2, 0.4]
    msg.metrics.accepted = True
    return msg


def _task_state():
    from mbrl_ros.msg import StateField, TaskState

    msg = TaskState(task="baoding", episode_id=3, step=12, stale=False, age=0.01)
    msg.header.frame_id = "world"
    msg.state = [float(i) / 7 for i in range(40)]
    msg.layout = [StateField(name="joints", start=0, size=24),
                  StateField(name="ball1_pos", start=24, size=3)]
    msg.goal = [0.01, 0.02, 0.03, 0.04]
    return msg


def _planned_action():
    from mbrl_ros.msg import PlannedAction

    msg = PlannedAction(episode_id=1, step=5, horizon=2, action_dim=3)
    msg.joint_names = ["a", "b", "c"]
    msg.action = [0.5, -0.5, 1.0]
    msg.joint_targets = [0.1, 0.2, 0.3]
    msg.planned_actions = [0.5, -0.5, 1.0, 0.4, -0.4, 0.9]
    msg.object_names = ["ball1"]
    msg.predicted_object_positions = [0.0, 0.1, 0.2, 0.0, 0.1, 0.25]
    msg.stats.planner = "mppi"
    msg.stats.model_version = 4
    msg.stats.deadline_misses = 2
    return msg


@pytest.mark.parametrize(
    ("type_name", "make"),
    [("mbrl_ros.msg/ModelUpdate", _model_update), ("mbrl_ros.msg/TaskState", _task_state),
     ("mbrl_ros.msg/PlannedAction", _planned_action)],
)
def test_message_round_trips_through_another_process(type_name, make):
    import importlib

    module, _, name = type_name.partition("/")
    msg_type = getattr(importlib.import_module(module), name)
    sent = make()
    echo = start_process(["-m", "helpers.echo_node", type_name])
    try:
        with spinning_node("roundtrip") as node:
            received = []
            node.create_subscription(msg_type, "echo_out", received.append, 10)
            pub = node.create_publisher(msg_type, "echo_in", 10)
            wait_for(lambda: pub.get_subscription_count() > 0, 20, "the echo process")
            wait_for(lambda: node.count_publishers("echo_out") > 0, 20, "echo_out publisher")

            def published_and_back():
                pub.publish(sent)
                return received

            wait_for(published_and_back, 20, "the echoed message", poll=0.2)
        assert received[0] == sent
    finally:
        stop_process(echo)


def test_service_call_across_processes():
    from mbrl_ros.srv import GetStatus

    echo = start_process(["-m", "helpers.echo_node", "mbrl_ros.msg/TaskState"])
    try:
        with spinning_node("client") as node:
            client = node.create_client(GetStatus, "status")
            response = call_service(client, GetStatus.Request(), "get_status", idempotent=True)
        assert response.node == "echo"
        assert response.state == "echoing"
        assert [(kv.key, kv.value) for kv in response.values] == [
            ("type", "mbrl_ros.msg/TaskState")]
    finally:
        out = stop_process(echo)
    assert "echo ready" in out


def test_model_update_declares_its_format_version():
    from mbrl_ros.msg import ModelUpdate

    assert ModelUpdate.FORMAT_VERSION == 1
