"""Crash safety with real processes: kill -9 mid-recording, and exit without close()."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from gymnasium import spaces

import h5recorder
from h5recorder import Recorder, RecoveryError
from h5recorder._tools.cli import main
from h5recorder._write.recover import recover
from h5recorder.workloads import photo_frames

RATE = 500
COMMIT_INTERVAL = 0.25

CHILD = """
import signal, sys, time
# as in a terminal, even when the test runner was started with SIGINT ignored (a background job)
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder
from h5recorder.workloads import photo_frames

out_dir, rate, interval, close = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
frames = photo_frames(16, 48, 64, seed=11)
space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                     "joints": spaces.Box(-np.inf, np.inf, (3,), np.float64),
                     "note": spaces.Text(20)})
recorder = Recorder("crash", out_dir=out_dir, observation_space=space, commit_interval=interval)
print("ready", flush=True)
start = time.perf_counter()
limit = int(sys.argv[5])
for i in range(limit):
    recorder.record({"image": frames[i % 16], "joints": np.array([i, i / 2, -i], float),
                     "note": f"n{i}"})
    if i % 25 == 0:
        print(i + 1, flush=True)
    while time.perf_counter() < start + (i + 1) / rate:
        pass
if close == "close":
    recorder.close()
print("done", flush=True)
"""


def start_child(out_dir: Path, close: str = "close", limit: int = 10**9) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(out_dir),
            str(RATE),
            str(COMMIT_INTERVAL),
            close,
            str(limit),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def check_rows(path: Path, frames: np.ndarray) -> int:
    """Open the file as it is and check every row below ``size``; return ``size``."""
    with h5py.File(path, "r") as file:
        size = int(file.attrs["size"])
        for name in ("observation/image", "observation/joints", "observation/note"):
            assert file[name].shape[0] >= size, name
        images = file["observation/image"][:size]
        joints = file["observation/joints"][:size]
        notes = file["observation/note"][:size]
    steps = np.arange(size)
    np.testing.assert_array_equal(images, frames[steps % 16])
    np.testing.assert_array_equal(joints, np.stack([steps, steps / 2, -steps], axis=1))
    assert [note.decode() for note in notes] == [f"n{i}" for i in steps]
    return size


def kill_and_check(tmp_path: Path, delay: float, frames: np.ndarray) -> None:
    child = start_child(tmp_path)
    assert child.stdout is not None
    os.set_blocking(child.stdout.fileno(), False)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    printed = [int(line) for line in (child.stdout.read() or "").split() if line.isdigit()]
    child.stdout.close()
    recorded = max(printed, default=0)
    size = check_rows(tmp_path / "crash.h5", frames)
    # one commit interval, plus scheduling slack: the child busy-waits and holds the GIL
    lost_at_most = int(RATE * (COMMIT_INTERVAL + 1.0)) + 25
    assert size >= recorded - lost_at_most, (size, recorded)
    result = subprocess.run(
        [sys.executable, "-m", "h5recorder._tools.cli", "recover", str(tmp_path / "crash.h5")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{size} steps readable" in result.stdout
    with h5py.File(tmp_path / "crash.h5", "r") as file:
        assert all(
            file[name].shape[0] == size
            for name in ("observation/image", "observation/joints", "observation/note")
        )
    assert check_rows(tmp_path / "crash.h5", frames) == size


@pytest.fixture(scope="module")
def crash_frames() -> np.ndarray:
    return photo_frames(16, 48, 64, seed=11)


@pytest.mark.parametrize("attempt", range(3))
def test_kill_9_while_recording_leaves_a_readable_file(tmp_path, crash_frames, attempt):
    kill_and_check(tmp_path, random.Random(attempt).uniform(0.3, 2.0), crash_frames)


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3, 25))
def test_kill_9_sweep(tmp_path, crash_frames, attempt):
    kill_and_check(tmp_path, random.Random(attempt).uniform(0.05, 3.0), crash_frames)


def test_interpreter_exit_without_close_keeps_every_step(tmp_path, crash_frames):
    child = start_child(tmp_path, close="no", limit=321)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0 and "done" in out
    assert check_rows(tmp_path / "crash.h5", crash_frames) == 321
    with h5py.File(tmp_path / "crash.h5", "r") as file:
        assert file["observation/image"].shape[0] == 321


@pytest.mark.parametrize(
    "delay",
    [0.0, 0.1, *(pytest.param(delay, marks=pytest.mark.slow) for delay in (0.03, 0.25))],
)
def test_kill_9_during_close_leaves_a_readable_file(tmp_path, crash_frames, delay):
    """close() drains the ring, writes the last chunks, commits and waits for frames: a kill
    at any of those moments leaves the steps of the last commit readable."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.replace('print("done", flush=True)', ""), str(tmp_path),
         "100000", "0.25", "close", "3000"],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    last = 0
    for line in child.stdout:  # the child records flat out, then calls close()
        if line.strip().isdigit():
            last = int(line)
        if last >= 2976:
            break
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    size = check_rows(tmp_path / "crash.h5", crash_frames)
    result = subprocess.run(
        [sys.executable, "-m", "h5recorder._tools.cli", "recover", str(tmp_path / "crash.h5")],
        capture_output=True, text=True, check=True,
    )
    assert f"{size} steps readable" in result.stdout
    assert check_rows(tmp_path / "crash.h5", crash_frames) == size


