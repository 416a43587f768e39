"""record() on the two-camera rig, paced, in a process of its own; prints one JSON line.

    PYTHONPATH=<checkout>/src python benchmarks/rig_case.py on|off SECONDS

Two 640x480 RGB cameras (real photographs, moving, with noise) and 14 joints at 30 Hz, the
default copy (no hand-over), PNG of both cameras ``on`` or ``off``; the first half second is
left out. It uses only the public ``Recorder`` and ``h5recorder.workloads.photo_frames``, so it
runs unchanged on older commits: point ``PYTHONPATH`` at a checkout of each and alternate them
to compare ``record()`` percentiles side by side (``benchmarks/test_handover.py`` compares
copy and hand-over within one commit).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time

import h5py
import numpy as np
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder.workloads import photo_frames

RATE = 30.0
BANK = 32


def rig_space() -> spaces.Dict:
    """Two 640x480 RGB cameras and 14 joints."""
    return spaces.Dict(
        {
            "camera_0": spaces.Box(0, 255, (480, 640, 3), np.uint8),
            "camera_1": spaces.Box(0, 255, (480, 640, 3), np.uint8),
            "joints": spaces.Box(-np.pi, np.pi, (14,), np.float32),
        }
    )


def rig_bank(count: int = BANK) -> list[dict[str, np.ndarray]]:
    """``count`` observations of the rig: real photographs, moving, with noise."""
    rng = np.random.default_rng(0)
    cameras = [photo_frames(count, 480, 640, seed=seed) for seed in (0, 1)]
    return [
        {
            "camera_0": cameras[0][i],
            "camera_1": cameras[1][i],
            "joints": rng.uniform(-1, 1, 14).astype(np.float32),
        }
        for i in range(count)
    ]


def main() -> None:
    png, seconds = sys.argv[1] == "on", float(sys.argv[2])
    space, bank = rig_space(), rig_bank()
    folder = tempfile.mkdtemp(prefix="rig_case_")
    try:
        keys = ["camera_0", "camera_1"] if png else []
        recorder = Recorder("rig", out_dir=folder, image_keys_to_save=keys, observation_space=space)
        if hasattr(recorder, "wait_ready"):
            recorder.wait_ready(timeout=120)
        else:  # commits before wait_ready: give the kernels time to compile
            time.sleep(5)
        period = int(1e9 / RATE)
        count = int(RATE * seconds)
        durations = np.empty(count, np.int64)
        clock = time.perf_counter_ns
        start = clock() + period
        for i in range(count):
            due = start + i * period
            ahead = due - clock() - 1_000_000
            if ahead > 0:
                time.sleep(ahead / 1e9)
            while clock() < due:
                pass
            began = clock()
            recorder.record(observation=bank[i % BANK])
            durations[i] = clock() - began
        recorder.close()
        with h5py.File(recorder.filename, "r") as file:
            assert int(file.attrs["size"]) == count
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    timed = durations[int(RATE / 2) :] / 1e3
    p50, p99 = np.percentile(timed, [50, 99])
    figures = {"png": png, "steps": count, "p50_us": round(float(p50), 1),
               "p99_us": round(float(p99), 1), "max_us": round(float(timed.max()), 1)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
