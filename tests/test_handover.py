"""Hand-over (``Recorder(handover=True)``): large arrays are kept by reference and copied into
the ring by the writer thread; everything recorded reads back exact, PNG frames included."""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from PIL import Image

from h5recorder import Recorder, StepError
from h5recorder.workloads import photo_frames

HEIGHT, WIDTH = 480, 640
RIG = spaces.Dict(
    {
        "camera_0": spaces.Box(0, 255, (HEIGHT, WIDTH, 3), np.uint8),
        "camera_1": spaces.Box(0, 255, (HEIGHT, WIDTH, 3), np.uint8),
        "joints": spaces.Box(-np.pi, np.pi, (14,), np.float32),
    }
)


def rig_steps(count: int, height: int = HEIGHT, width: int = WIDTH) -> list[dict[str, Any]]:
    cameras = [photo_frames(count, height, width, seed=seed) for seed in (11, 12)]
    rng = np.random.default_rng(5)
    return [
        {
            "camera_0": cameras[0][i],
            "camera_1": cameras[1][i],
            "joints": rng.uniform(-1, 1, 14).astype(np.float32),
        }
        for i in range(count)
    ]


def rig_space(height: int, width: int) -> spaces.Dict:
    return spaces.Dict(
        {
            "camera_0": spaces.Box(0, 255, (height, width, 3), np.uint8),
            "camera_1": spaces.Box(0, 255, (height, width, 3), np.uint8),
            "joints": spaces.Box(-np.pi, np.pi, (14,), np.float32),
        }
    )


def check_file(path: os.PathLike[str], steps: list[dict[str, Any]]) -> None:
    """Every row of every leaf is the step recorded, and nothing more."""
    with h5py.File(path, "r") as file:
        assert int(file.attrs["size"]) == len(steps)
        for key in ("camera_0", "camera_1", "joints"):
            stored = file[f"observation/{key}"][:]
            assert stored.shape[0] == len(steps), key
            expected = np.stack([step[key] for step in steps])
            np.testing.assert_array_equal(stored, expected, err_msg=key)


def check_pngs(folder: os.PathLike[str], frames: list[np.ndarray]) -> None:
    names = sorted(os.listdir(folder), key=lambda name: int(name.split(".")[0]))
    assert names == [f"{i}.png" for i in range(len(frames))]
    for i, frame in enumerate(frames):
        with Image.open(os.path.join(folder, f"{i}.png")) as image:
            np.testing.assert_array_equal(np.asarray(image), frame, err_msg=f"frame {i}")


@contextmanager
def writer_held(recorder: Recorder) -> Iterator[threading.Event]:
    """Keep the writer thread busy (as a live reader's pause does) until the event is set:
    nothing is copied out of the caller's arrays meanwhile."""
    inside, gate = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        gate.wait(30)

    thread = threading.Thread(target=recorder._pause_for_reader, args=(hold,))
    thread.start()
    assert inside.wait(30)
    try:
        yield gate
    finally:
        gate.set()
        thread.join(30)


def held_values(recorder: Recorder) -> list[Any]:
    ring = recorder._ring
    assert ring is not None and ring.held is not None
    return [value for values in ring.held if values for value in values if value is not None]


@pytest.mark.parametrize("png", [True, False], ids=["png", "no-png"])
def test_camera_frames_handed_over_read_back_exact(tmp_path, png):
    steps = rig_steps(40)
    keys = ["camera_0"] if png else []
    with Recorder("rig", out_dir=str(tmp_path), observation_space=RIG, handover=True,
                  image_keys_to_save=keys) as recorder:
        ring = recorder._ring
        assert ring is not None and ring.held is not None
        held = {recorder._plan.leaves[i].name for i, v in enumerate(ring.held) if v is not None}
        assert held == {"observation/camera_0", "observation/camera_1"}  # joints are copied
        for step in steps:
            recorder.record(step)
    check_file(recorder.filename, steps)
    folder = tmp_path / "rig_frames"
    if png:
        check_pngs(folder, [step["camera_0"] for step in steps])
    else:
        assert not folder.exists() or not os.listdir(folder)
    with h5py.File(recorder.filename, "r") as file:
        assert '"handover": true' in file.attrs["recorder_options"]


def test_the_default_copies_and_small_leaves_are_never_held(tmp_path):
    with Recorder("copy", out_dir=str(tmp_path), observation_space=RIG) as recorder:
        assert recorder._ring is not None and recorder._ring.held is None
    small = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8)})  # 9 KiB a row
    with Recorder("small", out_dir=str(tmp_path), observation_space=small,
                  handover=True) as recorder:
        assert recorder._ring is not None and recorder._ring.held is None
    with pytest.raises(ValueError, match="handover"):
        Recorder("bad", out_dir=str(tmp_path), observation_space=RIG, handover="yes")


def test_a_fresh_array_at_every_step_is_recorded_and_let_go(tmp_path):
    steps = rig_steps(30)
    handed: list[weakref.ref[np.ndarray]] = []
    recorder = Recorder("fresh", out_dir=str(tmp_path), observation_space=RIG, handover=True,
                        image_keys_to_save=["camera_1"])
    for step in steps:
        fresh = {key: value.copy() for key, value in step.items()}  # as a camera driver does
        handed.append(weakref.ref(fresh["camera_1"]))
        recorder.record(fresh)
        del fresh
    recorder.close()
    gc.collect()
    assert [ref for ref in handed if ref() is not None] == []  # the recorder kept none
    check_file(recorder.filename, steps)
    check_pngs(tmp_path / "fresh_frames", [step["camera_1"] for step in steps])


