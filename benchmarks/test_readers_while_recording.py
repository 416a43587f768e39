"""What reading while recording costs, and whom.

- Opening *another* file with h5py: h5recorder wraps ``h5py.File.__init__`` to commit before
  opening a file an open recorder writes; for other files that must cost nothing measurable.
  Timed side by side: h5py's own ``__init__`` (unwrapped), the wrapper with no recorder open,
  the wrapper with a recorder open on another file.
- ``record()`` latency at a steady rate, alone and while another process takes ``read_live``
  snapshots in a loop (seed workload).

Run: ``pytest benchmarks/test_readers_while_recording.py -q -s``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from bench_support import load_workload

from h5recorder import Recorder
from h5recorder._tools import bench as _bench


def _open_close_us(path: Path, init: Any, rounds: int = 2000) -> float:
    times = np.empty(rounds)
    for index in range(rounds):
        file = h5py.File.__new__(h5py.File)
        started = time.perf_counter_ns()
        init(file, path, "r")
        times[index] = time.perf_counter_ns() - started
        file.close()
    return float(np.median(times)) / 1000


def test_opening_other_files_costs_the_same(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.create_dataset("x", data=np.arange(10))
    wrapped = h5py.File.__init__
    original = wrapped.__wrapped__  # functools.wraps keeps h5py's own
    figures = {"h5py's own": _open_close_us(other, original),
               "wrapped, no recorder open": _open_close_us(other, wrapped)}
    load = load_workload("seed")
    with Recorder("open", out_dir=str(tmp_path), image_keys_to_save=[], **load.spaces()) as rec:
        rec.record(**load.bank[0])
        figures["wrapped, a recorder open"] = _open_close_us(other, wrapped)
    print("\nopen+close of another file, median us:",
          {name: round(value, 1) for name, value in figures.items()})


_READER = """
import sys, time
from h5recorder import read_live
path, seconds = sys.argv[1], float(sys.argv[2])
reads, ends = 0, time.monotonic() + seconds
while time.monotonic() < ends:
    read_live(path, lambda f: f["observation/image"][int(f.attrs["size"]) - 1])
    reads += 1
print(reads)
"""


def test_record_latency_alone_and_with_a_live_reader(tmp_path: Path, request: Any) -> None:
    seconds = float(request.config.getoption("--pace-seconds"))
    load = load_workload("seed")
    rate = _bench.LATENCY_RATES["seed"]
    figures = {}
    with Recorder("lat", out_dir=str(tmp_path), image_keys_to_save=[], **load.spaces()) as rec:
        rec.wait_ready()
        alone, _ = _bench.paced(rec.record, load.bank, rate, seconds)
        figures["alone"] = _bench.percentiles_us(alone)
        reader = subprocess.Popen(
            [sys.executable, "-c", _READER, str(rec.filename), str(seconds + 2)],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(1.0)  # the reader's interpreter starts
        together, _ = _bench.paced(rec.record, load.bank, rate, seconds)
        figures["with a read_live loop"] = _bench.percentiles_us(together)
        reads = int(reader.communicate(timeout=120)[0])
    print(f"\nrecord() at {rate:g} steps/s, seed workload ({reads} snapshots):", figures)
