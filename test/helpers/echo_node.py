"""A real ROS process for cross-process tests: echoes a message type and serves GetStatus.

usage: python -m helpers.echo_node MSG_TYPE   (e.g. mbrl_ros.msg/ModelUpdate)
Subscribes to ``echo_in``, republishes each message unchanged on ``echo_out``; serves
``status`` (mbrl_ros/srv/GetStatus) reporting how many messages it echoed.
"""

from __future__ import annotations

import importlib
import sys

import rclpy
from diagnostic_msgs.msg import KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from mbrl_ros.srv import GetStatus


def main() -> None:
    module, _, name = sys.argv[1].partition("/")
    msg_type = getattr(importlib.import_module(module), name)
    rclpy.init()
    node = Node("echo")
    count = 0
    pub = node.create_publisher(msg_type, "echo_out", 10)

    def on_msg(msg) -> None:
        nonlocal count
        count += 1
        pub.publish(msg)

    def on_status(_req, res):
        res.node = node.get_name()
        res.state = "echoing"
        res.num_transitions = count
        res.values = [KeyValue(key="type", value=sys.argv[1])]
        return res

    node.create_subscription(msg_type, "echo_in", on_msg, 10)
    node.create_service(GetStatus, "status", on_status)
    print("echo ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
