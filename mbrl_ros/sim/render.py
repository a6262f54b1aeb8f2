"""Offscreen pictures of a scene: one frame to PNG, an episode to MP4 or a PNG contact sheet.

Import ``mbrl_ros.sim`` before anything imports ``mujoco`` (or export ``MUJOCO_GL``) so the
headless backend is chosen in time (see ``gl_backend``). MP4 needs the ``imageio-ffmpeg``
wheel; without it ``write_video`` writes a contact sheet PNG instead and says so.

Command line:  python -m mbrl_ros.sim.render --scene baoding --steps 20 --out /tmp/b.png
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import imageio.v3 as iio
import mujoco
import numpy as np

from mbrl_ros.sim.scene import CameraView, Scene


class RenderUnavailable(RuntimeError):
    """No working offscreen OpenGL context (no EGL/OSMesa, or MUJOCO_GL chosen too late)."""


class SceneRenderer:
    """Renders a scene's ``MjData`` from its default view (or any ``CameraView``)."""

    def __init__(self, scene: Scene, width: int = 640, height: int = 480) -> None:
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise ValueError(f"image size must be within 16..4096 px, got {width}x{height}")
        self.scene = scene
        try:
            self._renderer = mujoco.Renderer(scene.model, height=height, width=width)
        except Exception as exc:  # the GL stack raises a variety of errors
            raise RenderUnavailable(
                f"cannot create an offscreen GL context (MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')!r}): {exc}. Install libegl1 + libegl-mesa0 "
                "or libosmesa6 and import mbrl_ros.sim before mujoco."
            ) from exc
        self._camera = mujoco.MjvCamera()
        self._options = mujoco.MjvOption()

    def render(self, data: mujoco.MjData, view: CameraView | None = None) -> np.ndarray:
        """An (H, W, 3) uint8 image of ``data`` (runs kinematics, not dynamics)."""
        view = view or self.scene.camera
        cam = self._camera
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = view.lookat
        cam.distance = view.distance
        cam.azimuth = view.azimuth
        cam.elevation = view.elevation
        mujoco.mj_kinematics(self.scene.model, data)
        self._renderer.update_scene(data, camera=cam, scene_option=self._options)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3|4) uint8 image; creates parent folders."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"need an (H, W, 3|4) uint8 image, got {image.dtype} {image.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, image, extension=".png")
    return path


def contact_sheet(frames: Sequence[np.ndarray], columns: int = 5, gap: int = 4) -> np.ndarray:
    """Tile equally sized frames row by row on a white background."""
    if not frames:
        raise ValueError("contact_sheet needs at least one frame")
    h, w, c = frames[0].shape
    if any(f.shape != (h, w, c) for f in frames):
        raise ValueError("all frames must have the same shape")
    columns = max(1, min(columns, len(frames)))
    rows = -(-len(frames) // columns)
    sheet = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, c), 255,
                    dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, col = divmod(i, columns)
        sheet[r * (h + gap):r * (h + gap) + h, col * (w + gap):col * (w + gap) + w] = frame
    return sheet


def mp4_available() -> bool:
    """True if imageio can encode MP4 (needs the imageio-ffmpeg wheel)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0,
                columns: int = 5) -> Path:
    """Write frames as MP4 at ``path``; without imageio-ffmpeg, as a contact sheet PNG next
    to it (same name, ``.png``). Returns the path actually written."""
    if not frames:
        raise ValueError("write_video needs at least one frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4" and mp4_available():
        import imageio.v2 as iio2

        with iio2.get_writer(path, fps=fps, codec="libx264", macro_block_size=8) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame))
        return path
    return save_png(path.with_suffix(".png"), contact_sheet(list(frames), columns=columns))


def render_rollout(
    sim: object,
    renderer: SceneRenderer,
    steps: int,
    policy: Callable[[int], np.ndarray | None] | None = None,
    every: int = 1,
) -> list[np.ndarray]:
    """Frames of ``sim`` (a ``HandSim``) over ``steps`` control steps; ``policy(step)``
    returns the action for each step (None: hold the current command)."""
    frames = [renderer.render(sim.data)]
    for k in range(steps):
        sim.step(policy(k) if policy is not None else None)
        if (k + 1) % every == 0:
            frames.append(renderer.render(sim.data))
    return frames


def main(argv: Sequence[str] | None = None) -> None:
    """Render a scene's keyframe episode (zero action) to a PNG / MP4 for a quick look."""
    import mbrl_ros.sim as sim_pkg  # registers the scenes, picks the GL backend

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--scene", default="baoding", choices=sorted(sim_pkg.SCENES))
    parser.add_argument("--steps", type=int, default=0, help="control steps to simulate")
    parser.add_argument("--every", type=int, default=1, help="keep every n-th frame")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--out", default="scene.png", help=".png (last frame or sheet) / .mp4")
    args = parser.parse_args(argv)
    sim = sim_pkg.HandSim(args.scene)
    with SceneRenderer(sim.scene, *args.size) as renderer:
        frames = render_rollout(sim, renderer, args.steps, every=args.every)
    if args.out.endswith(".mp4") or len(frames) > 1:
        print(write_video(args.out, frames))
    else:
        print(save_png(args.out, frames[-1]))


if __name__ == "__main__":
    main()
