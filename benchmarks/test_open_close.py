"""What the edges of an episode cost the caller: ``Recorder(...)`` and ``close()``.

A user recording episode after episode opens a recorder per episode, in the loop's process. On
the two-camera rig (two 640x480 RGB cameras, 14 joints), ``EPISODES`` short episodes of
``STEPS`` steps at ``RATE`` steps/s (one second each) are recorded one after another in this
process, with PNG frames off and on, and the time of each open and each close is taken.
Opening a recorder faults in its ring (``buffer_bytes``, 256 MiB by default): anonymous memory
for the columns that stay in the process, shared memory (``/dev/shm``) for those the PNG
workers read. Closing it writes what is
pending, waits for every PNG, then stops the workers. Every file is read back; nothing is
asserted on timing.

    .venv/bin/python -m pytest benchmarks/test_open_close.py -q -s
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc2 filter, so blosc2 chunks read back
import numpy as np
import pytest
from bench_support import report
from rig_case import rig_bank, rig_space

from h5recorder import Recorder

EPISODES = 6
STEPS = 30
RATE = 30.0


@pytest.mark.parametrize("frames", ["off", "on"])
def test_open_and_close(benchmark: Any, tmp_path: Path, frames: str) -> None:
    bank = rig_bank(STEPS)
    keys = ["camera_0", "camera_1"] if frames == "on" else []
    opened: list[float] = []
    closed: list[float] = []

    def run() -> None:
        for episode in range(EPISODES):
            began = time.perf_counter()
            recorder = Recorder(f"episode_{episode}", out_dir=str(tmp_path),
                                observation_space=rig_space(), image_keys_to_save=keys)
            opened.append(time.perf_counter() - began)
            started = time.perf_counter()
            for step, observation in enumerate(bank):
                time.sleep(max(0.0, started + step / RATE - time.perf_counter()))
                recorder.record(observation)
            began = time.perf_counter()
            recorder.close()
            closed.append(time.perf_counter() - began)

    benchmark.pedantic(run, rounds=1, iterations=1)
    ms = {name: 1000 * np.asarray(took) for name, took in (("open", opened), ("close", closed))}
    title = f"open and close, {STEPS}-step rig episodes at {RATE:g} Hz, frames {frames}"
    report(benchmark, title, {
        "episodes": EPISODES,
        "open_ms_median": round(float(np.median(ms["open"])), 1),
        "open_ms_max": round(float(ms["open"].max()), 1),
        "close_ms_median": round(float(np.median(ms["close"])), 1),
        "close_ms_max": round(float(ms["close"].max()), 1),
    })
    for episode in range(EPISODES):
        with h5py.File(tmp_path / f"episode_{episode}.h5", "r") as file:
            assert int(file.attrs["size"]) == STEPS
            np.testing.assert_array_equal(file["observation/camera_1"][STEPS - 1],
                                          bank[-1]["camera_1"])
        if keys:
            pngs = list((tmp_path / f"episode_{episode}_frames").rglob("*.png"))
            assert len(pngs) == STEPS * len(keys)
