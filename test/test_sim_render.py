"""Offscreen rendering to PNG (skipped, with the reason, when no headless GL works here)."""

from __future__ import annotations

import numpy as np
import pytest

import mbrl_ros.sim as sim
from mbrl_ros.sim.gl_backend import available_gl_backends
from mbrl_ros.sim.render import (
    RenderUnavailable,
    SceneRenderer,
    contact_sheet,
    render_rollout,
    save_png,
    write_video,
)


@pytest.fixture(scope="module")
def renderer():
    if not available_gl_backends():
        pytest.skip("no headless GL backend: install libegl1 + libegl-mesa0 or libosmesa6")
    scene = sim.build_scene("baoding")
    try:
        r = SceneRenderer(scene, 160, 120)
    except RenderUnavailable as exc:
        pytest.skip(f"offscreen rendering unavailable: {exc}")
    yield r
    r.close()


def test_frame_to_png(renderer, tmp_path):
    hand = sim.HandSim(renderer.scene)
    image = renderer.render(hand.data)
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8
    assert image.std() > 10  # not a blank frame
    path = save_png(tmp_path / "frame.png", image)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_episode_to_video_or_contact_sheet(renderer, tmp_path):
    hand = sim.HandSim(renderer.scene)
    frames = render_rollout(hand, renderer, steps=2)
    assert len(frames) == 3
    assert not np.array_equal(frames[0], frames[-1])  # the balls fell into the palm
    written = write_video(tmp_path / "episode.mp4", frames)
    assert written.exists() and written.stat().st_size > 1000


def test_contact_sheet_layout():
    frames = [np.full((4, 6, 3), i, dtype=np.uint8) for i in range(5)]
    sheet = contact_sheet(frames, columns=2, gap=1)
    assert sheet.shape == (3 * 4 + 2, 2 * 6 + 1, 3)
    assert sheet[5, 7, 0] == 3  # row 1, column 1 -> frame 3
    with pytest.raises(ValueError):
        save_png("x.png", np.zeros((4, 4), dtype=np.uint8))
