"""The write path against the physical limit and the writers people would pick instead.

``test_flat_out``
    Each subject records a workload flat out for ``--write-seconds`` (default 10), then
    closes; subjects alternate, ``--write-rounds`` rounds (default 3), each case in a fresh
    process (``write_case.py``), all writing to one target: tmpfs (``/dev/shm``, the writers'
    own cost) or the disk (the folder pytest gives). The subjects: a sequential stream of the
    same raw bytes through the page cache (``stream``) and with fsync at the end
    (``stream-fsync``); h5recorder with its defaults and with ``compression=None``; MCAP's
    Python writer uncompressed and with lz4, each leaf a message. Reported per subject, median
    of the rounds: steps/s, MB/s, record() p50/p99, close() seconds, CPU seconds per GB
    written; and h5recorder's ratios to the page-cache stream and to MCAP uncompressed.

``test_backlog``
    h5recorder alone, flat out, with the backlog a caller that outruns the writer may leave
    pending (``BACKLOG_BYTES``) at 16, 32 and 64 MiB and at the whole ring (256 MiB), cases
    alternating: steps/s, close() seconds, kernel CPU s/GB, and each one's ratio to the whole
    ring, per round, median shown.

``test_let_go``
    h5recorder alone, flat out to the disk, letting go of committed pages (the default) and
    not (``let_go=off``), cases alternating: steps/s, user and kernel CPU s/GB, close()
    seconds, and the ratio of the two per round, median shown.

``test_close_after_a_long_recording``
    10,000 seed steps, ``flush()`` (so nothing is pending), then ``close()`` timed: the
    fixed cost of finishing an episode (statistics, trimming, attributes).

The page cache of these machines swings with what is still being written back; ``os.sync()``
runs before every case. Nothing here fails on timing: the files are checked for content.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from bench_support import report

from h5recorder import Recorder
from h5recorder.workloads import workload

CASE = Path(__file__).with_name("write_case.py")
SUBJECTS = ("stream", "h5recorder", "h5recorder-none", "mcap", "mcap-lz4", "stream-fsync")


def run_case(
    subject: str, name: str, where: Path, seconds: float, *extra: str
) -> dict[str, float]:
    os.sync()
    done = subprocess.run(
        [sys.executable, str(CASE), subject, name, str(where), str(seconds), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


@pytest.mark.parametrize(
    ("name", "target"),
    [("seed", "tmpfs"), ("seed", "disk"), ("hd", "tmpfs"), ("hd", "disk")],
)
def test_flat_out(benchmark, request, tmp_path, name, target):
    seconds = request.config.getoption("--write-seconds")
    rounds = request.config.getoption("--write-rounds")
    where = Path("/dev/shm") if target == "tmpfs" else tmp_path
    if target == "tmpfs" and not where.is_dir():
        pytest.skip("no /dev/shm here")
    runs: dict[str, list[dict[str, float]]] = {subject: [] for subject in SUBJECTS}

    def rounds_of_cases() -> None:
        for round_number in range(rounds):
            for subject in SUBJECTS:
                figures = run_case(subject, name, where, seconds)
                runs[subject].append(figures)
                print(f"  {name} {target} round {round_number}: {figures}")

    benchmark.pedantic(rounds_of_cases, rounds=1, iterations=1)
    median = {
        subject: {key: float(np.median([run[key] for run in done])) for key in done[0]
                  if key != "subject"}
        for subject, done in runs.items()
    }
    figures: dict[str, object] = {"workload": name, "target": target, "seconds": seconds,
                                  "rounds": rounds}
    for subject, values in median.items():
        for key in ("steps_per_s", "MB_per_s", "record_p50_us", "record_p99_us", "close_s",
                    "cpu_s_per_GB", "user_cpu_s_per_GB", "kernel_cpu_s_per_GB"):
            figures[f"{subject}:{key}"] = values[key]
    for ours in ("h5recorder", "h5recorder-none"):
        for theirs in ("stream", "mcap"):
            ratios = [
                mine["steps_per_s"] / other["steps_per_s"]
                for mine, other in zip(runs[ours], runs[theirs], strict=True)
            ]
            figures[f"{ours} / {theirs}"] = round(float(np.median(ratios)), 2)
    report(benchmark, f"write path, {name}, {target}", figures)


BACKLOGS = {"16 MiB": 16 << 20, "32 MiB": 32 << 20, "64 MiB": 64 << 20, "whole ring": 0}


@pytest.mark.parametrize("name", ["seed", "hd"])
def test_backlog(benchmark, request, name):
    seconds = request.config.getoption("--write-seconds")
    rounds = request.config.getoption("--write-rounds")
    where = Path("/dev/shm")
    if not where.is_dir():
        pytest.skip("no /dev/shm here")
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in BACKLOGS}

    def rounds_of_cases() -> None:
        for round_number in range(rounds):
            for label, backlog in BACKLOGS.items():
                figures = run_case("h5recorder", name, where, seconds, f"backlog={backlog}")
                runs[label].append(figures)
                print(f"  {name} backlog {label} round {round_number}: {figures}")

    benchmark.pedantic(rounds_of_cases, rounds=1, iterations=1)
    figures: dict[str, object] = {"workload": name, "seconds": seconds, "rounds": rounds}
    for label, done in runs.items():
        for key in ("steps_per_s", "close_s", "kernel_cpu_s_per_GB", "user_cpu_s_per_GB"):
            figures[f"{label}:{key}"] = float(np.median([run[key] for run in done]))
        ratios = [
            mine["steps_per_s"] / whole["steps_per_s"]
            for mine, whole in zip(done, runs["whole ring"], strict=True)
        ]
        figures[f"{label} / whole ring"] = round(float(np.median(ratios)), 2)
    report(benchmark, f"backlog of an outrunning caller, {name}, tmpfs", figures)


@pytest.mark.parametrize("name", ["seed", "hd"])
def test_let_go(benchmark, request, tmp_path, name):
    seconds = request.config.getoption("--write-seconds")
    rounds = request.config.getoption("--write-rounds")
    cases = {"let go (default)": (), "kept in the page cache": ("let_go=off",)}
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in cases}

    def rounds_of_cases() -> None:
        for round_number in range(rounds):
            for label, extra in cases.items():
                figures = run_case("h5recorder", name, tmp_path, seconds, *extra)
                runs[label].append(figures)
                print(f"  {name} disk, {label}, round {round_number}: {figures}")

    benchmark.pedantic(rounds_of_cases, rounds=1, iterations=1)
    figures: dict[str, object] = {"workload": name, "seconds": seconds, "rounds": rounds}
    for label, done in runs.items():
        for key in ("steps_per_s", "MB_per_s", "user_cpu_s_per_GB", "kernel_cpu_s_per_GB",
                    "close_s"):
            figures[f"{label}:{key}"] = float(np.median([run[key] for run in done]))
    ratios = [
        mine["steps_per_s"] / kept["steps_per_s"]
        for mine, kept in zip(runs["let go (default)"], runs["kept in the page cache"],
                              strict=True)
    ]
    figures["let go / kept"] = round(float(np.median(ratios)), 2)
    report(benchmark, f"letting go of committed pages, {name}, disk", figures)


def test_close_after_a_long_recording(benchmark, tmp_path):
    load = workload("seed")
    timings: list[float] = []

    def one_recording() -> None:
        folder = tmp_path / f"r{len(timings)}"
        with Recorder("close", out_dir=str(folder), image_keys_to_save=[], **load.spaces()) as rec:
            rec.wait_ready(timeout=120)
            for i in range(10_000):
                rec.record(**load.bank[i % len(load.bank)])
            rec.flush()
            started = time.perf_counter()
        timings.append(time.perf_counter() - started)
        with h5py.File(folder / "close.h5", "r") as file:
            assert int(file.attrs["size"]) == 10_000

    benchmark.pedantic(one_recording, rounds=3, iterations=1)
    report(benchmark, "close() after 10,000 seed steps, nothing pending",
           {"close_s": [round(t, 3) for t in timings]})
