"""What each ``durability`` setting costs, side by side in one run.

For the seed workload (a 224x224 camera frame and small values) and the proprio workload
(50 floats and a timestamp), with ``durability="process"`` (the default: no fsync) and
``"power"`` (fsync barriers and a rollback journal at every commit):

- ``steps_per_s``: recording flat out for ``--case-seconds``, then ``close()``;
- ``p50_us``, ``p99_us``: ``record()`` at the workload's steady rate (seed 1000, proprio
  2000 steps/s) for ``--pace-seconds``, first half second left out;
- ``commit_ms_p50``, ``commit_ms_max``: every commit that wrote rows, timed on the writer
  thread (``Writer.commit``), at the default ``commit_interval`` of 1 s; ``fsyncs_per_commit``.

Run with ``-s`` to see the figures: ``.venv/bin/python -m pytest benchmarks/test_durability.py
-s -q``. Nothing here fails on timing; the files written are checked for their size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from bench_support import load_workload, report

from h5recorder._tools import bench as _bench
from h5recorder._write.writer import Writer

RATES = {"seed": 1000.0, "proprio": 2000.0}


def timed_commits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Time every commit that wrote rows: (nanoseconds, fsyncs) each."""
    commits: list[tuple[int, int]] = []
    original = Writer.commit

    def commit(self: Writer) -> None:
        before = self.counters.commits
        syncs = self.journal.syncs if self.journal is not None else 0
        started = time.perf_counter_ns()
        original(self)
        if self.counters.commits != before:
            after = self.journal.syncs if self.journal is not None else 0
            commits.append((time.perf_counter_ns() - started, after - syncs))

    monkeypatch.setattr(Writer, "commit", commit)
    return commits


@pytest.mark.parametrize("name", ["seed", "proprio"])
@pytest.mark.parametrize("durability", ["process", "power"])
def test_durability_cost(
    benchmark: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    name: str,
    durability: str,
) -> None:
    load = load_workload(name)
    seconds = request.config.getoption("--case-seconds")
    pace = request.config.getoption("--pace-seconds")
    commits = timed_commits(monkeypatch)
    figures: dict[str, Any] = {}

    def run() -> None:
        recorder = _bench.ours(load, tmp_path / "flat", False, durability=durability)
        steps, elapsed, _ = _bench.end_to_end(recorder, load.bank, seconds=seconds, steps=None)
        with h5py.File(recorder.filename, "r") as file:
            assert int(file.attrs["size"]) == steps
        figures["steps_per_s"] = round(steps / elapsed)
        paced = _bench.ours(load, tmp_path / "paced", False, durability=durability)
        try:
            durations, late = _bench.paced(paced.record, load.bank, RATES[name], pace + 0.5)
        finally:
            paced.close()
        figures.update(_bench.percentiles_us(durations[int(RATES[name] * 0.5) :]))
        figures["late_steps"] = late

    benchmark.pedantic(run, rounds=1, iterations=1)
    times = np.array([spent for spent, _ in commits], np.float64) / 1e6
    figures.update(
        commit_ms_p50=round(float(np.median(times)), 2),
        commit_ms_max=round(float(times.max()), 2),
        commits=len(commits),
        fsyncs_per_commit=round(sum(syncs for _, syncs in commits) / len(commits), 1),
    )
    report(benchmark, f"{name} durability={durability}", figures)
