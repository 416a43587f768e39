"""The Recorder's API: lifecycle, errors, commits, counters, statistics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from gymnasium import spaces

import h5recorder
from h5recorder import (
    ClosedError,
    DiskFullError,
    Recorder,
    RecorderError,
    SchemaError,
    StepError,
    StepTypeError,
    WriterError,
)

SPACE = spaces.Dict(
    {
        "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
        "joints": spaces.Box(-1, 1, (3,), np.float32),
        "grip": spaces.Discrete(2),
        "instruction": spaces.Text(12),
        "level": spaces.Box(0, 255, (), np.uint8),
    }
)


def good_step(frames: np.ndarray, i: int) -> dict:
    return {
        "image": frames[i % len(frames)],
        "joints": np.float32([i / 100, 0.5, -0.5]),
        "grip": i % 2,
        "instruction": f"step {i}",
        "level": i % 250,
    }


def test_public_names_are_exact():
    assert h5recorder.__all__ == sorted(h5recorder.__all__)
    public = {name for name in dir(h5recorder) if not name.startswith("_")}
    public -= {"errors", "export", "native", "ray", "workloads"}
    assert public == set(h5recorder.__all__) - {"__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", h5recorder.__version__)


def test_the_reference_example_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    observation_space = spaces.Dict(
        {"image": spaces.Box(0, 255, (224, 224, 3), np.uint8), "instruction": spaces.Discrete(10)}
    )
    action_space = spaces.Dict(
        {
            "gripper_position": spaces.Box(-1, 1, (3,), np.float32),
            "gripper_action": spaces.Discrete(2),
        }
    )
    state_space = spaces.Dict(
        {
            "position": spaces.Box(-1, 1, (3,), np.float32),
            "velocity": spaces.Box(-1, 1, (3,), np.float32),
        }
    )
    recorder = Recorder(
        name="test_recorder",
        observation_space=observation_space,
        action_space=action_space,
        state_space=state_space,
    )
    rng = np.random.default_rng(0)
    for i in range(10):
        recorder.record(
            {"image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8), "instruction": i},
            {"gripper_position": np.zeros(3, np.float32), "gripper_action": 1},
            state={
                "position": rng.random(3).astype(np.float32),
                "velocity": rng.random(3).astype(np.float32),
            },
        )
    stats = recorder.save_stats()
    recorder.close()
    assert (tmp_path / "saved_datasets" / "test_recorder.h5").exists()
    assert (tmp_path / "saved_datasets" / "test_recorder_frames").is_dir()
    assert stats["observation/instruction"]["value_counts"].tolist() == [1] * 10
    with h5py.File(recorder.filename, "r") as file:
        assert file.attrs["size"] == 10
        assert file["observation/image"].shape[0] == 10, "exactly size rows, no doubling"
        assert file["observation/instruction"][:].tolist() == list(range(10))


def test_close_twice_and_record_after_close(tmp_path, frames):
    recorder = Recorder("twice", out_dir=str(tmp_path), observation_space=SPACE)
    recorder.record(good_step(frames, 0))
    recorder.close()
    recorder.close()
    with pytest.raises(ClosedError, match="after close"):
        recorder.record(good_step(frames, 1))
    with h5py.File(recorder.filename, "r") as file:
        assert file.attrs["size"] == 1


def test_context_manager_closes_and_keeps_steps_when_the_body_raises(tmp_path, frames):
    with pytest.raises(KeyError, match="boom"):
        with Recorder("ctx", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
            for i in range(7):
                recorder.record(good_step(frames, i))
            raise KeyError("boom")
    with h5py.File(recorder.filename, "r") as file:
        assert file.attrs["size"] == 7
        np.testing.assert_array_equal(file["observation/image"][6], frames[6])


def test_existing_file_is_moved_aside(tmp_path, frames):
    for run in range(2):
        with Recorder("again", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
            for i in range(run + 1):
                recorder.record(good_step(frames, i))
    files = sorted(p.name for p in tmp_path.glob("again*.h5"))
    assert len(files) == 2 and "again.h5" in files
    with h5py.File(tmp_path / "again.h5", "r") as file:
        assert file.attrs["size"] == 2


def test_reset_keeps_spaces_and_starts_at_zero(tmp_path, frames):
    space = spaces.Dict({"grip": spaces.Discrete(3), "image": SPACE["image"]})
    recorder = Recorder("episode", out_dir=str(tmp_path), observation_space=space)
    for i in range(5):
        recorder.record({"grip": i % 3, "image": frames[i]})
    recorder.reset()
    assert recorder.index == 0
    for i in range(3):
        recorder.record({"grip": 2, "image": frames[10 + i]})
    recorder.close()
    with h5py.File(recorder.filename, "r") as file:
        assert file.attrs["size"] == 3
        assert file["observation/grip"].dtype == np.int64
        assert file["observation/grip"].attrs["space_type"] == "Discrete"
        assert file["observation/grip"][:].tolist() == [2, 2, 2]
        np.testing.assert_array_equal(file["observation/image"][:], frames[10:13])
    old = [p for p in tmp_path.glob("episode*.h5") if p.name != "episode.h5"]
    assert len(old) == 1
    with h5py.File(old[0], "r") as file:
        assert file.attrs["size"] == 5
        np.testing.assert_array_equal(file["observation/image"][:], frames[:5])


BAD_VALUES = [
    (
        "image",
        np.zeros((48, 64), np.uint8),
        StepError,
        r"observation/image: expected shape \(48, 64, 3\)",
    ),
    (
        "joints",
        np.float64([1e300, 0, 0]),
        StepError,
        r"observation/joints: expected values that fit float32",
    ),
    (
        "level",
        np.int64(-1),
        StepError,
        r"observation/level: expected values that fit uint8 \(0..255\), got -1",
    ),
    ("level", 300, StepError, r"observation/level: .*got 300"),
    (
        "joints",
        np.int8([1, 2, 3]).astype(np.complex64),
        StepError,
        r"observation/joints: expected dtype float32",
    ),
    ("grip", 2, StepError, r"observation/grip: expected an integer in \[0, 2\), got 2"),
    ("grip", 1.0, StepTypeError, r"observation/grip: expected an integer, got float"),
    ("instruction", "x" * 13, StepError, r"observation/instruction: expected a str of at most 12"),
    ("instruction", 5, StepTypeError, r"observation/instruction: expected a str, got int"),
    (
        "joints",
        "fast",
        StepTypeError,
        r"observation/joints: expected shape \(3,\) and dtype float32, got str",
    ),
]


def test_a_bad_step_is_rejected_whole_and_the_recorder_keeps_working(tmp_path, frames):
    """Each bad value in turn, between good steps, on one recorder: the error names the key
    and what was expected, nothing of the bad step is written, and the next step records."""
    with Recorder("bad", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        recorder.record(good_step(frames, 0))
        for n, (key, value, error, message) in enumerate(BAD_VALUES, start=1):
            bad = good_step(frames, n)
            bad[key] = value
            with pytest.raises(error, match=message) as caught:
                recorder.record(bad)
            assert isinstance(caught.value, RecorderError), key
            assert isinstance(caught.value, ValueError), key
            assert recorder.index == n, key
            recorder.record(good_step(frames, n))
    steps = len(BAD_VALUES) + 1
    with h5py.File(recorder.filename, "r") as file:
        assert file.attrs["size"] == steps
        np.testing.assert_array_equal(file["observation/image"][:], frames[:steps])
        assert file["observation/grip"][:].tolist() == [i % 2 for i in range(steps)]
        assert file["observation/level"][:].tolist() == list(range(steps))
        assert [s.decode() for s in file["observation/instruction"][:]] == [
            f"step {i}" for i in range(steps)
        ]


def test_safe_casts_and_nan_are_recorded_as_is(tmp_path, frames):
    with Recorder("casts", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        step = good_step(frames, 0)
        step["joints"] = np.float64([np.nan, 0.25, -np.inf])
        step["level"] = np.int64(200)
        recorder.record(step)
    with h5py.File(recorder.filename, "r") as file:
        joints = file["observation/joints"][0]
        assert np.isnan(joints[0]) and joints[1] == 0.25 and joints[2] == -np.inf
        assert file["observation/level"][0] == 200


def test_unknown_keys_warn_once_and_missing_keys_are_filled_and_counted(tmp_path, frames):
    with Recorder("keys", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        with pytest.warns(UserWarning, match="observation/extra"):
            recorder.record({**good_step(frames, 0), "extra": 1})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            recorder.record({**good_step(frames, 1), "extra": 2})
        partial = good_step(frames, 2)
        del partial["joints"]
        recorder.record(partial)
        assert recorder.status().missing_values == 1
    with h5py.File(recorder.filename, "r") as file:
        assert file["observation/joints"][2].tolist() == [0, 0, 0]
        assert json.loads(file.attrs["recorder_status"])["missing_values"] == 1


def test_strict_mode_rejects_unknown_keys(tmp_path, frames):
    with Recorder(
        "strict", out_dir=str(tmp_path), observation_space=SPACE, strict=True
    ) as recorder:
        with pytest.raises(StepError, match="observation/extra: expected one of the keys"):
            recorder.record({**good_step(frames, 0), "extra": 1})
        recorder.record(good_step(frames, 1))
    with h5py.File(recorder.filename, "r") as file:
        assert file.attrs["size"] == 1


def test_undeclared_root_after_the_first_step_is_refused(tmp_path, frames):
    with Recorder("roots", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        recorder.record(good_step(frames, 0))
        with pytest.raises(SchemaError, match="action: this root was neither declared"):
            recorder.record(good_step(frames, 1), action={"x": 1.0})
        recorder.record(good_step(frames, 2))
        assert recorder.index == 2


def test_bad_options_and_spaces_are_refused_at_construction(tmp_path):
    with pytest.raises(SchemaError, match="compression: expected"):
        Recorder("o", out_dir=str(tmp_path), compression="snappy")
    with pytest.raises(ValueError, match="on_full"):
        Recorder("o", out_dir=str(tmp_path), on_full="maybe")
    with pytest.raises(SchemaError, match="cannot record a Graph space"):
        Recorder(
            "o",
            out_dir=str(tmp_path),
            observation_space=spaces.Dict({"g": spaces.Graph(spaces.Box(0, 1, (2,)), None)}),
        )


READ_LIVE = """
import json, sys, h5py, hdf5plugin
with h5py.File(sys.argv[1], "r", locking=False) as f:
    status = json.loads(f.attrs["recorder_status"])
    print(f.attrs["size"], status["commits"], int(f["observation/image"][29].sum()))
