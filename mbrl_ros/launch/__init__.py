"""Run ROS 2 YAML launch files without launch_ros (which is not on PyPI).

Supports the subset of the launch-YAML format that ``ros2 launch`` also reads, so the same
files work on a full ROS 2 install and from a pip/venv install. See ``launch_file`` for the
subset and ``process_group`` for how processes are supervised.
"""