def test_arrays_are_held_until_flush_and_free_to_reuse_after(tmp_path):
    """The ownership rule: written to after flush() returns, an array changes nothing
    recorded; before, the recorder still holds it."""
    steps = rig_steps(6)
    reused = {key: value.copy() for key, value in steps[0].items()}
    recorder = Recorder("reuse", out_dir=str(tmp_path), observation_space=RIG, handover=True,
                        image_keys_to_save=["camera_0"])
    recorder.record(steps[0])
    recorder.flush()
    with writer_held(recorder) as gate:
        for step in steps[1:4]:
            recorder.record(step)
        assert recorder._ring.held_rows == 3
        held = held_values(recorder)
        assert any(value is steps[3]["camera_0"] for value in held)
        assert not any(value is steps[3]["joints"] for value in held)  # small: copied
        timer = threading.Timer(0.2, gate.set)
        timer.start()
        recorder.flush()  # returns once the writer copied them (and committed)
        timer.join()
    assert recorder._ring.held_rows == 0 and held_values(recorder) == []
    for i in (4, 5):  # one array, filled anew and handed over at each step, flush between
        for key, value in steps[i].items():
            reused[key][...] = value
        recorder.record(reused)
        recorder.flush()
    for value in reused.values():
        value[...] = 0  # after the last flush: the recorder no longer reads it
    recorder.close()
    check_file(recorder.filename, steps)
    check_pngs(tmp_path / "reuse_frames", [step["camera_0"] for step in steps])


def test_a_small_ring_wraps_with_held_references(tmp_path):
    height, width = 128, 192  # 72 KiB frames: held
    steps = rig_steps(150, height, width)
    with Recorder("wraps", out_dir=str(tmp_path), observation_space=rig_space(height, width),
                  handover=True, buffer_bytes=1 << 16, image_keys_to_save=["camera_0"],
                  chunk_bytes=3 * height * width * 3) as recorder:
        ring = recorder._ring
        assert ring is not None and ring.held is not None
        assert ring.capacity < 20  # wraps about eight times
        for step in steps:
            recorder.record(step)
            assert ring.head - ring.tail <= ring.capacity and ring.held_rows <= ring.capacity
        status = recorder.status()
    assert status.steps == 150 and status.drops == 0
    with h5py.File(recorder.filename, "r") as file:
        assert file["observation/camera_0"].chunks[0] == 3
        assert file["observation/camera_1"].chunks[0] == 3
    check_file(recorder.filename, steps)
    check_pngs(tmp_path / "wraps_frames", [step["camera_0"] for step in steps])


@pytest.mark.parametrize("on_full", ["wait", "drop"])
def test_held_references_count_against_the_ring(tmp_path, on_full):
    height, width = 128, 192
    steps = rig_steps(30, height, width)
    recorder = Recorder("full", out_dir=str(tmp_path), observation_space=rig_space(height, width),
                        handover=True, buffer_bytes=1 << 16, on_full=on_full)
    ring = recorder._ring
    assert ring is not None
    capacity = ring.capacity
    recorded = steps[: capacity + 5]
    with writer_held(recorder) as gate:
        if on_full == "drop":
            for step in recorded:
                recorder.record(step)
            assert recorder.status().drops == 5
            kept = recorded[:capacity]
            # a dropped step is not taken: nothing of it is referenced
            held = held_values(recorder)
            assert not any(value is recorded[-1]["camera_0"] for value in held)
        else:
            caller = threading.Thread(target=lambda: [recorder.record(s) for s in recorded])
            caller.start()
            caller.join(1.0)
            assert caller.is_alive()  # record() waits for room: the held slots are full
            kept = recorded
        assert ring.held_rows == capacity
        assert len(held_values(recorder)) == 2 * capacity
        gate.set()
        if on_full == "wait":
            caller.join(30)
            assert not caller.is_alive()
    recorder.close()
    check_file(recorder.filename, kept)
    status = recorder.status()
    assert (status.waits > 0) == (on_full == "wait")


def test_a_rejected_step_leaves_no_reference_behind(tmp_path):
    steps = rig_steps(3)
    with Recorder("rejected", out_dir=str(tmp_path), observation_space=RIG,
                  handover=True) as recorder:
        recorder.record(steps[0])
        recorder.flush()
        bad = {key: value.copy() for key, value in steps[1].items()}
        bad["joints"] = np.zeros(13, np.float32)  # checked after the frames: wrong shape
        frames = weakref.ref(bad["camera_0"]), weakref.ref(bad["camera_1"])
        with pytest.raises(StepError, match="joints"):
            recorder.record(bad)
        assert recorder._ring.held_rows == 0
        del bad
        gc.collect()
        assert frames[0]() is None and frames[1]() is None
        recorder.record(steps[2])
    check_file(recorder.filename, [steps[0], steps[2]])


@pytest.mark.default_ring  # the 20 steps held must fit the ring: 37 MB
def test_close_with_pending_references_loses_nothing(tmp_path):
    steps = rig_steps(20)
    handed: list[weakref.ref[np.ndarray]] = []
    recorder = Recorder("pending", out_dir=str(tmp_path), observation_space=RIG, handover=True,
                        image_keys_to_save=["camera_0", "camera_1"])
    with writer_held(recorder) as gate:
        for step in steps:
            fresh = {key: value.copy() for key, value in step.items()}
            handed.append(weakref.ref(fresh["camera_0"]))
            recorder.record(fresh)
            del fresh
        assert recorder._ring.held_rows == 20  # none copied yet
        threading.Timer(0.2, gate.set).start()
        recorder.close()  # waits for the writer, which copies, writes and encodes them all
    gc.collect()
    assert [ref for ref in handed if ref() is not None] == []
    check_file(recorder.filename, steps)
    for key in ("camera_0", "camera_1"):
        check_pngs(tmp_path / "pending_frames" / "observation" / key, [s[key] for s in steps])