LIVE_CHILD = """
import sys, time
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder

out_dir, steps = sys.argv[1], int(sys.argv[2])
space = spaces.Box(-np.inf, np.inf, (4,), np.float64)
recorder = Recorder("live", out_dir=out_dir, observation_space=space, image_keys_to_save=[],
                    commit_interval=0.05)

def record(first, last, seconds):
    start = time.perf_counter()
    for i in range(first, last):
        recorder.record(observation=np.array([i, -i, i / 2, 1.0]))
        while time.perf_counter() < start + (i - first + 1) * seconds / (last - first):
            pass

record(0, 50, 0.1)
recorder.flush()
print(recorder.filename, flush=True)
record(50, steps, 2.0)  # recover is tried meanwhile
recorder.flush()
print("paused", flush=True)
sys.stdin.readline()  # the file holds still: recover is tried again, bytes compared
record(steps, 2 * steps, 0.5)
recorder.close()
print("done", flush=True)
"""


def test_recover_refuses_a_file_another_process_records(tmp_path):
    """recover on a file being recorded refuses, names the process, changes no byte; the
    recording goes on and every step reads back."""
    steps = 2000
    child = subprocess.Popen(
        [sys.executable, "-c", LIVE_CHILD, str(tmp_path), str(steps)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        path = Path(child.stdout.readline().strip())
        refusals = 0
        ends = time.monotonic() + 1.5
        while time.monotonic() < ends:  # while it records
            with pytest.raises(RecoveryError, match=f"process {child.pid}"):
                recover(path)
            refusals += 1
            time.sleep(0.05)
        assert child.stdout.readline().strip() == "paused"
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        with pytest.raises(RecoveryError, match=f"process {child.pid}"):
            recover(path)
        assert main(["recover", str(path)]) == 1
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert refusals > 5
    with h5recorder.open(path) as episode:
        assert len(episode) == 2 * steps
        assert episode.health.ok, episode.health.problems
        values = np.asarray(episode["observation"])
    i = np.arange(2 * steps, dtype=np.float64)
    np.testing.assert_array_equal(values, np.stack([i, -i, i / 2, np.ones_like(i)], axis=1))


def test_recover_refuses_a_file_whose_live_sidecar_names_a_running_process(tmp_path):
    """Without the lock (a recorder between placing the file and locking it, or on a file
    system without locks), the ``.live`` sidecar's running pid is enough to refuse."""
    with Recorder("rest", out_dir=str(tmp_path), image_keys_to_save=[],
                  observation_space=spaces.Box(-1.0, 1.0, (2,), np.float64)) as recorder:
        recorder.record(observation=np.zeros(2))
    path = recorder.filename
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (path.parent / (path.name + ".live")).write_text(json.dumps({"pid": sleeper.pid}))
        before = path.read_bytes()
        with pytest.raises(RecoveryError, match=f"process {sleeper.pid} is recording it"):
            recover(path)
        assert path.read_bytes() == before
    finally:
        sleeper.kill()
        sleeper.wait()
    assert recover(path).size_after == 1  # its process gone: the file is at rest
