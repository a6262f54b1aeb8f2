"""ROS 2 nodes: thin adapters between messages and ``mbrl_ros.core`` / ``mbrl_ros.sim``."""
