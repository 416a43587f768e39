"""An export of the camera rig read back by LeRobot's own ``LeRobotDataset``.

Only in the ``lerobot`` tox env (``tox -e lerobot``; it installs torch, LeRobot 0.4.4 and
torchcodec, see ``tests/lerobot_env.py``); skipped elsewhere. Three episodes of the rig (two
640x480 cameras with real photographs and sensor noise, a depth image, 30 joints) are recorded
at 30 steps per second by the real ``Recorder``, one with a stall of its loop, then exported
with PNG images and with AV1 videos. LeRobot decodes them (PIL for images, torchcodec for
videos) and every row is compared with what was recorded: images and values exactly, video
frames within ``MIN_PSNR_DB``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import h5recorder
from h5recorder.export import to_lerobot
from tests.episodes import record_rig
from tests.lerobot_env import import_torchvision

pytest.importorskip("lerobot")
import_torchvision()
torch = pytest.importorskip("torch")
lerobot_dataset = pytest.importorskip("lerobot.datasets.lerobot_dataset")
lerobot_utils = pytest.importorskip("lerobot.datasets.utils")

RATE = 30
STEPS = (40, 45, 50)
CAMERAS = ("camera_0", "camera_1")
TASK = "stack the red block on the blue one"
STALL = (1, (20, 0.2))  # episode 1's loop pauses 0.2 s (6 frames) before its step 20
# AV1 at LeRobot's default CRF 30, 4:2:0 chroma, on photographs with sensor noise (sigma 3,
# itself 38.6 dB): the worst frame measured here was 29.4 dB
MIN_PSNR_DB = 28.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("rig")
    values = [record_rig(folder, f"episode_{k}", steps, seed=k, rate=RATE,
                         stall=STALL[1] if k == STALL[0] else None)
              for k, steps in enumerate(STEPS)]
    return folder, values


@pytest.fixture(scope="module", params=["images", "video"])
def exported(request: pytest.FixtureRequest, rig: tuple[Path, list[dict[str, Any]]],
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    video = request.param == "video"
    out = tmp_path_factory.mktemp("lerobot") / request.param
    done = to_lerobot(rig[0], out, video=video, task=TASK, progress=False)
    return done, lerobot_dataset.LeRobotDataset("local/rig", root=out)


def _recorded_times(folder: Path) -> list[np.ndarray]:
    times = []
    for path in sorted(folder.glob("*.h5")):
        with h5recorder.open(path) as episode:
            assert episode.time is not None
            times.append(episode.time.seconds())
    return times


def _frame(tensor: Any) -> np.ndarray:
    """LeRobot's float CHW image in [0, 1] as the uint8 HWC frame it came from."""
    array: np.ndarray = (tensor.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return array


def _psnr(decoded: np.ndarray, recorded: np.ndarray) -> float:
    error = np.mean((decoded.astype(np.float64) - recorded) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


def test_every_row_equals_what_was_recorded(exported: tuple[Any, Any],
                                            rig: tuple[Path, list[dict[str, Any]]]) -> None:
    done, data = exported
    assert data.num_episodes == len(STEPS) and data.num_frames == sum(STEPS) == len(data)
    assert data.meta.camera_keys == [f"observation.images.{c}" for c in CAMERAS]
    assert data.meta.video_keys == (data.meta.camera_keys if done.video else [])
    assert "observation/depth" in done.left_out
    times = _recorded_times(rig[0])
    worst = float("inf")
    for index in range(len(data)):
        item = data[index]
        episode, step = int(item["episode_index"]), int(item["frame_index"])
        recorded = rig[1][episode]
        assert int(item["index"]) == index and item["task"] == TASK
        np.testing.assert_array_equal(item["observation.state"].numpy(),
                                      recorded["state/joints"][step])
        # on the frame grid, within half a frame of the recorded time unless the step came
        # less than a frame after the one before (then later, never earlier)
        off = float(item["timestamp"]) - times[episode][step]
        assert -0.5 / RATE - 1e-6 <= off <= 3.0 / RATE, (episode, step, off)
        for camera in CAMERAS:
            frame = _frame(item[f"observation.images.{camera}"])
            if done.video:
                worst = min(worst, _psnr(frame, recorded[f"observation/{camera}"][step]))
            else:
                np.testing.assert_array_equal(frame, recorded[f"observation/{camera}"][step])
    if done.video:
        assert worst >= MIN_PSNR_DB, worst
        print(f"\nworst frame of the video export: {worst:.2f} dB PSNR")


def test_lerobot_checks_pass(exported: tuple[Any, Any]) -> None:
    done, data = exported
    meta = lerobot_dataset.LeRobotDatasetMetadata("local/rig", root=done.root)
    assert meta.total_episodes == len(STEPS) and meta.fps == RATE
    info = json.loads((done.root / "meta/info.json").read_text())
    assert info["features"]["observation.state"] == {
        "dtype": "float32", "shape": [30], "names": [f"joints_{i}" for i in range(30)]}
    features = {key: {**ft, "shape": tuple(ft["shape"])} for key, ft in info["features"].items()}
    for index in (0, STEPS[0], len(data) - 1):
        item = data[index]
        frame = {}
        for key, feature in features.items():
            if key not in lerobot_utils.DEFAULT_FEATURES:
                value = item[key].numpy()
                if feature["dtype"] in ("image", "video"):  # as add_frame takes it: HxWxC
                    value = value.transpose(1, 2, 0)
                frame[key] = value.reshape(1) if feature["shape"] == (1,) else value
        lerobot_utils.validate_frame({**frame, "task": item["task"]}, features)
    policy = lerobot_utils.dataset_to_policy_features(meta.features)
    assert policy["observation.state"].shape == (30,)
    assert policy[f"observation.images.{CAMERAS[0]}"].shape == (3, 480, 640)
    for camera in CAMERAS:
        stats = meta.stats[f"observation.images.{camera}"]
        assert stats["mean"].shape == (3, 1, 1) and 0.0 < stats["mean"].min() < 1.0
        assert stats["q99"].shape == (3, 1, 1) and np.all(stats["q01"] <= stats["q99"])
    assert meta.stats["observation.state"]["std"].shape == (30,)


def test_dataloader_and_delta_timestamps(exported: tuple[Any, Any]) -> None:
    done, data = exported
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True,
                                         num_workers=0 if done.video else 2)
    seen = 0
    for batch in loader:
        assert batch[f"observation.images.{CAMERAS[0]}"].shape[1:] == (3, 480, 640)
        assert batch["observation.state"].shape[1:] == (30,)
        seen += len(batch["index"])
    assert seen == sum(STEPS)
    camera = f"observation.images.{CAMERAS[1]}"
    history = lerobot_dataset.LeRobotDataset(
        "local/rig", root=done.root,
        delta_timestamps={camera: [-1 / RATE, 0.0], "observation.state": [-1 / RATE, 0.0]},
    )
    item = history[STEPS[0] + 1]  # the second step of the second episode
    assert item[camera].shape == (2, 3, 480, 640)
    assert item[f"{camera}_is_pad"].tolist() == [False, False]
    first = history[STEPS[0]]
    assert first[f"{camera}_is_pad"].tolist() == [True, False]
    if not done.video:
        np.testing.assert_array_equal(_frame(item[camera][0]), _frame(first[camera][1]))
