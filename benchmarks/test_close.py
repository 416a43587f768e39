"""The fixed cost of finishing an episode: ``close()`` after everything pending is written.

For 1,000 and 10,000 steps of the seed workload (224x224 frames, PNG frames off), recorded
flat out: ``flush()`` first (it returns once every step recorded is committed: the writing
that was pending), then ``close()`` (statistics summary, trimming, the last attributes). The
second figure is what finishing costs beyond the writing, and should not grow with the
episode's length.

    pytest benchmarks/test_close.py -q -s
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from bench_support import check_file, load_workload, report

from h5recorder import Recorder


@pytest.mark.parametrize("steps", [1_000, 10_000])
def test_close_beyond_pending(benchmark: Any, tmp_path: Path, steps: int) -> None:
    work = load_workload("seed")
    benchmark.group = "close() beyond what was pending (seed)"
    measured: dict[str, float] = {}

    def run() -> None:
        recorder = Recorder("close", out_dir=str(tmp_path), image_keys_to_save=[],
                            **work.spaces())  # fmt: skip
        for step in work.steps(steps):
            recorder.record(**step)
        started = time.perf_counter()
        recorder.flush()
        flushed = time.perf_counter()
        recorder.close()
        measured.update(pending_s=flushed - started, close_s=time.perf_counter() - flushed)
        check_file(recorder.filename, work, steps)
        recorder.filename.unlink()

    benchmark.pedantic(run, rounds=3, iterations=1)
    report(benchmark, f"{steps} steps", {
        "flush_pending_s": round(measured["pending_s"], 3),
        "close_s": round(measured["close_s"], 3),
    })
