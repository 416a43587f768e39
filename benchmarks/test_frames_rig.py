"""The camera rig keeps up: two 640x480 RGB cameras, a 480x640 uint16 depth camera and joints,
paced at 30 steps/s, with PNG frames on and, in the same run, off.

``--frame-workers`` sets the recorder's ``frame_workers`` (default: cores minus one);
``--switch-interval`` sets ``sys.setswitchinterval`` for the run (Python's default is 5 ms:
a thread that wants the GIL back, after a copy that released it, may wait that long).

Figures, with ``-s``: frames written while recording and deferred to ``close()``, the seconds
``close()`` took, the largest ``frames_close_seconds`` that ``status()`` reported while
recording, and ``record()`` p50/p99/p99.9/max with frames on and off. Every PNG is decoded
back (Pillow) and compared with the frame recorded. Asserts what was written, never a timing.

    .venv/bin/python -m pytest benchmarks/test_frames_rig.py \\
        -q -s --rig-seconds 60
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_support import report
from PIL import Image

from h5recorder import Recorder
from h5recorder._tools.bench import paced, percentiles_us
from h5recorder.workloads import Workload, workload

RATE = 30.0
_figures: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def rig() -> Workload:
    return workload("rig", bank_size=16, cameras=2)


@pytest.mark.parametrize("frames", ["on", "off"])
def test_rig_keeps_up(benchmark: Any, request: pytest.FixtureRequest, rig: Workload,
                      frames: str, tmp_path: Path) -> None:
    seconds = float(request.config.getoption("--rig-seconds"))
    switch = request.config.getoption("--switch-interval")
    if switch is not None:  # how often Python hands the GIL over; the default is 5 ms
        previous = sys.getswitchinterval()
        sys.setswitchinterval(switch)
        request.addfinalizer(lambda: sys.setswitchinterval(previous))
    keys = rig.image_keys if frames == "on" else []
    workers = request.config.getoption("--frame-workers")
    recorder = Recorder("rig", out_dir=str(tmp_path), image_keys_to_save=keys,
                        frame_workers=workers, **rig.spaces())
    assert recorder.wait_ready(timeout=120)
    worst_close = 0.0
    recording = threading.Event()

    def watch() -> None:  # what a user's monitor would do: look at status() twice a second
        nonlocal worst_close
        while not recording.wait(0.5):
            worst_close = max(worst_close, recorder.status().frames_close_seconds)

    watcher = threading.Thread(target=watch)
    load_before = os.getloadavg()[0]
    watcher.start()
    try:
        durations, late = benchmark.pedantic(
            paced, args=(recorder.record, rig.bank, RATE, seconds), rounds=1, iterations=1
        )
    finally:
        recording.set()
        watcher.join()
    closing = time.perf_counter()
    recorder.close()
    close_s = time.perf_counter() - closing
    status = recorder.status()
    steps = len(durations)
    figures: dict[str, Any] = {"steps": steps, "late_steps": late, "close_s": round(close_s, 3)}
    figures.update(percentiles_us(durations[int(RATE) :]))  # the first second is warm-up
    if frames == "on":
        folder = tmp_path / "rig_frames" / "observation"
        exact = 0
        for key in keys:
            name = key.rsplit("/", 1)[-1]
            pngs = list((folder / name).glob("*.png"))
            assert len(pngs) == steps, key
            for path in pngs:
                index = int(path.stem)
                expected = rig.bank[index % len(rig.bank)]["observation"][name]
                with Image.open(path) as image:
                    assert np.array_equal(np.asarray(image), expected), path
                exact += 1
        figures.update(
            frames_exact=exact,
            frames_deferred=status.frames_deferred,
            frames_missing=status.frames_missing,
            worst_close_estimate_s=round(worst_close, 3),
        )
    figures.update(load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2),
                   switch_interval_ms=round(sys.getswitchinterval() * 1e3, 2),
                   frame_workers=workers or "default")
    _figures[frames] = figures
    report(benchmark, f"rig {seconds:g} s at {RATE:g} Hz, frames {frames}", figures)
    if len(_figures) == 2:
        on, off = _figures["on"], _figures["off"]
        ratios = {f"{p}_on_over_off": round(on[f"{p}_us"] / off[f"{p}_us"], 2)
                  for p in ("p50", "p99")}
        report(benchmark, "rig record() frames on / off", ratios)