"""


def test_commits_happen_while_recording(tmp_path, frames):
    recorder = Recorder(
        "commits", out_dir=str(tmp_path), observation_space=SPACE, commit_interval=0.1
    )
    try:
        for i in range(30):
            recorder.record(good_step(frames, i))
        deadline = time.monotonic() + 5
        while recorder.status().rows_committed < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        # another process reads the live file, as a monitoring tool would
        reader = subprocess.run(
            [sys.executable, "-c", READ_LIVE, str(recorder.filename)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        size, commits, checksum = reader.stdout.split()
        assert int(size) == 30 and int(commits) >= 1
        assert int(checksum) == int(frames[29 % len(frames)].sum())
    finally:
        recorder.close()


def test_status_counts_and_health_are_stored(tmp_path, frames):
    with Recorder("health", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        for i in range(50):
            recorder.record(good_step(frames, i))
            time.sleep(0.001)
        time.sleep(0.02)
        recorder.record(good_step(frames, 50))
        status = recorder.status()
        assert status.steps == 51
    with h5py.File(recorder.filename, "r") as file:
        attrs = json.loads(file.attrs["recorder_status"])
        assert attrs["steps"] == 51
        assert attrs["rows_committed"] == 51
        assert attrs["bytes_raw"] >= 51 * 48 * 64 * 3
        assert 0 < attrs["bytes_written"]
        assert attrs["drops"] == 0
        assert 1e3 <= attrs["interval_p50_us"] <= 20e3
        assert attrs["longest_gap_s"] >= 0.02
        assert 10 < attrs["steps_per_second"] < 1000


def test_a_writer_failure_surfaces_in_the_callers_thread(tmp_path, frames):
    recorder = Recorder(
        "full",
        out_dir=str(tmp_path),
        observation_space=SPACE,
        min_free_bytes=1 << 60,
        commit_interval=0.05,
    )
    recorder.record(good_step(frames, 0))
    deadline = time.monotonic() + 10
    with pytest.raises(DiskFullError, match=r"MiB free in .*needs") as caught:
        while time.monotonic() < deadline:
            recorder.record(good_step(frames, 1))
            time.sleep(0.01)
    assert isinstance(caught.value, WriterError) and isinstance(caught.value, OSError)
    assert isinstance(caught.value.__cause__, DiskFullError)
    with pytest.raises(DiskFullError):
        recorder.close()
    recorder.close()


def _writer_fails_with(monkeypatch, error: Exception) -> None:
    """The writer thread raises ``error`` the first time it drains the ring."""
    from h5recorder._write import writer as _writer

    def drain(self):
        raise error

    monkeypatch.setattr(_writer.Writer, "drain", drain)


def test_a_frame_error_of_the_writer_reaches_the_caller_as_itself(tmp_path, frames, monkeypatch):
    """An error class whose constructor takes other arguments than a message (FrameError:
    path, step, reason) keeps its class and fields, in record() and in close()."""
    from h5recorder._write.frames import FrameError

    original = FrameError("frames/000003.png", 3, "encoder gone")
    _writer_fails_with(monkeypatch, original)
    recorder = Recorder("frame", out_dir=str(tmp_path), observation_space=SPACE)
    deadline = time.monotonic() + 10
    with pytest.raises(FrameError) as caught:
        while time.monotonic() < deadline:
            recorder.record(good_step(frames, 0))
            time.sleep(0.01)
    raised = caught.value
    assert (raised.path, raised.step, raised.reason) == ("frames/000003.png", 3, "encoder gone")
    assert str(raised) == str(original) and raised.__cause__ is original
    with pytest.raises(FrameError) as at_close:
        recorder.close()
    assert at_close.value.path == "frames/000003.png" and at_close.value.__cause__ is original


def test_reset_keeps_the_class_of_the_writers_error(tmp_path, frames):
    recorder = Recorder(
        "full", out_dir=str(tmp_path), observation_space=SPACE, min_free_bytes=1 << 60
    )
    recorder.record(good_step(frames, 0))
    with pytest.raises(DiskFullError, match=r"MiB free in .*needs") as caught:
        recorder.reset()
    assert isinstance(caught.value.__cause__, DiskFullError)
    recorder.close()


_OUTSIDE_SCRIPT = """
import sys
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder

