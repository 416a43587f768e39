"""Exporting an episode to LeRobot, beside LeRobot's own ``save_episode`` for the same episode.

The episode: the rig LeRobot users record with, two 640x480 RGB cameras (photographs panning,
with sensor noise), 14 joint positions (state) and 14 joint targets (action), float32, 30 Hz,
``--export-seconds`` long (default 60: 1,800 steps, 3,600 frames). Per mode (``--export-modes``,
default ``video``; ``images`` too when asked), in one run:

- ``lerobot``: ``LeRobotDataset.create`` with both cameras as ``video`` (or ``image``)
  features and the image writer threads LeRobot's recording script starts (4 per camera);
  ``add_frame`` for every step, flat out; then the wait for the image writer to finish the
  PNG files (what a paced recording does while it records, shown apart, not counted); then
  ``save_episode()``, timed: the figure to beat;
- ``h5recorder``: ``Recorder.record()`` of the same steps and ``close()`` (not counted), then
  ``h5recorder.export.to_lerobot`` of the file, timed, with its CPU time (this process and its
  workers): ``cores_used`` is CPU seconds over wall seconds, out of ``cores``.

Both encode with LeRobot's video settings (AV1 by SVT-AV1, CRF 30, a keyframe every 2 frames,
preset 12); LeRobot encodes each camera in its own process (``parallel_encoding``). Steps are
recorded flat out, so the export is given ``fps=30``; each step then takes the next slot of the
grid, as LeRobot's own frames do. Checked, never timed: both datasets load with
``LeRobotDataset`` with every frame, and a frame of the export equals (images) or is within
28 dB (video) of the recorded one.

Only in the ``lerobot`` tox env: ``tox -e lerobot -- benchmarks/test_lerobot_export.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from bench_support import lerobot_features, lerobot_rig, report
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder.export import to_lerobot
from tests.lerobot_env import import_torchvision

RATE = 30
JOINTS = 14
CAMERAS = ("camera_0", "camera_1")
BANK = 32
TASK = "pick up the cube"

pytest.importorskip("lerobot")
import_torchvision()
LeRobotDataset = pytest.importorskip("lerobot.datasets.lerobot_dataset").LeRobotDataset


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mode" in metafunc.fixturenames:
        modes = str(metafunc.config.getoption("--export-modes")).split(",")
        metafunc.parametrize("mode", modes)


@pytest.fixture(scope="module")
def rig() -> list[dict[str, Any]]:
    """``BANK`` steps of the rig, as ``record()`` takes them."""
    return lerobot_rig(BANK, CAMERAS, JOINTS)


def _lerobot(rig: list[dict[str, Any]], root: Path, steps: int, video: bool,
             figures: dict[str, Any]) -> None:
    features = lerobot_features(CAMERAS, JOINTS, video)
    dataset = LeRobotDataset.create("local/rig", fps=RATE, features=features, root=root,
                                    use_videos=video, image_writer_threads=4 * len(CAMERAS))
    began = time.perf_counter()
    for i in range(steps):
        step = rig[i % BANK]
        dataset.add_frame({
            **{f"observation.images.{name}": step["observation"][name] for name in CAMERAS},
            "observation.state": step["state"]["joints"],
            "action": step["action"]["joints"],
            "task": TASK,
        })
    figures["lerobot_add_frames_s"] = round(time.perf_counter() - began, 2)
    began = time.perf_counter()
    dataset._wait_image_writer()
    figures["lerobot_png_wait_s"] = round(time.perf_counter() - began, 2)
    os.sync()
    began = time.perf_counter()
    dataset.save_episode()
    figures["lerobot_save_episode_s"] = round(time.perf_counter() - began, 2)
    dataset.finalize()
    dataset.stop_image_writer()


def _h5recorder(rig: list[dict[str, Any]], folder: Path, steps: int) -> Path:
    box = spaces.Box
    recorder = Recorder(
        "rig", out_dir=str(folder), image_keys_to_save=[],
        observation_space=spaces.Dict({n: box(0, 255, (480, 640, 3), np.uint8) for n in CAMERAS}),
        state_space=spaces.Dict({"joints": box(-np.pi, np.pi, (JOINTS,), np.float32)}),
        action_space=spaces.Dict({"joints": box(-np.pi, np.pi, (JOINTS,), np.float32)}),
    )
    for i in range(steps):
        recorder.record(**rig[i % BANK])
    recorder.close()
    return folder / "rig.h5"


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def test_export_beside_save_episode(benchmark: Any, request: pytest.FixtureRequest,
                                    rig: list[dict[str, Any]], mode: str,
                                    tmp_path: Path) -> None:
    steps = int(float(request.config.getoption("--export-seconds")) * RATE)
    video = mode == "video"
    figures: dict[str, Any] = {"mode": mode, "steps": steps, "cores": os.cpu_count()}
    os.sync()
    _lerobot(rig, tmp_path / "lerobot", steps, video, figures)
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    _h5recorder(rig, recorded, steps)
    os.sync()
    out = tmp_path / "export"

    def export() -> None:
        cpu = _cpu_seconds()
        began = time.perf_counter()
        done = to_lerobot(recorded, out, video=video, fps=RATE, task=TASK, progress=False)
        wall = time.perf_counter() - began
        figures["export_s"] = round(wall, 2)
        figures["cores_used"] = round((_cpu_seconds() - cpu) / wall, 2)
        assert done.frames == steps

    benchmark.pedantic(export, rounds=1, iterations=1)
    figures["export_over_save_episode"] = round(
        figures["export_s"] / figures["lerobot_save_episode_s"], 3)

    theirs = LeRobotDataset("local/rig", root=tmp_path / "lerobot")
    ours = LeRobotDataset("local/rig", root=out)
    assert theirs.num_frames == ours.num_frames == steps
    row = steps - 1
    frame = (ours[row][f"observation.images.{CAMERAS[1]}"].permute(1, 2, 0).numpy() * 255)
    expected = rig[row % BANK]["observation"][CAMERAS[1]]
    if video:
        error = np.mean((frame.round() - expected) ** 2)
        assert 10 * np.log10(255.0**2 / error) >= 28.0
    else:
        assert np.array_equal(frame.round().astype(np.uint8), expected)
    report(benchmark, f"LeRobot export of {steps} steps, 2 x 640x480 ({mode})", figures)
