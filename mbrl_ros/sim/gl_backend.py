"""Pick MuJoCo's offscreen OpenGL backend before ``mujoco`` is imported.

MuJoCo reads ``MUJOCO_GL`` once, at import. Without a display the default (GLFW) cannot
render, so ``mbrl_ros.sim`` calls ``select_gl_backend`` first thing: EGL (Mesa's llvmpipe
on a CPU-only machine; Debian libegl1 + libegl-mesa0) if present, else OSMesa
(libosmesa6). A value already in the environment is respected. No mujoco import here.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

_EGL_VENDOR_LIBS = ("EGL_mesa", "EGL_nvidia")


def available_gl_backends() -> list[str]:
    """Headless backends whose system libraries are installed, preferred first."""
    found = []
    if ctypes.util.find_library("EGL") and any(
        ctypes.util.find_library(lib) for lib in _EGL_VENDOR_LIBS
    ):
        found.append("egl")
    if ctypes.util.find_library("OSMesa"):
        found.append("osmesa")
    return found


def select_gl_backend() -> str | None:
    """Set ``MUJOCO_GL`` (if unset and mujoco not yet imported) and return the backend.

    Returns None if no headless backend is installed (rendering will then fail with a
    clear error; physics is unaffected).
    """
    current = os.environ.get("MUJOCO_GL")
    if current:
        return current.lower()
    if "mujoco" in sys.modules:
        return None  # too late to choose; MuJoCo already picked its default
    backends = available_gl_backends()
    if not backends:
        return None
    os.environ["MUJOCO_GL"] = backends[0]
    return backends[0]
