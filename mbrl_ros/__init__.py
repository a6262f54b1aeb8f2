"""mbrl_ros: model-based RL (PDDM) for dexterous hands on ROS 2.

Sub-packages:
- ``mbrl_ros.core``: ROS-free learning and planning (torch/numpy).
- ``mbrl_ros.sim``: MuJoCo-only simulated ShadowHand scenes.
- ``mbrl_ros.nodes``: thin ROS 2 adapters around the two (need rclpy).
- ``mbrl_ros.launch``: a runner for ROS 2 YAML launch files without launch_ros.
"""

__version__ = "0.1.0"
