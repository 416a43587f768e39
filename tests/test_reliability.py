"""Faults inflicted on real recorders (real files, real processes), and what must survive them.

Signals, a full disk, odd values, misuse from threads and a second recorder, long runs under a
memory budget, a reader watching the live file, readers without hdf5plugin, and hypothesis
round trips of random nested spaces. Rows where the recorder falls short today are written as
they should be and marked ``xfail(strict=True)`` with what happens instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from h5recorder import Recorder, RecorderError

PYTHON = sys.executable


def run_python(
    code: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    flags: tuple[str, ...] = (),
):
    return subprocess.run(
        [PYTHON, *flags, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def decode_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# -- signals ---------------------------------------------------------------------------------

SIGNAL_CHILD = """
import signal, sys, time
# as in a terminal, even when the test runner was started with SIGINT ignored (a background job)
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder
from h5recorder.workloads import photo_frames

out_dir = sys.argv[1]
frames = photo_frames(8, 48, 64, seed=5)
space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                     "joints": spaces.Box(-np.inf, np.inf, (3,), np.float64)})
i = 0
try:
    # a long commit interval: whatever is on disk at the end was written by close()
    with Recorder("sig", out_dir=out_dir, observation_space=space, commit_interval=30.0) as rec:
        print("ready", flush=True)
        while True:
            rec.record({"image": frames[i % 8], "joints": np.array([i, i / 2, -i], float)})
            i += 1
            print(i, flush=True)
            time.sleep(0.002)
except KeyboardInterrupt:
    print("interrupted", i, flush=True)
    sys.exit(130)
"""


def signal_child(tmp_path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [PYTHON, "-c", SIGNAL_CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job is
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # a few hundred steps, all after the last commit
    return child


def check_signal_outcome(tmp_path: Path, out: str) -> int:
    """Every step the child was told was accepted is in the file and in the PNG folder."""
    accepted = max(int(word) for word in out.split() if word.isdigit())
    assert accepted > 50, out[-300:]
    frames = __import__("h5recorder.workloads", fromlist=["photo_frames"]).photo_frames(
        8, 48, 64, seed=5
    )
    with h5py.File(tmp_path / "sig.h5", "r") as file:
        size = int(file.attrs["size"])
        # a signal landing inside record() may leave one more step accepted than was printed
        assert accepted <= size <= accepted + 1, (size, accepted)
        assert file["observation/image"].shape[0] == size
        steps = np.arange(size)
        np.testing.assert_array_equal(file["observation/image"][:], frames[steps % 8])
        np.testing.assert_array_equal(
            file["observation/joints"][:], np.stack([steps, steps / 2, -steps], axis=1)
        )
    names = set(os.listdir(tmp_path / "sig_frames"))
    assert names == {f"{i}.png" for i in range(size)}
    np.testing.assert_array_equal(decode_png(tmp_path / "sig_frames" / f"{size - 1}.png"),
                                  frames[(size - 1) % 8])
    return size


def wait_group_gone(pgid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail("processes of the recorder's group outlived it (PNG workers left behind)")


def test_ctrl_c_closes_cleanly_with_every_step_and_frame_on_disk(tmp_path):
    child = signal_child(tmp_path)
    os.killpg(child.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err[-2000:]
    assert "interrupted" in out
    assert "Traceback" not in err, err[-2000:]
    check_signal_outcome(tmp_path, out)
    wait_group_gone(child.pid)


def test_sigterm_closes_cleanly_with_every_step_and_frame_on_disk(tmp_path):
    child = signal_child(tmp_path)
    child.send_signal(signal.SIGTERM)  # what systemd, docker stop and kill send
    out, _ = child.communicate(timeout=60)
    assert child.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM, 0, 1), child.returncode
    try:
        check_signal_outcome(tmp_path, out)
    finally:
        wait_group_gone(child.pid)


# -- disk full -------------------------------------------------------------------------------

DISK_FULL_CHILD = """
import json, resource, signal, sys, time
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder

out_dir, fsize, min_free = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
bank = np.random.default_rng(0).random((997, 256))  # hardly compresses, as real data
space = spaces.Dict({"x": spaces.Box(-np.inf, np.inf, (256,), np.float64)})
recorder = Recorder("full", out_dir=out_dir, observation_space=space, commit_interval=0.05,
                    image_keys_to_save=[], min_free_bytes=min_free)
