"""pip install of the ROS-free parts (core, simulator, launcher); metadata in setup.cfg."""

from setuptools import setup

setup()
