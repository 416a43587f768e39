"""Crash consistency at every write: a recording's writes are logged, then replayed.

A child process records with the file opened through h5py's ``fileobj`` driver on a file
object that logs every write and truncation HDF5 makes (``LOGGED_OPEN``). The test then
rebuilds the file as a crash after each logged call would leave it and checks every one of
those states: it opens as it is, or after ``recover``; every row below ``size`` is exactly
what was recorded; and ``size`` never falls below a size an earlier state already held (a
crash loses only the commit in flight).

Model: a killed process (every write made before the crash is on disk, as the page cache
keeps it). States before the file is placed (it is built in memory, then renamed into place)
have no file at the path: nothing to check there.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from h5recorder._recover import recover
from h5recorder.workloads import photo_frames

FRAMES = 16
SEED = 11

# Runs in the child before the recorder: every write HDF5 makes to the recording is logged
# as kind (1 byte: w, t), offset (8), length (8), data. The file's bytes when it is opened
# for writing (the placed image) come first, as a write at offset 0.
LOGGED_OPEN = """
import io, os, struct
import h5py
from h5recorder import _writer

LOG = os.open(os.environ["H5RECORDER_WRITE_LOG"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

def log(kind, offset, data=b""):
    os.write(LOG, kind + struct.pack("<qq", offset, len(data)) + data)

class LoggedFile(io.FileIO):
    def __repr__(self):  # h5py names the file after it; the writer finds its folder there
        return str(self.name)

    def write(self, data):
        log(b"w", self.tell(), bytes(data))
        return super().write(data)

    def truncate(self, size=None):
        log(b"t", self.tell() if size is None else size)
        return super().truncate(size)

def open_logged(path):
    with open(path, "rb") as placed:
        log(b"w", 0, placed.read())
    return h5py.File(LoggedFile(path, "r+"), "r+")

_writer.open_file = open_logged
"""

CHILD = """
import sys, time
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder
from h5recorder.workloads import photo_frames

out_dir, steps, rate, interval, saved = sys.argv[1:6]
frames = photo_frames(16, 48, 64, seed=11)
space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                     "joints": spaces.Box(-np.inf, np.inf, (3,), np.float64),
                     "note": spaces.Text(20)})
recorder = Recorder("replay", out_dir=out_dir, observation_space=space,
                    commit_interval=float(interval),
                    image_keys_to_save=saved.split(",") if saved else [])
start = time.perf_counter()
for i in range(int(steps)):
    recorder.record({"image": frames[i % 16], "joints": np.array([i, i / 2, -i], float),
                     "note": f"n{i}"})
    while time.perf_counter() < start + (i + 1) / float(rate):
        time.sleep(0.0002)
recorder.close()
"""


def record_logged(tmp_path: Path, steps: int, rate: float, interval: float, frames: bool) -> Path:
    """Record in a child process with every write logged; return the log."""
    log = tmp_path / "writes.log"
    out = tmp_path / "recording"
    subprocess.run(
        [sys.executable, "-c", LOGGED_OPEN + CHILD, str(out), str(steps), str(rate),
         str(interval), "image" if frames else ""],
        env={**os.environ, "H5RECORDER_WRITE_LOG": str(log)},
        check=True,
        timeout=300,
    )
    return log


def read_log(path: Path) -> list[tuple[bytes, int, bytes]]:
    raw = path.read_bytes()
    calls, at = [], 0
    while at < len(raw):
        kind = raw[at : at + 1]
        offset, length = struct.unpack_from("<qq", raw, at + 1)
        at += 17
        calls.append((kind, offset, raw[at : at + length]))
        at += length
    return calls


def rows_exact(path: Path, frames: np.ndarray) -> int:
    """Open ``path`` as it is, check every row below ``size``; return ``size``."""
    with h5py.File(path, "r", locking=False) as file:
        size = int(file.attrs["size"])
        images = file["observation/image"][:size]
        joints = file["observation/joints"][:size]
        notes = file["observation/note"][:size]
    steps = np.arange(size)
    if not np.array_equal(images, frames[steps % FRAMES]):
        raise AssertionError("image rows below size differ from what was recorded")
    if not np.array_equal(joints, np.stack([steps, steps / 2, -steps], axis=1)):
        raise AssertionError("joint rows below size differ from what was recorded")
    if [note.decode() for note in notes] != [f"n{i}" for i in steps]:
        raise AssertionError("note rows below size differ from what was recorded")
    return size


def recovered(state: Path, mended: Path, frames: np.ndarray) -> int:
    """Run ``recover`` on a copy of ``state``; check it; return its ``size``."""
    shutil.copyfile(state, mended)
    recover(mended)
    size = rows_exact(mended, frames)
    with h5py.File(mended, "r", locking=False) as file:
        lengths = {name: file[name].shape[0] for name in LEAVES}
    assert set(lengths.values()) == {size}, f"recover left {lengths} rows for size {size}"
    return size


LEAVES = ("observation/image", "observation/joints", "observation/note")


def replay(log: Path, work: Path, frames: np.ndarray) -> dict[str, int]:
    """Check the state after every logged call; return counts by outcome.

    Every state is also recovered (on a copy): ``recover`` must keep a state that opens as
    it is at its ``size``, and trim every dataset to exactly ``size`` rows.
    """
    calls = read_log(log)
    state, mended = work / "state.h5", work / "mended.h5"
    state.write_bytes(b"")
    counts = {"as it is": 0, "after recover": 0}
    committed = 0  # the largest size an earlier state held
    with open(state, "r+b") as out:
        for cut, (kind, offset, data) in enumerate(calls, 1):
            if kind == b"w":
                out.seek(offset)
                out.write(data)
            else:
                out.truncate(offset)
            out.flush()
            where = f"crash after call {cut} of {len(calls)} ({kind.decode()} at {offset})"
            try:
                size: int | None = rows_exact(state, frames)
            except Exception as error:  # noqa: BLE001 - the reason goes into the failure
                size, as_is = None, error
            try:
                size_recovered = recovered(state, mended, frames)
            except Exception as error:
                reason = "opens as it is" if size is not None else f"as it is: {as_is!r}"
                raise AssertionError(f"{where}: {reason}; after recover: {error!r}") from error
            if size is None:
                counts["after recover"] += 1
            else:
                counts["as it is"] += 1
                assert size_recovered == size, (
                    f"{where}: recover changed size {size} of a file that opens as it is "
                    f"to {size_recovered}"
                )
            assert size_recovered >= committed, (
                f"{where}: size {size_recovered} is below {committed}, which an earlier state "
                "already held"
            )
            committed = size_recovered
    counts["crash points"] = len(calls)
    counts["final size"] = committed
    return counts


@pytest.fixture(scope="module")
def replay_frames() -> np.ndarray:
    return photo_frames(FRAMES, 48, 64, seed=SEED)


def test_every_crash_point_of_a_short_recording_opens_with_exact_rows(tmp_path, replay_frames):
    log = record_logged(tmp_path, steps=400, rate=1000, interval=0.03, frames=False)
    counts = replay(log, tmp_path, replay_frames)
    assert counts["final size"] == 400
    assert counts["crash points"] > 100, counts  # commits, not just creation and close


@pytest.mark.slow
def test_every_crash_point_of_seconds_of_frames_opens_with_exact_rows(tmp_path, replay_frames):
    log = record_logged(tmp_path, steps=2000, rate=500, interval=0.1, frames=True)
    counts = replay(log, tmp_path, replay_frames)
    assert counts["final size"] == 2000
    assert counts["crash points"] > 400, counts
