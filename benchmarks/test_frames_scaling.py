"""PNG frames per second against the number of worker processes, on real photographs.

Each case fills one shared-memory column with moving, noisy crops of real photographs (the
recorder's ring, as ``_write.ring.SharedColumn`` makes it), starts a pool with ``workers``
processes (not timed), then times writing every frame of the column as a PNG file and
waiting for the last one. Figures, with ``-s``: frames/s, and per-worker efficiency against
one worker of the same size and encoder measured earlier in the same run.

    pytest benchmarks/test_frames_scaling.py -q -s
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from h5recorder._write.frames import FrameJob, FramePool, FrameSource, frame_path
from h5recorder._write.ring import SHM_DIR, SHM_PREFIX, SharedColumn
from h5recorder.workloads import photo_frames

CORES = len(os.sched_getaffinity(0))
# height, width, frames per worker
SIZES = {"224x224": (224, 224, 320), "640x480": (480, 640, 96), "1280x720": (720, 1280, 32)}
ENCODERS = ["auto", "imagecodecs"]  # the recorder's choice for RGB (fpng), and the one before

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs POSIX shared memory")

_one_worker: dict[tuple[str, str], float] = {}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process (Linux), so contention can be told apart."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@pytest.fixture(scope="module", params=list(SIZES))
def column(request: pytest.FixtureRequest) -> Iterator[tuple[str, SharedColumn]]:
    height, width, per_worker = SIZES[request.param]
    frames = photo_frames(per_worker * CORES, height, width, seed=3)
    shared = SharedColumn(f"{SHM_PREFIX}{os.getpid()}_bench_{request.param}", frames.shape,
                          frames.dtype)
    shared.array[:] = frames
    yield request.param, shared
    shared.close()


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("workers", range(1, CORES + 1))
def test_png_frames_per_second(benchmark: Any, column: tuple[str, SharedColumn], workers: int,
                               encoder: str, tmp_path: Path) -> None:
    size, shared = column
    count = SIZES[size][2] * workers
    source = FrameSource.of(shared)
    step = iter(range(10**9))

    with FramePool(workers=workers, encoder=encoder) as pool:
        # every worker started and warm before the clock runs
        (tmp_path / "warm").mkdir()
        pool.submit([FrameJob(next(step), source, i, frame_path(tmp_path / "warm", i))
                     for i in range(2 * workers)])
        assert pool.wait(timeout=60)

        def write_all() -> None:
            first = next(step)
            pool.submit([FrameJob(first, source, i, frame_path(tmp_path, i))
                         for i in range(count)])
            for _ in range(count):
                next(step)
            assert pool.wait(timeout=300)

        pids = pool.pids
        workers_cpu = sum(cpu_seconds(pid) for pid in pids)
        parent_cpu = sum(os.times()[:2])
        benchmark.pedantic(write_all, rounds=3, iterations=1)
        parent_cpu = sum(os.times()[:2]) - parent_cpu
        workers_cpu = sum(cpu_seconds(pid) for pid in pids) - workers_cpu
        pool.check()
        counters = pool.counters
    assert counters.restarts == 0
    assert counters.failed == 0
    assert counters.written == 2 * workers + 3 * count
    assert len(list(tmp_path.glob("*.png"))) == count

    seconds = float(np.median(benchmark.stats.stats.data))
    rate = count / seconds
    key = (size, encoder)
    if workers == 1:
        _one_worker[key] = rate
    figures: dict[str, Any] = {"frames_per_s": round(rate, 1), "workers": workers,
                               "cores": CORES, "ms_per_frame_per_worker":
                               round(1e3 * seconds * workers / count, 2)}
    figures["worker_cpu_ms_per_frame"] = round(1e3 * workers_cpu / (3 * count), 2)
    figures["parent_cpu_ms_per_frame"] = round(1e3 * parent_cpu / (3 * count), 3)
    if key in _one_worker:
        figures["per_worker_efficiency"] = round(rate / (workers * _one_worker[key]), 3)
    benchmark.extra_info.update(figures)
    shown = ", ".join(f"{name}={value}" for name, value in figures.items())
    print(f"\n[png {size} {encoder}] {shown}")
