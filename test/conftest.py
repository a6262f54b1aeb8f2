"""Test-wide set-up: every run gets its own ROS domain and stays on loopback."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def ros2env(tmp_path_factory) -> Path:
    """The upstream ROS 2 Jazzy kit's ``ros2env`` wrapper (the real ``ros2 launch`` and
    ``ros2`` CLI; helpers/ros2_upstream.py): installed once per kit content and venv. Skips,
    naming the reason, where the kit folder beside the project is absent."""
    from helpers.ros2_upstream import KIT, KIT_ABSENT, install_kit

    if not KIT.is_dir():
        pytest.skip(KIT_ABSENT)
    return install_kit(tmp_path_factory.mktemp("kit"))