if fsize:
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
report = {"record_error": None, "close_error": None}
i = 0
deadline = time.monotonic() + 30
try:
    while time.monotonic() < deadline:
        recorder.record({"x": bank[i % 997] + i})
        i += 1
        if i % 100 == 0:
            time.sleep(0.01)
except Exception as error:
    report["record_error"] = [type(error).__name__, str(error)[:500]]
report["accepted"] = i
report["committed"] = recorder.status().rows_committed
try:
    recorder.close()
except Exception as error:
    report["close_error"] = [type(error).__name__, str(error)[:500]]
del recorder
import gc; gc.collect()
print(json.dumps(report), flush=True)
"""


def run_disk_full(out_dir: Path, fsize: int, min_free: int) -> dict[str, Any]:
    result = run_python(DISK_FULL_CHILD, str(out_dir), str(fsize), str(min_free))
    assert result.returncode == 0, f"the process crashed: {result.returncode}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_committed_rows(path: Path) -> int:
    bank = np.random.default_rng(0).random((997, 256))
    with h5py.File(path, "r") as file:
        size = int(file.attrs["size"])
        rows = file["observation/x"][:size]
    steps = np.arange(size)
    np.testing.assert_array_equal(rows, bank[steps % 997] + steps[:, None])
    return size


def test_file_size_limit_raises_clearly_and_keeps_earlier_commits(tmp_path):
    report = run_disk_full(tmp_path, 2_000_000, 0)
    error = report["record_error"] or report["close_error"]
    assert error is not None, report
    assert error[0] in ("WriterError", "DiskFullError"), error
    assert "File too large" in error[1] or "free" in error[1], error
    assert report["committed"] > 0, report
    size = check_committed_rows(tmp_path / "full.h5")
    assert size >= report["committed"] - 1, (size, report)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_tmpfs_raises_disk_full_and_keeps_earlier_commits(small_tmpfs):
    report = run_disk_full(small_tmpfs, 0, 1 << 20)
    assert report["record_error"] is not None and report["record_error"][0] == "DiskFullError"
    assert "steps were committed and stay readable" in report["record_error"][1]
    assert report["close_error"] is not None and report["close_error"][0] == "DiskFullError"
    size = check_committed_rows(small_tmpfs / "full.h5")
    assert size == report["committed"] > 0


# -- bad values ------------------------------------------------------------------------------

ODD_SPACE = spaces.Dict(
    {
        "image": spaces.Box(0, 255, (24, 32, 3), np.uint8),
        "joints": spaces.Box(-np.inf, np.inf, (7,), np.float32),
        "pose": spaces.Box(-np.inf, np.inf, (4, 4), np.float64),
        "level": spaces.Box(0, 255, (), np.uint8),
        "bits": spaces.MultiBinary(5),
    }
)


def odd_values(i: int) -> list[dict[str, Any]]:
    """The same logical step in layouts a caller may hand over; all must record the same."""
    rng = np.random.default_rng(i)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    joints = rng.normal(size=7).astype(np.float32)
    pose = rng.normal(size=(4, 4))
    bits = rng.integers(0, 2, 5).astype(np.int8)
    big = np.zeros((48, 64, 3), np.uint8)
    big[::2, ::2] = image
    wide = np.zeros((7, 2), np.float32)
    wide[:, 1] = joints
    readonly = image.copy()
    readonly.flags.writeable = False
    plain = {"image": image, "joints": joints, "pose": pose, "level": np.uint8(i), "bits": bits}
    return [
        plain,
        {  # strided views, negative strides, Fortran order
            "image": big[::2, ::2],
            "joints": wide[:, 1],
            "pose": np.asfortranarray(pose),
            "level": np.array(i, np.uint8),
            "bits": bits[::-1][::-1],
        },
        {  # flipped twice (negative strides), byte-swapped, read-only
            "image": readonly[::-1][::-1],
            "joints": joints.astype(">f4"),
            "pose": pose.T.copy().T,
            "level": int(i),
            "bits": bits.astype(bool),
        },
        {  # plain Python containers
            "image": image.tolist(),
            "joints": joints.tolist(),
            "pose": pose.tolist(),
            "level": np.int64(i),
            "bits": bits.tolist(),
        },
    ]


def test_non_contiguous_byteswapped_and_list_values_record_exactly(tmp_path):
    steps = [(variant, i) for i in range(40) for variant in range(4)]
    with Recorder(
        "odd", out_dir=str(tmp_path), observation_space=ODD_SPACE, image_keys_to_save=[]
    ) as recorder:
        for variant, i in steps:
            recorder.record(odd_values(i)[variant])
    with h5py.File(recorder.filename, "r") as file:
        assert int(file.attrs["size"]) == len(steps)
        for row, (_, i) in enumerate(steps):
            expected = odd_values(i)[0]
            for key in ("image", "joints", "pose", "bits"):
                np.testing.assert_array_equal(
                    file[f"observation/{key}"][row], expected[key], err_msg=f"{key}[{row}]"
                )
            assert file["observation/level"][row] == i


def test_a_buffer_reused_by_the_caller_does_not_change_what_was_recorded(tmp_path):
    """Camera drivers hand out the same buffer each frame: record() must copy, not keep it."""
    space = spaces.Dict({"frame": spaces.Box(0, 255, (64, 64), np.uint8),
                         "q": spaces.Box(-np.inf, np.inf, (3,), np.float64)})
    frame = np.zeros((64, 64), np.uint8)
    q = np.zeros(3)
    with Recorder(
        "reuse", out_dir=str(tmp_path), observation_space=space, image_keys_to_save=[]
    ) as recorder:
        for i in range(300):
            frame[:] = i % 256
            q[:] = i
            recorder.record({"frame": frame, "q": q})
        frame[:] = 255
        q[:] = -1
    with h5py.File(recorder.filename, "r") as file:
        frames = file["observation/frame"][:]
        assert (frames == (np.arange(300) % 256)[:, None, None]).all()
        np.testing.assert_array_equal(file["observation/q"][:, 0], np.arange(300))


SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -1.5]


def record_specials(tmp_path: Path, dtype: Any) -> None:
    """NaN, infinities, signed zero and subnormals, compared bit for bit."""
    space = spaces.Dict({"f": spaces.Box(-np.inf, np.inf, (len(SPECIALS),), dtype)})
    values = np.array(SPECIALS, dtype)
    with Recorder(
        "floats", out_dir=str(tmp_path), observation_space=space, image_keys_to_save=[]
    ) as recorder:
        for _ in range(3):
            recorder.record({"f": values})
    with h5py.File(recorder.filename, "r") as file:
        stored = file["observation/f"][:]
    assert stored.dtype == values.dtype
    assert (stored.view(np.uint8).reshape(3, -1) == values.view(np.uint8)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_floats_are_recorded_bit_for_bit(tmp_path, dtype):
    # test_recorder.py covers NaN and -inf in float32; here every special value, bitwise
    record_specials(tmp_path, dtype)


def test_special_floats_in_float16_record_without_warnings(tmp_path):
    record_specials(tmp_path, np.float16)


# -- misuse ----------------------------------------------------------------------------------


def test_record_from_two_threads_loses_and_invents_nothing(tmp_path):
    space = spaces.Dict({"tag": spaces.Box(0, 10**7, (), np.int64),
                         "a": spaces.Box(0, 10**7, (8,), np.int64),
                         "b": spaces.Box(0, 10**7, (4,), np.float64)})
    per_thread = 4000
    errors: list[BaseException] = []
    recorder = Recorder(
        "threads", out_dir=str(tmp_path), observation_space=space, image_keys_to_save=[]
    )
    start = threading.Barrier(2)

    def work(thread: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                tag = thread * 1_000_000 + i + 1
                recorder.record({"tag": tag, "a": np.full(8, tag), "b": np.full(4, float(tag))})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
        recorder.close()
    assert not errors, errors
    with h5py.File(recorder.filename, "r") as file:
        size = int(file.attrs["size"])
        tags = file["observation/tag"][:]
        a = file["observation/a"][:]
        b = file["observation/b"][:]
    assert (a == tags[:, None]).all() and (b == tags[:, None]).all(), "torn rows"
    sent = {t * 1_000_000 + i + 1 for t in (1, 2) for i in range(per_thread)}
    zeros = int((tags == 0).sum())
    assert zeros == 0, f"{zeros} rows that no thread recorded"
    assert len(set(tags.tolist())) == len(tags), f"{len(tags) - len(set(tags.tolist()))} twice"
    assert set(tags.tolist()) == sent, f"{len(sent - set(tags.tolist()))} steps lost"
    assert size == recorder.index == 2 * per_thread


def test_a_second_recorder_on_the_same_name_is_refused_and_the_first_keeps_everything(tmp_path):
    from h5recorder.workloads import photo_frames

    frames = photo_frames(20, 48, 64, seed=8)
    space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                         "i": spaces.Box(0, 1000, (), np.int64)})
    first = Recorder("same", out_dir=str(tmp_path), observation_space=space)
    for i in range(10):
        first.record({"image": frames[i], "i": i})
    time.sleep(0.3)  # some PNGs written: the folder is not empty when the second one starts
    with pytest.raises(RecorderError, match="is being recorded"):
        Recorder("same", out_dir=str(tmp_path), observation_space=space)
    for i in range(10, 20):
        first.record({"image": frames[i], "i": i})
    first.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.h5", "same_frames"], (
        "nothing moved aside"
    )
    with h5py.File(tmp_path / "same.h5", "r") as file:
        assert file["observation/i"][:].tolist() == list(range(20))
        np.testing.assert_array_equal(file["observation/image"][:], frames)
    folder = tmp_path / "same_frames"
    assert sorted(os.listdir(folder)) == sorted(f"{k}.png" for k in range(20))
    np.testing.assert_array_equal(decode_png(folder / "15.png"), frames[15])


# -- long runs under the memory budget -------------------------------------------------------

LONG_RUN_CHILD = """
import json, sys, time
import numpy as np
import psutil
from gymnasium import spaces
from h5recorder import Recorder

