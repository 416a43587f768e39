"""PNG frames written by the recorder's worker processes, decoded back exactly."""

from __future__ import annotations

import json
import os
import signal
import time

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from PIL import Image

from h5recorder import Recorder, SchemaError, WriterError
from h5recorder.workloads import depth_frames, photo_frames


def decode(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.mark.default_ring  # one in-process recording with frames on the default ring
def test_every_kind_of_frame_decodes_to_what_was_recorded(tmp_path):
    rgb = photo_frames(12, 48, 64, seed=1)
    rgba = photo_frames(12, 48, 64, channels=4, seed=2)
    gray = photo_frames(12, 48, 64, channels=1, seed=3)
    depth = depth_frames(12, 48, 64, seed=4)
    space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
            "overlay": spaces.Box(0, 255, (48, 64, 4), np.uint8),
            "gray": spaces.Box(0, 255, (48, 64), np.uint8),
            "depth": spaces.Box(0, 65535, (48, 64), np.uint16),
        }
    )
    keys = ["image", "observation/overlay", "gray", "depth"]
    with Recorder(
        "kinds", out_dir=str(tmp_path), observation_space=space, image_keys_to_save=keys
    ) as recorder:
        for i in range(12):
            recorder.record(
                {"image": rgb[i], "overlay": rgba[i], "gray": gray[i], "depth": depth[i]}
            )
    folder = tmp_path / "kinds_frames" / "observation"
    for name, data in (("image", rgb), ("overlay", rgba), ("gray", gray), ("depth", depth)):
        files = sorted(os.listdir(folder / name))
        assert files == sorted(f"{i}.png" for i in range(12)), name
        for i in range(12):
            decoded = decode(folder / name / f"{i}.png")
            assert decoded.dtype == data.dtype or name == "depth", name
            np.testing.assert_array_equal(decoded.astype(data.dtype), data[i], err_msg=name)
    with h5py.File(recorder.filename, "r") as file:
        info = json.loads(file.attrs["recorder_frames"])
        assert sorted(info["keys"]) == sorted(
            f"observation/{k}" for k in ("image", "overlay", "gray", "depth")
        )
        assert json.loads(file.attrs["recorder_status"])["frames_written"] == 48


def test_one_key_is_written_as_the_reference_names_it(tmp_path):
    frames = photo_frames(5, 48, 64)
    with Recorder("one", out_dir=str(tmp_path)) as recorder:
        for frame in frames:
            recorder.record(observation={"image": frame, "step": 1.0})
    assert sorted(os.listdir(tmp_path / "one_frames")) == [f"{i}.png" for i in range(5)]
    np.testing.assert_array_equal(decode(tmp_path / "one_frames" / "4.png"), frames[4])


def test_reset_starts_a_clean_folder_and_keeps_the_old_frames_with_the_old_file(tmp_path):
    frames = photo_frames(9, 48, 64)
    space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8)})
    recorder = Recorder("episode", out_dir=str(tmp_path), observation_space=space)
    pool = recorder._frames
    for i in range(6):
        recorder.record({"image": frames[i]})
    recorder.reset()
    assert recorder._frames is pool, "the worker processes are reused across reset()"
    for i in range(3):
        recorder.record({"image": frames[6 + i]})
    recorder.close()
    assert sorted(os.listdir(tmp_path / "episode_frames")) == ["0.png", "1.png", "2.png"]
    np.testing.assert_array_equal(decode(tmp_path / "episode_frames" / "0.png"), frames[6])
    old = [p for p in tmp_path.glob("episode*_frames") if p.name != "episode_frames"]
    assert len(old) == 1 and (tmp_path / (old[0].name[: -len("_frames")] + ".h5")).exists()
    assert len(os.listdir(old[0])) == 6
    np.testing.assert_array_equal(decode(old[0] / "5.png"), frames[5])


def test_a_saved_key_that_cannot_be_a_png_is_refused_at_construction(tmp_path):
    space = spaces.Dict({"image": spaces.Box(0, 1, (48, 64, 3), np.float32)})
    with pytest.raises(SchemaError, match=r"observation/image: cannot save as PNG.*float32"):
        Recorder("float", out_dir=str(tmp_path), observation_space=space)


