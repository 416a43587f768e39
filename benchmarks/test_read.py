"""Reading episodes back: ``h5recorder.open`` side by side with mbodied's ``Replayer`` and with
whole-dataset h5py reads.

``test_iterate_seed``
    Every step of a 3,000-step ``seed`` episode (one 224x224x3 frame, an instruction and small
    vectors per step), page cache warm: the reader's steps (nested dicts) and batches,
    mbodied 1.5.1's ``Replayer`` (skipped where mbodied cannot be imported), and h5py reading
    each dataset whole (``dataset[:size]``, strings left as bytes), which builds no steps at
    all: the floor. steps/s and the ratios to ``Replayer`` and to h5py, from the same run.
``test_random_step``
    ``episode[i]`` at random steps of the same file.
``test_one_leaf_of_a_long_episode``
    One leaf of a 1,000,000-step ``proprio`` episode (50 float32 joints and a float64 per
    step): the reader's column against h5py's whole-dataset read.

    pytest benchmarks/test_read.py -q -s

Nothing here fails on timing; every subject's result is checked against what was recorded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc2 filter for h5py and mbodied
import numpy as np
import pytest
from bench_support import load_workload, report

import h5recorder
from h5recorder import Recorder

SEED_STEPS = 3000
PROPRIO_STEPS = 1_000_000
ROUNDS = 3

_seconds: dict[str, float] = {}


def record_workload(name: str, steps: int, factory: pytest.TempPathFactory) -> Path:
    load = load_workload(name)
    out = factory.mktemp(f"read_{name}")
    with Recorder(name, out_dir=str(out), image_keys_to_save=[], **load.spaces()) as recorder:
        for step in load.steps(steps):
            recorder.record(**step)
    return recorder.filename


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_workload("seed", SEED_STEPS, tmp_path_factory)


@pytest.fixture(scope="module")
def proprio_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_workload("proprio", PROPRIO_STEPS, tmp_path_factory)


def _reader_steps(path: Path) -> int:
    with h5recorder.open(path) as episode:
        count = 0
        for step in episode:
            count += step["action"]["gripper_action"] >= 0
        return count


def _reader_batches(path: Path) -> int:
    with h5recorder.open(path) as episode:
        return sum(len(batch["observation/image"]) for batch in episode.batches())


def _replayer(path: Path) -> int:
    from mbodied.data.replaying import Replayer

    replayer = Replayer(str(path))
    count = 0
    for _observation, action, _state in replayer:
        count += action["gripper_action"] >= 0
    replayer.close()
    return count


def _h5py_whole(path: Path) -> int:
    with h5py.File(path, "r") as file:
        size = int(file.attrs["size"])
        arrays: list[Any] = []
        file.visititems(
            lambda _, obj: arrays.append(obj[:size]) if isinstance(obj, h5py.Dataset) else None
        )
        return len(arrays[0])


SUBJECTS = {  # baselines first, so that the reader's ratios come from the same run
    "mbodied Replayer": _replayer,
    "h5py, whole datasets": _h5py_whole,
    "reader, steps": _reader_steps,
    "reader, batches": _reader_batches,
}


@pytest.mark.parametrize("subject", list(SUBJECTS))
def test_iterate_seed(benchmark: Any, seed_file: Path, subject: str) -> None:
    if subject == "mbodied Replayer":
        pytest.importorskip("mbodied.data.replaying")
    read = SUBJECTS[subject]
    read(seed_file)  # page cache warm, imports done
    count = benchmark.pedantic(read, args=(seed_file,), rounds=ROUNDS, iterations=1)
    assert count == SEED_STEPS
    seconds = benchmark.stats.stats.min
    _seconds[subject] = seconds
    figures: dict[str, Any] = {"steps_per_s": round(SEED_STEPS / seconds)}
    for baseline in ("mbodied Replayer", "h5py, whole datasets"):
        if baseline in _seconds and baseline != subject:
            figures[f"vs {baseline}"] = f"{_seconds[baseline] / seconds:.2f}x"
    report(benchmark, f"iterate seed: {subject}", figures)


def test_random_step(benchmark: Any, seed_file: Path) -> None:
    load = load_workload("seed")
    rng = np.random.default_rng(1)
    with h5recorder.open(seed_file) as episode:
        picks = iter(rng.integers(0, SEED_STEPS, 100_000).tolist())

        def one() -> Any:
            return episode[next(picks)]

        benchmark.pedantic(one, rounds=300, iterations=1, warmup_rounds=5)
        index = 1234
        step = episode[index]
        expected = load.bank[index % len(load.bank)]
        np.testing.assert_array_equal(
            step["observation"]["image"], expected["observation"]["image"]
        )
        assert step["observation"]["instruction"] == expected["observation"]["instruction"]
    stats = benchmark.stats.stats
    report(benchmark, "random step", {"median_ms": round(stats.median * 1e3, 3),
                                      "max_ms": round(stats.max * 1e3, 3)})


@pytest.mark.parametrize("subject", ["h5py, whole dataset", "reader column"])
def test_one_leaf_of_a_long_episode(benchmark: Any, proprio_file: Path, subject: str) -> None:
    def h5py_whole() -> np.ndarray[Any, Any]:
        with h5py.File(proprio_file, "r") as file:
            data: np.ndarray[Any, Any] = file["observation/joints"][: int(file.attrs["size"])]
            return data

    def reader() -> np.ndarray[Any, Any]:
        with h5recorder.open(proprio_file) as episode:
            return np.asarray(episode["observation/joints"])

    read = h5py_whole if subject == "h5py, whole dataset" else reader
    started = time.perf_counter()
    joints = benchmark.pedantic(read, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert joints.shape == (PROPRIO_STEPS, 50), time.perf_counter() - started
    bank = load_workload("proprio").bank
    np.testing.assert_array_equal(joints[-1], bank[(PROPRIO_STEPS - 1) % len(bank)]
                                  ["observation"]["joints"])
    seconds = benchmark.stats.stats.min
    _seconds[subject] = seconds
    figures: dict[str, Any] = {"MB_per_s": round(joints.nbytes / seconds / 1e6)}
    if "h5py, whole dataset" in _seconds and subject != "h5py, whole dataset":
        figures["vs h5py"] = f"{_seconds['h5py, whole dataset'] / seconds:.2f}x"
    report(benchmark, f"one proprio leaf: {subject}", figures)


VIEW_STEPS = 10_000


@pytest.fixture(scope="module")
def long_seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    load = load_workload("seed")
    out = tmp_path_factory.mktemp("view")
    with Recorder("long", out_dir=str(out), image_keys_to_save=[], **load.spaces()) as recorder:
        for step in load.steps(VIEW_STEPS):
            recorder.record(**step)
    return recorder.filename


@pytest.mark.parametrize("subject", ["h5recorder view (send_columns)", "rr.log per step"])
def test_view_a_long_episode(benchmark: Any, long_seed_file: Path, subject: str) -> None:
    """A 10,000-step seed episode saved as a Rerun recording: ``h5recorder view --save``
    against logging the same leaves one step at a time with ``rr.log``."""
    rr = pytest.importorskip("rerun", reason="rerun-sdk is the 'view' extra")
    from h5recorder._tools.view import view

    path = long_seed_file
    out = path.parent

    def per_step() -> None:
        recording = rr.RecordingStream("per step")
        recording.save(str(out / "per_step.rrd"))
        with h5recorder.open(path) as episode:
            for index, step in enumerate(episode):
                recording.set_time("step", sequence=index)
                recording.log("observation/image", rr.Image(step["observation"]["image"]))
                for root in ("action", "state"):
                    for key, value in step[root].items():
                        recording.log(f"{root}/{key}",
                                      rr.Scalars(np.asarray(value, np.float64).reshape(-1)))
        recording.flush()
        recording.disconnect()

    def columns() -> None:
        view(path, save=out / "columns.rrd")

    run = columns if subject.startswith("h5recorder") else per_step
    benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.min
    _seconds[subject] = seconds
    figures: dict[str, Any] = {"seconds": round(seconds, 2),
                               "steps_per_s": round(VIEW_STEPS / seconds)}
    if subject != "h5recorder view (send_columns)" and "h5recorder view (send_columns)" in _seconds:
        figures["h5recorder view is"] = (
            f"{seconds / _seconds['h5recorder view (send_columns)']:.1f}x faster"
        )
    report(benchmark, f"view 10,000 steps: {subject}", figures)