space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                     "joints": spaces.Box(-1, 1, (3,), np.float32)})
with Recorder("inside", out_dir=sys.argv[1], observation_space=space) as recorder:
    for i in range(300):
        recorder.record({"image": np.full((48, 64, 3), i % 256, np.uint8),
                         "joints": np.full(3, i / 300, np.float32)})
"""


def _site_packages_state() -> dict[str, tuple[float, int, bytes]]:
    """Every entry at the top of site-packages: mtime, size and, for .pth files, content."""
    import site

    state = {}
    for folder in {*site.getsitepackages(), site.getusersitepackages()}:
        for path in sorted(Path(folder).glob("*")) if Path(folder).is_dir() else []:
            info = path.stat()
            content = path.read_bytes() if path.suffix == ".pth" else b""
            state[str(path)] = (info.st_mtime, info.st_size, content)
    return state


def test_a_recorder_writes_nothing_outside_its_folder(tmp_path):
    """Recording (frames, ring in shared memory, live socket) leaves site-packages, the
    temporary folder, the working folder and /dev/shm as they were."""
    out, temporary, work = tmp_path / "out", tmp_path / "tmp", tmp_path / "work"
    temporary.mkdir()
    work.mkdir()
    before = _site_packages_state()
    child = subprocess.Popen(
        [sys.executable, "-c", _OUTSIDE_SCRIPT, str(out)], cwd=work,
        env={**os.environ, "TMPDIR": str(temporary)}, stderr=subprocess.PIPE, text=True,
    )
    _, stderr = child.communicate(timeout=180)
    assert child.returncode == 0, stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["inside.h5", "inside_frames"]
    assert len(list((out / "inside_frames").iterdir())) == 300
    assert _site_packages_state() == before
    assert list(work.iterdir()) == []
    # the folder of the live sockets stays (other recorders may be binding in it), empty
    left = sorted(str(p.relative_to(temporary)) for p in temporary.rglob("*"))
    assert left in ([], [f"h5recorder-live-{os.getuid()}"]), left
    shm = Path("/dev/shm")
    if shm.is_dir():
        assert not list(shm.glob(f"h5rec_{child.pid}_*"))


def test_drop_policy_counts_what_it_drops(tmp_path, frames):
    recorder = Recorder(
        "drop", out_dir=str(tmp_path), observation_space=SPACE, on_full="drop", buffer_bytes=1 << 16
    )
    for i in range(400):
        recorder.record(good_step(frames, i))
    recorder.close()
    status = recorder.status()
    assert status.steps + status.drops == 400
    with h5py.File(recorder.filename, "r") as file:
        assert file.attrs["size"] == status.steps == recorder.index
        assert json.loads(file.attrs["recorder_status"])["drops"] == status.drops


def test_record_timestep_writes_user_groups_directly(tmp_path, frames):
    recorder = Recorder("direct", out_dir=str(tmp_path), observation_space=SPACE)
    extra = recorder.file.create_group("extra")
    extra.create_dataset("reward", shape=(0,), maxshape=(None,), dtype=np.float32)
    for i in range(4):
        recorder.record(good_step(frames, i))
        recorder.record_timestep(extra, {"reward": i * 0.5}, i)
    recorder.close()
    with h5py.File(recorder.filename, "r") as file:
        assert file["extra/reward"][:].tolist() == [0.0, 0.5, 1.0, 1.5]
        assert file.attrs["size"] == 4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int64])
def test_save_stats_agree_with_numpy_on_the_whole_data(tmp_path, frames, dtype):
    rng = np.random.default_rng(5)
    if dtype in (np.uint8, np.uint16):
        scale = 1 if dtype == np.uint8 else 257
        data = frames.astype(np.uint16).astype(dtype) * dtype(scale)
        data = np.concatenate([data] * 3)
        space = spaces.Box(0, np.iinfo(dtype).max, data.shape[1:], dtype)
    elif dtype == np.float32:
        data = (rng.normal(1e4, 1e-2, (700, 5))).astype(np.float32)
        space = spaces.Box(-np.inf, np.inf, (5,), np.float32)
    else:
        data = rng.integers(-(10**12), 10**12, (700, 2))
        space = spaces.Box(-(10**13), 10**13, (2,), np.int64)
    counts = rng.integers(0, 4, len(data))
    obs_space = spaces.Dict({"x": space, "d": spaces.Discrete(4)})
    with Recorder(
        "stats", out_dir=str(tmp_path), observation_space=obs_space, chunk_bytes=4096
    ) as recorder:
        for row, value in zip(data, counts, strict=True):
            recorder.record({"x": row, "d": int(value)})
        stats = recorder.save_stats()
    axis = (0, 1, 2) if data.ndim == 4 else 0
    wide = data.astype(np.float64)
    x = stats["observation/x"]
    assert x["count"] == len(data)
    np.testing.assert_allclose(x["mean"], wide.mean(axis=axis), rtol=1e-12)
    np.testing.assert_allclose(x["std"], wide.std(axis=axis), rtol=1e-9)
    np.testing.assert_array_equal(x["min"], wide.min(axis=axis))
    np.testing.assert_array_equal(x["max"], wide.max(axis=axis))
    assert (
        stats["observation/d"]["value_counts"].tolist() == np.bincount(counts, minlength=4).tolist()
    )
    with h5py.File(recorder.filename, "r") as file:
        np.testing.assert_allclose(file["observation/x"].attrs["stats_mean"], wide.mean(axis=axis))
        assert "stats" not in file, "statistics never add a root group"


def test_statistics_of_a_leaf_too_large_for_a_compact_attribute(tmp_path):
    # per-element statistics of a 120x160 float32 depth map are 150 KiB per attribute, past
    # the 64 KiB an HDF5 object header message can hold in the file format of HDF5 1.6
    from h5recorder.workloads import photo_frames

    gray = photo_frames(40, 120, 160, seed=8).mean(axis=-1)
    noise = np.random.default_rng(8).normal(0, 0.004, gray.shape)
    depth = (0.3 + gray / 64 + noise).astype(np.float32)
    space = spaces.Dict({"depth": spaces.Box(0, 10, (120, 160), np.float32)})
    with Recorder("depth", out_dir=str(tmp_path), observation_space=space) as recorder:
        for row in depth:
            recorder.record({"depth": row})
        stats = recorder.save_stats()["observation/depth"]
    wide = depth.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], wide.mean(axis=0), rtol=1e-12)
    with h5py.File(recorder.filename, "r") as file:
        stored = file["observation/depth"].attrs
        assert stored["stats_mean"].shape == (120, 160)
        np.testing.assert_allclose(stored["stats_std"], wide.std(axis=0), rtol=1e-9)
        np.testing.assert_array_equal(stored["stats_max"], wide.max(axis=0))
        np.testing.assert_array_equal(file["observation/depth"][:], depth)


def test_a_second_recorder_on_the_same_file_is_refused(tmp_path, frames):
    first = Recorder("same", out_dir=str(tmp_path), observation_space=SPACE)
    first.record(good_step(frames, 0))
    with pytest.raises(RecorderError, match=r"same\.h5 is being recorded by"):
        Recorder("same", out_dir=str(tmp_path), observation_space=SPACE)
    first.record(good_step(frames, 1))
    first.close()
    with h5py.File(first.filename, "r") as file:
        assert file.attrs["size"] == 2
    OTHER = (
        "import sys; from h5recorder import Recorder, RecorderError\n"
        "try:\n    Recorder('same', out_dir=sys.argv[1])\n"
        "except RecorderError as error:\n    print('refused:', error)\n"
    )
    held = Recorder("same", out_dir=str(tmp_path), observation_space=SPACE)
    try:
        result = subprocess.run([sys.executable, "-c", OTHER, str(tmp_path)],
                                capture_output=True, text=True, timeout=60, check=True)
        assert "refused:" in result.stdout and "another process" in result.stdout
    finally:
        held.close()


def test_a_small_ring_that_wraps_often_loses_nothing(tmp_path):
    """Chunks are written whole from the ring when they lie in one piece there, and through
    the staging buffer otherwise; a small ring mixes both at every wrap."""
    from h5recorder.workloads import photo_frames

    data = photo_frames(300, 48, 64, seed=9)
    space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                         "grip": spaces.Discrete(3)})
    with Recorder("wraps", out_dir=str(tmp_path), observation_space=space, image_keys_to_save=[],
                  buffer_bytes=1 << 16, chunk_bytes=4 * 48 * 64 * 3) as recorder:
        assert recorder.status().ring_capacity < 300
        for i, frame in enumerate(data):
            recorder.record({"image": frame, "grip": i % 3})
        stats = recorder.save_stats()
    with h5py.File(recorder.filename, "r") as file:
        assert file["observation/image"].chunks[0] == 4
        np.testing.assert_array_equal(file["observation/image"][:], data)
        assert file["observation/grip"][:].tolist() == [i % 3 for i in range(300)]
    wide = data.astype(np.float64)
    np.testing.assert_allclose(stats["observation/image"]["mean"], wide.mean(axis=(0, 1, 2)),
                               rtol=1e-12)
    np.testing.assert_allclose(stats["observation/image"]["std"], wide.std(axis=(0, 1, 2)),
                               rtol=1e-9)
    assert stats["observation/grip"]["value_counts"].tolist() == [100, 100, 100]


# ---- other local users ----------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, timeout=60, check=True)
    return int(child.stdout)


def record_a_few(tmp_path, frames, name: str) -> None:
    with Recorder(name, out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        for i in range(3):
            recorder.record(good_step(frames, i))
    with h5recorder.open(recorder.filename) as episode:
        assert len(episode) == 3


@pytest.fixture
def shm_dir(tmp_path, monkeypatch):
    """A private stand-in for ``/dev/shm``: other recorders on the machine sweep the real one."""
    from h5recorder._write import ring as _ring

    folder = tmp_path / "shm"
    folder.mkdir(mode=0o1777)
    monkeypatch.setattr(_ring, "SHM_DIR", folder)
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root")
def test_a_stale_segment_of_another_user_is_left_alone(tmp_path, frames, shm_dir):
    from h5recorder._write.ring import SHM_PREFIX

    pid = dead_pid()
    ours = shm_dir / f"{SHM_PREFIX}{pid}_{os.urandom(4).hex()}_ours"
    theirs = shm_dir / f"{SHM_PREFIX}{pid}_{os.urandom(4).hex()}_theirs"
    ours.touch()
    theirs.touch()
    os.chown(theirs, 65534, 65534)
    record_a_few(tmp_path, frames, "foreign")
    assert not ours.exists(), "this user's stale segment is swept"
    assert theirs.exists(), "another user's file is not ours to remove"


def test_a_stale_segment_that_cannot_be_removed_does_not_stop_the_recorder(
        tmp_path, frames, shm_dir, monkeypatch):
    """Anyone can create ``/dev/shm/h5rec_<pid>_...``; removing it may be refused."""
    from pathlib import Path

    from h5recorder._write.ring import SHM_PREFIX

    stuck = shm_dir / f"{SHM_PREFIX}{dead_pid()}_{os.urandom(4).hex()}_stuck"
    stuck.touch()
    unlink = Path.unlink

    def refuse(self, missing_ok=False):
        if self == stuck:
            raise PermissionError(1, "Operation not permitted", str(self))
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    record_a_few(tmp_path, frames, "stuck")
    assert stuck.exists()


def test_a_symlink_planted_at_the_temporary_name_is_not_written_through(tmp_path, frames):
    """The new file was written to ``.<stem>.<pid>.creating.h5``, a name anyone could plant."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / f".planted.{os.getpid()}.creating.h5").symlink_to(victim)
    record_a_few(tmp_path, frames, "planted")
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "planted.h5").is_symlink()
