"""Scene registry: task scenes by name, so a node or script picks one from a parameter."""

from __future__ import annotations

from collections.abc import Callable

from mbrl_ros.sim.scene import Scene

SceneBuilder = Callable[..., Scene]

#: name -> builder. A builder takes keyword options (e.g. ``physics=HandPhysics(...)``)
#: and returns a freshly compiled ``Scene``.
SCENES: dict[str, SceneBuilder] = {}


def register_scene(name: str, builder: SceneBuilder, *, replace: bool = False) -> None:
    """Make ``builder`` available as ``build_scene(name)``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"scene name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(f"builder for scene {name!r} is not callable")
    if name in SCENES and not replace:
        raise ValueError(f"scene {name!r} is already registered (pass replace=True)")
    SCENES[name] = builder


def build_scene(name: str, **options: object) -> Scene:
    """Compile the registered scene ``name`` with the builder's keyword ``options``."""
    try:
        builder = SCENES[name]
    except KeyError:
        raise ValueError(f"unknown scene {name!r}; registered: {sorted(SCENES)}") from None
    scene = builder(**options)
    if not isinstance(scene, Scene):
        raise TypeError(f"builder for {name!r} returned {type(scene).__name__}, not a Scene")
    return scene