kind, steps, out_dir, budget = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
process = psutil.Process()
if kind == "proprio":
    space = spaces.Dict({"joints": spaces.Box(-np.inf, np.inf, (50,), np.float32),
                         "stamp": spaces.Box(0, np.inf, (), np.float64)})
    bank = np.random.default_rng(1).normal(size=(1000, 50)).astype(np.float32)
    make = lambda i: {"joints": bank[i % 1000], "stamp": i * 1e-3}
    keys = []
else:
    from h5recorder.workloads import photo_frames, depth_frames
    h, w = 120, 160
    space = spaces.Dict({"cam0": spaces.Box(0, 255, (h, w, 3), np.uint8),
                         "cam1": spaces.Box(0, 255, (h, w, 3), np.uint8),
                         "cam2": spaces.Box(0, 255, (h, w, 3), np.uint8),
                         "depth": spaces.Box(0, 65535, (h, w), np.uint16),
                         "joints": spaces.Box(-np.inf, np.inf, (30,), np.float32)})
    rgb = photo_frames(32, h, w, seed=2)
    depth = depth_frames(32, h, w, seed=3)
    joints = np.random.default_rng(1).normal(size=(32, 30)).astype(np.float32)
    make = lambda i: {"cam0": rgb[i % 32], "cam1": rgb[(i + 7) % 32], "cam2": rgb[(i + 13) % 32],
                      "depth": depth[i % 32], "joints": joints[i % 32]}
    keys = ["cam0"]
