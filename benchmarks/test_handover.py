"""What hand-over saves the caller: ``record()`` with ``handover=True`` against the default copy,
side by side in one run, on the two-camera rig LeRobot was measured on (issue 16): two 640x480
RGB cameras and 14 joints, paced at 30 steps/s.

With the default copy, ``record()`` copies 1.84 MB a step into the ring; with hand-over it
keeps the two frames by reference and the writer thread copies them. Cases alternate (copy,
hand-over, copy, hand-over, ...) with PNG frames off and on (both cameras), so that the
machine's mood falls on both alike; each reports ``record()`` p50/p99/p99.9/max (the first half
second left out), late steps, the CPU share of the background threads, waits, drops and the
steps still in the ring (and still held) when pacing ends. A table of every case is printed at
the end. Every row and every PNG is read back and compared; nothing is asserted on timing.

    .venv/bin/python -m pytest benchmarks/test_handover.py -q -s --rig-seconds 10
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc2 filter, so blosc2 chunks read back
import numpy as np
import pytest
from bench_support import report
from PIL import Image
from rig_case import rig_bank, rig_space

from h5recorder import Recorder
from h5recorder._tools.bench import paced, percentiles_us
from h5recorder.workloads import Workload

RATE = 30.0
WARM_UP_SECONDS = 0.5
BANK = 32
CASES = [
    (round_, frames, mode)
    for round_ in (1, 2)
    for frames in ("off", "on")
    for mode in ("copy", "handover")
]
_rows: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def cameras() -> Workload:
    """Two 640x480 RGB cameras (real photographs, moving, with noise) and 14 joints."""
    bank = [{"observation": observation} for observation in rig_bank(BANK)]
    return Workload("cameras", rig_space(), None, None, bank, ["camera_0", "camera_1"])


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    yield
    if not _rows:
        return
    print("\n\n| round | PNG | record() | p50 us | p99 us | p99.9 us | max us | late | "
          "background CPU | waits | held at end |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in _rows:
        print(f"| {row['round']} | {row['frames']} | {row['mode']} | {row['p50_us']} | "
              f"{row['p99_us']} | {row['p999_us']} | {row['max_us']} | {row['late_steps']} | "
              f"{row['background_cpu']} | {row['waits']} | {row['held_at_end']} |")


def _check(recorder: Recorder, workload: Workload, steps: int, pngs: bool) -> None:
    """Every row of both cameras and the joints, and every PNG, is the step recorded."""
    bank = workload.bank
    with h5py.File(recorder.filename, "r") as file:
        assert int(file.attrs["size"]) == steps
        for key in ("camera_0", "camera_1", "joints"):
            dataset = file[f"observation/{key}"]
            for start in range(0, steps, BANK):
                stored = dataset[start : min(steps, start + BANK)]
                for offset, row in enumerate(stored):
                    expected = bank[(start + offset) % BANK]["observation"][key]
                    assert np.array_equal(row, expected), f"{key}[{start + offset}]"
    if not pngs:
        return
    for key in ("camera_0", "camera_1"):
        folder = recorder.frames_dir / "observation" / key
        assert len(os.listdir(folder)) == steps
        for step in range(steps):
            with Image.open(folder / f"{step}.png") as image:
                expected = bank[step % BANK]["observation"][key]
                assert np.array_equal(np.asarray(image), expected), f"{key} frame {step}"


@pytest.mark.parametrize(
    ("round_", "frames", "mode"), CASES, ids=[f"round{r}-png-{f}-{m}" for r, f, m in CASES]
)
def test_record_with_and_without_handover(
    benchmark: Any, request: pytest.FixtureRequest, cameras: Workload, tmp_path: Path,
    round_: int, frames: str, mode: str,
) -> None:
    benchmark.group = "record(), 2 x 640x480 RGB + 14 joints at 30 Hz: copy vs hand-over"
    seconds = float(request.config.getoption("--rig-seconds"))
    keys = cameras.image_keys if frames == "on" else []
    recorder = Recorder("cameras", out_dir=str(tmp_path), image_keys_to_save=keys,
                        handover=mode == "handover", **cameras.spaces())
    assert recorder.wait_ready(timeout=120)
    measured: dict[str, Any] = {}

    def run() -> None:
        cpu_before, main_before = time.process_time(), time.thread_time()
        wall_before = time.perf_counter()
        durations, late = paced(recorder.record, cameras.bank, RATE, seconds)
        wall = time.perf_counter() - wall_before
        background = (time.process_time() - cpu_before) - (time.thread_time() - main_before)
        ring = recorder._ring
        assert ring is not None
        measured.update(
            durations=durations, late=late, status=recorder.status(), held=ring.held_rows,
            background_cpu=max(0.0, background / wall),
        )
        started = time.perf_counter()
        recorder.close()
        measured["close_s"] = time.perf_counter() - started

    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        recorder.close()

    durations = measured["durations"]
    warm_up = int(RATE * WARM_UP_SECONDS)
    status = measured["status"]
    figures: dict[str, Any] = {
        "round": round_,
        "frames": frames,
        "mode": mode,
        "timed_steps": len(durations) - warm_up,
        **percentiles_us(durations[warm_up:]),
        "late_steps": measured["late"],
        "background_cpu": round(measured["background_cpu"], 2),
        "waits": status.waits,
        "drops": status.drops,
        "ring_pending_at_end": status.ring_pending,
        "held_at_end": measured["held"],
        "ring_capacity": status.ring_capacity,
        "close_s": round(measured["close_s"], 2),
    }
    _rows.append(figures)
    report(benchmark, f"record() {mode}, PNG {frames}, round {round_}", figures)
    _check(recorder, cameras, len(durations), pngs=frames == "on")
    shutil.rmtree(tmp_path, ignore_errors=True)  # gone now, not written back during the next case
