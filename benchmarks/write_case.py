"""One write-path case in a process of its own, for ``test_write_path.py``; prints one JSON line.

    python benchmarks/write_case.py SUBJECT WORKLOAD FOLDER SECONDS [backlog=BYTES] [let_go=off]

A fresh process per case keeps each subject's CPU time its own (``time.process_time`` covers
every thread of the process: the writer, its crew, the compressors). The subject records the
workload's steps flat out for ``SECONDS``, every ``record()`` timed, then ``close()``; the file
is checked (steps and a row of each end) before the figures are printed. ``backlog=BYTES``
sets h5recorder's ``BACKLOG_BYTES`` (what a caller that outruns the writer may have pending;
``0``: the whole ring) for ``test_write_path.py::test_backlog``; ``let_go=off`` keeps every
committed page in the page cache (``JournaledFile.let_go`` does nothing) for
``test_write_path.py::test_let_go``. CPU time is reported whole,
and split into user and kernel time (``os.times``): the kernel's share is mostly the page
cache taking the bytes, which every subject pays alike.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from h5recorder._tools.bench import McapWriter, SequentialWriter, ours
from h5recorder.workloads import workload

SUBJECTS = ("stream", "stream-fsync", "h5recorder", "h5recorder-none", "mcap", "mcap-lz4")


def make(subject: str, load: Any, folder: Path) -> Any:
    if subject == "stream":
        return SequentialWriter(folder / "raw.bin", load.bank, fsync=False)
    if subject == "stream-fsync":
        return SequentialWriter(folder / "raw.bin", load.bank, fsync=True)
    if subject == "h5recorder":
        return ours(load, folder, False)
    if subject == "h5recorder-none":
        return ours(load, folder, False, compression=None)
    if subject.startswith("mcap"):
        return McapWriter(folder / "run.mcap", "lz4" if subject == "mcap-lz4" else "none")
    raise ValueError(f"unknown subject {subject!r}; expected one of {SUBJECTS}")


def check(subject: str, load: Any, folder: Path, steps: int) -> None:
    if subject.startswith("h5recorder"):
        import h5py
        import hdf5plugin  # noqa: F401 - blosc2 chunks

        (path,) = folder.glob("*.h5")
        bank = load.bank
        with h5py.File(path, "r") as file:
            assert int(file.attrs["size"]) == steps, (file.attrs["size"], steps)
            for row in (0, steps - 1):
                for key, value in bank[row % len(bank)]["observation"].items():
                    if isinstance(value, np.ndarray):
                        assert np.array_equal(file["observation"][key][row], value), key
    else:
        (path,) = [p for p in folder.iterdir() if p.is_file()]
        assert path.stat().st_size >= steps * load.step_bytes * 0.9


def main() -> None:
    subject, name, where, seconds = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    for option in sys.argv[5:]:
        key, value = option.split("=", 1)
        if key == "backlog":
            from h5recorder._write import recorder

            recorder.BACKLOG_BYTES = int(value) or 1 << 62
        elif key == "let_go" and value == "off":
            from h5recorder._write.journal import JournaledFile

            JournaledFile.let_go = lambda self, end: None  # type: ignore[method-assign]
        else:
            raise ValueError(f"unknown option {option!r}; expected backlog=BYTES or let_go=off")
    load = workload(name)
    folder = where / f"write_case_{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        writer = make(subject, load, folder)
        bank, size = load.bank, len(load.bank)
        durations = np.zeros(10_000_000, np.int64)
        clock = time.perf_counter_ns
        cpu, times = time.process_time(), os.times()
        started = clock()
        deadline = started + int(seconds * 1e9)
        steps = 0
        while True:
            before = clock()
            if before >= deadline:
                break
            writer.record(**bank[steps % size])
            durations[steps] = clock() - before
            steps += 1
        recorded = clock()
        writer.close()
        finished = clock()
        cpu, after = time.process_time() - cpu, os.times()
        user, kernel = after.user - times.user, after.system - times.system
        check(subject, load, folder, steps)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = (finished - started) / 1e9
    gigabytes = steps * load.step_bytes / 1e9
    p50, p99 = np.percentile(durations[:steps], [50, 99]) / 1e3
    print(
        json.dumps(
            {
                "subject": subject,
                "steps": steps,
                "steps_per_s": round(steps / total, 1),
                "MB_per_s": round(gigabytes * 1e3 / total, 1),
                "record_p50_us": round(float(p50), 1),
                "record_p99_us": round(float(p99), 1),
                "close_s": round((finished - recorded) / 1e9, 3),
                "cpu_s_per_GB": round(cpu / gigabytes, 3),
                "user_cpu_s_per_GB": round(user / gigabytes, 3),
                "kernel_cpu_s_per_GB": round(kernel / gigabytes, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