before = process.memory_info().rss
recorder = Recorder("long", out_dir=out_dir, observation_space=space, buffer_bytes=budget,
                    image_keys_to_save=keys)
samples = []
started = time.perf_counter()
every = max(1, steps // 20)
for i in range(steps):
    recorder.record(make(i))
    if i % every == every - 1:
        samples.append(process.memory_info().rss)
recording = time.perf_counter() - started
status = recorder.status()
recorder.close()
print(json.dumps({"before": before, "samples": samples, "seconds": recording,
                  "waits": status.waits, "drops": status.drops}))
"""


def check_long_run(tmp_path: Path, kind: str, steps: int, budget: int, timeout: float) -> None:
    result = run_python(LONG_RUN_CHILD, kind, str(steps), str(tmp_path), str(budget),
                        timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    samples = np.array(report["samples"]) / 2**20
    before = report["before"] / 2**20
    # fixed overhead: the compiled kernels, h5py's caches, the staging chunks, the PNG pool's
    # bookkeeping; measured at 60-120 MiB
    overhead = 160
    assert samples.max() - before <= budget / 2**20 + overhead, (before, samples.tolist())
    warm = samples[len(samples) // 4 :]  # after warm-up: the ring has wrapped, kernels loaded
    assert warm.max() - warm[0] <= 24, f"RSS grows after warm-up (MiB): {warm.round(1).tolist()}"
    assert report["drops"] == 0
    with h5py.File(tmp_path / "long.h5", "r") as file:
        assert int(file.attrs["size"]) == steps
        if kind == "proprio":
            bank = np.random.default_rng(1).normal(size=(1000, 50)).astype(np.float32)
            tail = file["observation/joints"][steps - 1000 :]
            np.testing.assert_array_equal(tail, bank[np.arange(steps - 1000, steps) % 1000])
            assert file["observation/stamp"][steps - 1] == (steps - 1) * 1e-3
    if kind == "rig":
        assert len(os.listdir(tmp_path / "long_frames")) == steps


def test_100k_small_steps_keep_memory_flat(tmp_path):
    check_long_run(tmp_path, "proprio", 100_000, 8 << 20, timeout=120)


@pytest.mark.slow
def test_1m_small_steps_keep_memory_flat(tmp_path):
    check_long_run(tmp_path, "proprio", 1_000_000, 8 << 20, timeout=600)


@pytest.mark.slow
def test_20k_camera_rig_steps_keep_memory_flat(tmp_path):
    # three 120x160 RGB cameras, a 120x160 depth image and 30 joints, cam0 saved as PNG:
    # the rig workload at a quarter of its 480x640 height and width, so that 20,000 steps
    # fit in a minute on two cores
    check_long_run(tmp_path, "rig", 20_000, 64 << 20, timeout=900)


# -- a reader watching the live file ---------------------------------------------------------

LIVE_READER = """
import json, os, sys, time
import h5py, hdf5plugin, numpy as np

path, stop = sys.argv[1], sys.argv[2]
seen, errors, bad = [], [], []
while not os.path.exists(stop) or len(seen) < 3:
    try:
        with h5py.File(path, "r", locking=False) as f:
            size = int(f.attrs["size"])
            q = f["observation/q"][:size]
            image = f["observation/image"][:size]
            note = f["observation/note"][:size]
    except Exception as error:
        errors.append(repr(error)[:300])
        time.sleep(0.02)
        continue
    steps = np.arange(size)
    want_q = steps[:, None] * np.arange(1, 9)[None, :]
    want_image = ((steps[:, None, None] + np.arange(32)[None, :, None]
                   + np.arange(32)[None, None, :]) % 256).astype(np.uint8)
    want_note = np.array([f"s{k}".encode() for k in steps], dtype=object)
    for name, got, want in (("q", q, want_q), ("image", image, want_image),
                            ("note", note, want_note)):
        rows = np.nonzero((got != want).reshape(size, -1).any(axis=1))[0] if size else []
        if len(rows):
            bad.append([size, name, int(rows[0]), int(rows[-1]), len(rows)])
    seen.append(size)
    time.sleep(0.01)
print(json.dumps({"sizes": seen, "errors": errors, "bad": bad}))
"""


def live_step(i: int) -> dict[str, Any]:
    grid = np.arange(32)
    image = ((i + grid[:, None] + grid[None, :]) % 256).astype(np.uint8)
    return {"q": i * np.arange(1, 9, dtype=np.float64), "image": image, "note": f"s{i}"}


def watch_live_recording(tmp_path: Path) -> dict[str, Any]:
    space = spaces.Dict({"q": spaces.Box(-np.inf, np.inf, (8,), np.float64),
                         "image": spaces.Box(0, 255, (32, 32), np.uint8),
                         "note": spaces.Text(16)})
    stop = tmp_path / "stop"
    recorder = Recorder(
        "live", out_dir=str(tmp_path), observation_space=space, commit_interval=0.1,
        image_keys_to_save=[], chunk_bytes=16 << 10,
    )
    reader = subprocess.Popen(
        [PYTHON, "-c", LIVE_READER, str(recorder.filename), str(stop)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        i = 0
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            recorder.record(live_step(i))
            i += 1
            if i % 20 == 0:
                time.sleep(0.002)
        stop.touch()
        out, err = reader.communicate(timeout=60)
    finally:
        recorder.close()
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    sizes = report["sizes"]
    assert report["bad"] == [], f"rows below size differ from what was recorded at {report['bad']}"
    assert sizes == sorted(sizes), "size went backwards"
    assert len(set(sizes)) >= 5 and sizes[-1] > 0, sizes
    return report


@pytest.mark.slow  # whether a read lands inside a flush is timing: kept out of CI's run
@pytest.mark.xfail(
    strict=True,
    reason="documented limitation (README, 'Reading a live file'): without SWMR a reader "
    "that opens the file while the writer flushes a commit "
    "sometimes sees metadata pointing past the end of the allocation: h5py raises "
    "OSError 'addr overflow, addr = ..., eoa = ...' or 'address of object past end of "
    "allocation' (several per 4 s of reading at commit_interval=0.1); retrying succeeds",
)
def test_every_read_of_the_live_file_succeeds(tmp_path):
    report = watch_live_recording(tmp_path)
    assert report["errors"] == [], report["errors"][:5]


# -- reading without hdf5plugin --------------------------------------------------------------

PLAIN_READER = """
import sys
import h5py
import numpy as np
print("hdf5plugin imported" if "hdf5plugin" in sys.modules else "hdf5plugin not imported")
with h5py.File(sys.argv[1], "r") as f:
    d = f["observation/x"]
    print("meta", int(f.attrs["size"]), d.shape, d.dtype, d.attrs["space_type"],
          sorted(d._filters), flush=True)
    try:
        data = d[:]
    except OSError as error:
        print("data-error", str(error).replace(chr(10), " ")[:200], flush=True)
    else:
        expected = np.arange(int(f.attrs["size"]))[:, None] * np.ones(64)
        print("data-ok", bool(np.array_equal(data, expected)), flush=True)
"""


def _outside_this_environment(env: dict[str, str]) -> dict[str, str]:
    """``python -S`` with site-packages on PYTHONPATH: the same packages, but no ``.pth`` file
    runs, as in another environment or a program that is not this Python."""
    site = str(Path(h5py.__file__).resolve().parent.parent)
    return {**env, "PYTHONPATH": site}


def test_gzip_files_read_with_plain_h5py(tmp_path):
    space = spaces.Dict({"x": spaces.Box(-np.inf, np.inf, (64,), np.float64)})
    with Recorder(
        "gz", out_dir=str(tmp_path), observation_space=space, image_keys_to_save=[],
        compression="gzip",
    ) as recorder:
        for i in range(500):
            recorder.record({"x": np.full(64, float(i))})
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    result = run_python(
        PLAIN_READER, str(recorder.filename), env=_outside_this_environment(env), flags=("-S",)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hdf5plugin not imported" in result.stdout, result.stdout
    assert "data-ok True" in result.stdout, result.stdout


# -- property-based round trips --------------------------------------------------------------

KEYS = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6).filter(
    lambda key: key != "image"
)
BOX_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64, np.float16,
              np.float32, np.float64, np.bool_]
SHAPES = st.sampled_from([(), (1,), (3,), (2, 3), (2, 1, 2)])


@st.composite
def boxes(draw) -> spaces.Box:
    dtype = np.dtype(draw(st.sampled_from(BOX_DTYPES)))
    shape = draw(SHAPES)
    if dtype.kind == "b":
        return spaces.Box(0, 1, shape, dtype)
    if dtype.kind == "f":
        return spaces.Box(-np.inf, np.inf, shape, dtype)
    info = np.iinfo(dtype)
    low = draw(st.integers(max(info.min, -1000), 0))
    high = draw(st.integers(1, min(info.max, 10**6)))
    return spaces.Box(low, high, shape, dtype)


LEAF_SPACES = st.one_of(
    boxes(),
    st.builds(lambda n, start: spaces.Discrete(n, start=start), st.integers(1, 50),
              st.integers(-5, 5)),
    st.builds(lambda nvec: spaces.MultiDiscrete(nvec),
              st.lists(st.integers(1, 9), min_size=1, max_size=4)),
    st.builds(lambda n: spaces.MultiBinary(n), st.integers(1, 6)),
    st.builds(lambda n: spaces.Text(n), st.integers(1, 12)),
)
DICT_SPACES = st.recursive(
    st.dictionaries(KEYS, LEAF_SPACES, min_size=1, max_size=4).map(spaces.Dict),
    lambda children: st.dictionaries(KEYS, st.one_of(LEAF_SPACES, children), min_size=1,
                                     max_size=3).map(spaces.Dict),
    max_leaves=8,
)


def sample_value(space: spaces.Space, rng: np.random.Generator) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: sample_value(sub, rng) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Text):
        length = int(rng.integers(0, space.max_length + 1))
        return "".join(rng.choice(list("abcxyz 019"), length))
    if isinstance(space, spaces.Box) and space.dtype.kind == "f":
        values = rng.normal(0, 1e3, space.shape).astype(space.dtype)
        if values.size and rng.random() < 0.3:
            values.flat[0] = rng.choice([np.nan, np.inf, -np.inf, -0.0])
        return values
    space.seed(int(rng.integers(2**31)))
    value = space.sample()
    return int(value) if isinstance(space, spaces.Discrete) else value


def leaves_of(space: spaces.Dict, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for key, sub in space.spaces.items():
        if isinstance(sub, spaces.Dict):
            found += leaves_of(sub, (*path, key))
        else:
            found.append(((*path, key), sub))
    return found


def expected_attrs(space: spaces.Space) -> dict[str, Any]:
    attrs: dict[str, Any] = {"space_type": type(space).__name__}
    if isinstance(space, spaces.Box):
        attrs.update(low=space.low.flat[0], high=space.high.flat[0], shape=list(space.shape))
    elif isinstance(space, spaces.Discrete):
        attrs["n"] = int(space.n)
    elif isinstance(space, spaces.MultiDiscrete):
        attrs["nvec"] = np.asarray(space.nvec).tolist()
    elif isinstance(space, spaces.MultiBinary):
        attrs["n"] = int(space.n)
    elif isinstance(space, spaces.Text):
        attrs["max_length"] = int(space.max_length)
    return attrs


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(
    observation=DICT_SPACES,
    action=st.one_of(st.none(), DICT_SPACES),
    count=st.integers(1, 30),
    seed=st.integers(0, 2**31),
)
def test_random_nested_spaces_round_trip_exactly(tmp_path_factory, observation, action, count,
                                                 seed):
    tmp = tmp_path_factory.mktemp("prop")
    rng = np.random.default_rng(seed)
    roots = {"observation": observation, "action": action}
    roots = {name: space for name, space in roots.items() if space is not None}
    steps = [{name: sample_value(space, rng) for name, space in roots.items()}
             for _ in range(count)]
    with Recorder(
        "prop", out_dir=str(tmp), image_keys_to_save=[], chunk_bytes=1024,
        **{f"{name}_space": space for name, space in roots.items()},
    ) as recorder:
        for step in steps:
            recorder.record(**step)
    with h5py.File(recorder.filename, "r") as file:
        assert int(file.attrs["size"]) == count
        for name, space in roots.items():
            assert file[name].attrs["space_type"] == "Dict"
            for path, leaf in leaves_of(space, (name,)):
                dataset = file["/".join(path)]
                assert dataset.shape[0] == count, path
                for attr, value in expected_attrs(leaf).items():
                    stored = dataset.attrs[attr]
                    stored = stored.tolist() if isinstance(stored, np.ndarray) else stored
                    if isinstance(value, float) and np.isinf(value):
                        assert stored == value, (path, attr)
                    else:
                        assert np.array_equal(stored, value), (path, attr, stored, value)
                stored = dataset[:]
                for row, step in enumerate(steps):
                    value = step[name]
                    for key in path[1:]:
                        value = value[key]
                    where = f"{'/'.join(path)}[{row}]"
                    if isinstance(leaf, spaces.Text):
                        assert stored[row].decode() == value, where
                    elif isinstance(leaf, spaces.Discrete):
                        assert int(stored[row]) == value, where
                    else:
                        expected = np.asarray(value, dtype=leaf.dtype)
                        assert stored[row].dtype == leaf.dtype, where
                        got = np.ascontiguousarray(stored[row])
                        assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), where