def test_a_killed_worker_is_replaced_and_its_frames_still_appear(tmp_path):
    frames = photo_frames(16, 120, 160)
    space = spaces.Dict({"image": spaces.Box(0, 255, (120, 160, 3), np.uint8)})
    recorder = Recorder("killed", out_dir=str(tmp_path), observation_space=space)
    assert recorder._frames is not None
    victims = recorder._frames.pids
    for i in range(300):
        recorder.record({"image": frames[i % 16]})
        if i == 100:
            os.kill(victims[0], signal.SIGKILL)
    recorder.close()
    names = set(os.listdir(tmp_path / "killed_frames"))
    assert names == {f"{i}.png" for i in range(300)}
    np.testing.assert_array_equal(decode(tmp_path / "killed_frames" / "250.png"), frames[250 % 16])


def test_an_encoder_error_names_the_frame_in_the_callers_thread(tmp_path):
    frames = photo_frames(4, 48, 64)
    space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8)})
    recorder = Recorder(
        "broken", out_dir=str(tmp_path), observation_space=space, commit_interval=0.05
    )
    folder = tmp_path / "broken_frames"
    folder.rmdir()
    folder.write_text("a file where the frames folder should be")
    with pytest.raises(WriterError, match=r"broken_frames/0\.png"):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            recorder.record({"image": frames[0]})
            time.sleep(0.01)
    with pytest.raises(WriterError, match=r"broken_frames/\d+\.png"):
        recorder.close()


@pytest.mark.parametrize("policy", ["all", "best-effort"])
def test_frames_the_encoders_cannot_keep_up_with(tmp_path, policy):
    frames = photo_frames(8, 240, 320)
    space = spaces.Dict({"image": spaces.Box(0, 255, (240, 320, 3), np.uint8)})
    with Recorder(
        "behind",
        out_dir=str(tmp_path),
        observation_space=space,
        frames=policy,
        frame_workers=1,
        buffer_bytes=24 * 240 * 320 * 3,
    ) as recorder:
        for i in range(200):
            recorder.record({"image": frames[i % 8]})
    status = recorder.status()
    written = set(os.listdir(tmp_path / "behind_frames"))
    assert status.frames_deferred > 0, "the encoders should have fallen behind"
    if policy == "all":
        assert written == {f"{i}.png" for i in range(200)}
        assert status.frames_missing == 0
        np.testing.assert_array_equal(decode(tmp_path / "behind_frames" / "199.png"), frames[7])
    else:
        missing = {os.path.basename(path) for path in recorder.missing_frames}
        assert missing and missing.isdisjoint(written)
        assert missing | written == {f"{i}.png" for i in range(200)}
        assert status.frames_missing == len(missing)
        with h5py.File(recorder.filename, "r") as file:
            assert len(json.loads(file.attrs["recorder_frames"])["missing"]) == len(missing)


def test_deferred_frames_of_several_keys_each_decode_to_their_own_key(tmp_path):
    """Frames deferred while the encoders are behind are written from each key's own dataset."""
    left, right = photo_frames(8, 240, 320, seed=11), photo_frames(8, 240, 320, seed=12)
    depth = depth_frames(8, 240, 320, seed=13)
    space = spaces.Dict(
        {
            "left": spaces.Box(0, 255, (240, 320, 3), np.uint8),
            "right": spaces.Box(0, 255, (240, 320, 3), np.uint8),
            "depth": spaces.Box(0, 65535, (240, 320), np.uint16),
        }
    )
    steps = 200
    with Recorder(
        "rig",
        out_dir=str(tmp_path),
        observation_space=space,
        image_keys_to_save=["left", "right", "depth"],
        frame_workers=1,
        buffer_bytes=24 * 240 * 320 * 8,
    ) as recorder:
        for i in range(steps):  # flat out: far faster than one worker encodes three frames
            recorder.record({"left": left[i % 8], "right": right[i % 8], "depth": depth[i % 8]})
        behind = recorder.status()
        # said while recording: frames not written yet, and what close() would wait for them
        assert behind.frames_pending > 0
        assert behind.frames_close_seconds > 0
    status = recorder.status()
    assert status.frames_pending == 0 and status.frames_close_seconds == 0
    assert status.frames_deferred > 0, "the encoders should have fallen behind"
    assert status.frames_missing == 0
    root = tmp_path / "rig_frames" / "observation"
    for key, frames in [("left", left), ("right", right), ("depth", depth)]:
        assert sorted(os.listdir(root / key)) == sorted(f"{i}.png" for i in range(steps)), key
        for i in range(steps):
            np.testing.assert_array_equal(
                decode(root / key / f"{i}.png"), frames[i % 8], err_msg=f"{key} step {i}"
            )
