"""Test-wide set-up: every run gets its own ROS domain and stays on loopback."""

from __future__ import annotations

import os
import random
import sys

import pytest

# Before anything imports rclpy: a random domain per test run, discovery on localhost only.
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("MUJOCO_GL", "egl")
# The stack's Fast DDS profile (what the launch files use): lost samples repaired in 50 ms.
_PROFILE = os.path.join(sys.prefix, "share", "mbrl_ros", "config", "fastdds_profiles.xml")
if os.path.exists(_PROFILE):
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", _PROFILE)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (timings and results independent of the machine)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
