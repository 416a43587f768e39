"""h5recorder side by side with mbodied's Recorder, a naive h5py writer and the disk's limit.

For each workload of :mod:`h5recorder.workloads` (``seed``, ``rig``, ``proprio``), in one run:

``test_end_to_end``
    Steps recorded flat out, then ``close()``: steps/s and MB/s (raw step bytes) over the
    whole, close included. HDF5 only: every subject records for ``--case-seconds``. With PNG
    frames (the workload's ``image_keys``): h5recorder and mbodied record the same number of
    steps (``_bench.PNG_STEPS``), since ``close()`` waits for every frame. Subjects:

    - ``sequential`` (the physical limit): the raw bytes of each step appended to one file in
      one stream, ``fsync`` at the end; ``sequential, no fsync``: the same without ``fsync``;
    - ``naive h5py``: one-row chunks, a resize, a write and ``size`` at every step;
    - ``mbodied``: mbodied 1.5.1's ``Recorder``, skipped (``importorskip``) where mbodied
      cannot be imported. With PNG, its images are mbodied ``Image`` objects, the only values it
      saves; by default that writes a JPEG at quality 10 named ``<index>.png``;
      ``mbodied, png encoding`` makes them ``Image(..., encoding="png")`` (real PNG);
    - ``h5recorder``: blosc2 lz4 level 1, the defaults.

    Ratios to mbodied (steps/s) and to ``sequential`` (MB/s) measured earlier in the same
    session are reported.

``test_latency``
    ``record()`` called at a steady rate (``_bench.LATENCY_RATES``) for ``--case-seconds``
    while everything behind it runs (writer thread, PNG encoders); p50, p99, p99.9, max.

    pytest benchmarks/test_workloads.py -q -s

Nothing here fails on timing; the files written are checked for content.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from bench_support import check_steps, load_workload, report

from h5recorder._tools import bench as _bench
from h5recorder.workloads import WORKLOADS

# Baselines first, so that the recorders' ratios can be taken in the same run.
SUBJECTS = [
    ("sequential", False),
    ("sequential, no fsync", False),
    ("naive h5py", False),
    ("mbodied", False),
    ("h5recorder", False),
    ("mbodied", True),
    (_bench.MBODIED_TRUE_PNG, True),
    ("h5recorder", True),
]
CASES = [(name, subject, png) for name in WORKLOADS for subject, png in SUBJECTS]
LATENCY_CASES = [
    (name, subject, png)
    for name, subject, png in CASES
    if subject in ("naive h5py", "mbodied", "h5recorder")
]

_steps_per_s: dict[tuple[str, str, bool], float] = {}
_mb_per_s: dict[tuple[str, str, bool], float] = {}


def _ids(cases: list[tuple[str, str, bool]]) -> list[str]:
    def name(subject: str) -> str:
        return subject.replace(", ", "-").replace(" ", "_")

    return [f"{n}-{name(s)}{'+png' if p else ''}" for n, s, p in cases]


def _factory(name: str, subject: str, png: bool) -> tuple[Any, _bench.Factory]:
    load = load_workload(name)
    if png and not load.image_keys:
        pytest.skip(f"the {name} workload has no image keys")
    if subject.startswith("mbodied"):
        pytest.importorskip("mbodied.data.recording", reason="mbodied is not installed here")
    return load, _bench.factories(load)[subject]


@pytest.mark.parametrize(("name", "subject", "png"), CASES, ids=_ids(CASES))
def test_end_to_end(
    benchmark: Any, tmp_path: Path, request: pytest.FixtureRequest,
    name: str, subject: str, png: bool,
) -> None:
    load, make = _factory(name, subject, png)
    benchmark.group = f"end to end, record + close ({name})"
    seconds = request.config.getoption("--case-seconds")
    bank = _bench._bank_for(subject, load, png)
    writer = make(tmp_path, png)
    result: dict[str, Any] = {}

    def run() -> None:
        result["steps"], result["total"], result["close"] = _bench.end_to_end(
            writer, bank, seconds=None if png else seconds,
            steps=_bench.PNG_STEPS[name] if png else None,
        )

    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        writer.close()

    steps, total = result["steps"], result["total"]
    figures: dict[str, Any] = {
        "steps": steps,
        "seconds": round(total, 3),
        "close_s": round(result["close"], 3),
        "steps_per_s": round(steps / total, 1),
        "mb_per_s": round(steps * load.step_bytes / total / 1e6, 1),
    }
    key = (name, subject, png)
    _steps_per_s[key] = steps / total
    _mb_per_s[key] = steps * load.step_bytes / total / 1e6
    theirs = _steps_per_s.get((name, "mbodied", png))
    if theirs and subject != "mbodied":
        figures["vs_mbodied"] = round(steps / total / theirs, 2)
    limit = _mb_per_s.get((name, "sequential", False))
    if limit and not png and subject != "sequential":
        figures["vs_sequential"] = round(_mb_per_s[key] / limit, 2)
    if png:
        figures["png_files"] = sum(1 for _ in tmp_path.rglob("*.png"))
    report(benchmark, f"end to end, {name}, {subject}{' + PNG' if png else ''}", figures)

    if subject.startswith("sequential"):
        assert isinstance(writer, _bench.SequentialWriter)
        assert writer.path.stat().st_size == writer.bytes > 0
    else:
        path = writer.path if isinstance(writer, _bench.NaiveWriter) else writer.filename
        check_steps(Path(path), load, steps)
    if png and subject == "h5recorder":
        # every frame of every saved key, by the time close() returned
        assert figures["png_files"] == steps * len(load.image_keys)
    elif png:
        # mbodied names each step's file by the step alone: one file per step, whatever the keys
        assert figures["png_files"] == steps
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize(("name", "subject", "png"), LATENCY_CASES, ids=_ids(LATENCY_CASES))
def test_latency(
    benchmark: Any, tmp_path: Path, request: pytest.FixtureRequest,
    name: str, subject: str, png: bool,
) -> None:
    load, make = _factory(name, subject, png)
    benchmark.group = f"record() latency, paced ({name})"
    seconds = request.config.getoption("--case-seconds")
    rate = _bench.LATENCY_RATES[name]
    figures: dict[str, Any] = {}

    def run() -> None:
        figures.update(_bench.latency(subject, make, load, tmp_path, png=png, rate=rate,
                                      seconds=seconds))

    benchmark.pedantic(run, rounds=1, iterations=1)
    report(benchmark, f"record() at {rate:g} Hz, {name}, {subject}{' + PNG' if png else ''}",
           figures)
    assert figures["latency_steps"] > 0
    assert figures["p50_us"] <= figures["p99_us"] <= figures["p999_us"] <= figures["max_us"]
    shutil.rmtree(tmp_path, ignore_errors=True)
