"""Many episodes: reading them with Ray Data on 1 and 2 CPUs, with one process looping over
the reader, and with mbodied's ``Replayer``; merged statistics of 1,000 files from their
stored summaries, and recomputed from the data.

Ray's cases time a read after its workers have started (a first, small read starts them:
a job pays that once, and it is reported apart).

Run: ``pytest benchmarks/test_many_episodes.py -q -s`` (``--episodes``, ``--episode-steps``,
``--stats-files`` to resize). Every case reads the same files, all leaves, the page cache
warm (each file was just written or read), and touches every batch; figures are steps/s.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from bench_support import report
from gymnasium import spaces

import h5recorder
from h5recorder import Recorder
from h5recorder._format.summary import QUANTILES
from h5recorder.workloads import Workload, photo_frames

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own


@pytest.fixture(scope="module")
def seed_episodes(
    tmp_path_factory: pytest.TempPathFactory, seed: Workload, request: Any
) -> list[Path]:
    """N episodes of the seed workload (224x224 frame, instruction, small vectors)."""
    count = request.config.getoption("--episodes")
    steps = request.config.getoption("--episode-steps")
    folder = tmp_path_factory.mktemp("seed_episodes")
    bank = seed.bank
    for episode in range(count):
        with Recorder(f"episode_{episode:03d}", out_dir=str(folder), image_keys_to_save=[],
                      **seed.spaces()) as recorder:  # fmt: skip
            for i in range(steps):
                recorder.record(**bank[(episode * 7 + i) % len(bank)])
    return sorted(folder.glob("*.h5"))


def _touch(batch: dict[str, Any]) -> int:
    """Use every array of a batch a little (a training loop would copy it to a device)."""
    total = 0
    for values in batch.values():
        if isinstance(values, np.ndarray) and values.dtype != object and values.size:
            total += int(values.reshape(len(values), -1)[:, 0].sum() != 0)
    return total


def _reader_loop(paths: list[Path]) -> int:
    steps = 0
    for path in paths:
        with h5recorder.open(path) as episode:
            for batch in episode.batches():
                _touch(batch)
                steps += len(batch["step"])
    return steps


_startup: list[float] = []
_cpu: dict[str, list[dict[str, float]]] = {}


def _cpu_seconds() -> dict[str, float]:
    """User and system CPU seconds so far of this process and of Ray's worker processes."""
    own = psutil.Process().cpu_times()
    seconds = {"driver user": own.user, "driver sys": own.system, "workers user": 0.0,
               "workers sys": 0.0}  # fmt: skip
    for process in psutil.process_iter(["name"]):
        if (process.info["name"] or "").startswith("ray::"):
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            seconds["workers user"] += times.user
            seconds["workers sys"] += times.system
    return seconds


def _ray_read(paths: list[Path], cpus: int, passes: int = 3) -> list[tuple[int, float]]:
    """Steps and seconds of each pass over ``paths`` on a fresh local cluster of ``cpus``.

    The first pass writes into object-store memory no worker has touched yet: each worker
    pays a page fault per 4 KiB of it, once (the store is 30% of RAM, 7.5 GB here). Later
    passes, like a training job's later epochs, find it mapped.
    """
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        from h5recorder.ray import read_episodes

        # start the workers (a fresh interpreter each, importing h5recorder): once per job
        warm = time.perf_counter()
        list(read_episodes(paths[:1]).iter_batches(batch_size=None))
        _startup.append(time.perf_counter() - warm)
        results = []
        for number in range(passes):
            before = _cpu_seconds()
            started = time.perf_counter()
            steps = 0
            for batch in read_episodes(paths).iter_batches(batch_size=None, batch_format="numpy"):
                _touch(batch)
                steps += len(batch["step"])
            results.append((steps, time.perf_counter() - started))
            after = _cpu_seconds()
            when = "first pass" if number == 0 else "later passes"
            _cpu.setdefault(f"{cpus} {when}", []).append(
                {name: (after[name] - before[name]) * 1e6 / steps for name in after}
            )
        return results
    finally:
        ray.shutdown()


def _replayer_read(paths: list[Path], limit: int) -> tuple[int, float] | None:
    try:
        from mbodied.data.replaying import Replayer
    except ImportError:
        return None
    started = time.perf_counter()
    steps = 0
    for path in paths:
        replayer = Replayer(str(path))
        for _ in replayer:
            steps += 1
            if steps >= limit:
                break
        replayer.close()
        if steps >= limit:
            break
    return steps, time.perf_counter() - started


def test_reading_many_episodes(benchmark: Any, seed_episodes: list[Path]) -> None:
    """Steps/s of Ray Data on 1 and 2 CPUs, one process over the reader, mbodied's Replayer."""
    paths = seed_episodes
    total = _reader_loop(paths)  # warms the page cache
    figures: dict[str, Any] = {"episodes": len(paths), "steps": total}
    rates: dict[str, list[float]] = {"reader loop": []}
    for name in ("ray 1 cpu", "ray 2 cpus"):
        rates[f"{name} first pass"] = []
        rates[f"{name} later passes"] = []
    for round_ in range(2):  # alternate, so that load on the machine falls on every case
        started = time.perf_counter()
        assert _reader_loop(paths) == total
        rates["reader loop"].append(total / (time.perf_counter() - started))
        for cpus in (1, 2) if round_ == 0 else (2, 1):
            name = f"ray {cpus} cpu{'s' if cpus > 1 else ''}"
            passes = _ray_read(paths, cpus)
            assert all(steps == total for steps, _ in passes)
            rates[f"{name} first pass"].append(total / passes[0][1])
            rates[f"{name} later passes"].extend(total / seconds for _, seconds in passes[1:])
    for name, values in rates.items():
        figures[f"{name} steps/s"] = round(max(values))
    figures["ray first read (workers starting) s"] = round(max(_startup), 1)
    replayed = _replayer_read(paths, limit=2000)
    if replayed is not None:
        figures["mbodied Replayer steps/s"] = round(replayed[0] / replayed[1])
        for when in ("first pass", "later passes"):
            figures[f"ray 2 cpus / Replayer, {when}"] = round(
                figures[f"ray 2 cpus {when} steps/s"] / figures["mbodied Replayer steps/s"], 1
            )
    for key, samples in _cpu.items():  # where the time goes: CPU µs per step, by process
        cpus, when = key.split(" ", 1)
        for name in samples[0]:
            figures[f"ray {cpus} cpu, {when}: {name} us/step"] = round(
                float(np.median([sample[name] for sample in samples])), 1
            )
    for when in ("first pass", "later passes"):
        figures[f"ray 2 cpus / 1 cpu, {when}"] = round(
            figures[f"ray 2 cpus {when} steps/s"] / figures[f"ray 1 cpu {when} steps/s"], 2
        )
    benchmark.pedantic(lambda: None, rounds=1)
    report(benchmark, "many episodes: reading", figures)


def _small_episode(folder: Path, name: str, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = photo_frames(32, 24, 32, seed=seed)
    joints = np.cumsum(rng.normal(0, 0.02, (steps, 7)), axis=0).astype(np.float32)
    space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (24, 32, 3), np.uint8),
            "joints": spaces.Box(-np.inf, np.inf, (7,), np.float32),
            "gripper": spaces.Discrete(3, start=-1),
        }
    )
    with Recorder(name, out_dir=str(folder), observation_space=space, image_keys_to_save=[],
                  action_space=spaces.Box(-1, 1, (4,), np.float64)) as recorder:  # fmt: skip
        for i in range(steps):
            recorder.record(
                observation={"image": frames[i % 32], "joints": joints[i],
                             "gripper": int(rng.integers(-1, 2))},
                action=np.tanh(rng.normal(0, 0.5, 4)),
            )  # fmt: skip


def _recompute(paths: list[Path]) -> dict[str, Any]:
    """The statistics computed from the data itself: every file read, then numpy."""
    columns: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with h5recorder.open(path) as episode:
            for name in episode.keys():
                columns.setdefault(name, []).append(np.asarray(episode[name]))
    result = {}
    for name, parts in columns.items():
        data = np.concatenate(parts)
        data = data.reshape(-1, 3) if name.endswith("image") else data.reshape(len(data), -1)
        wide = data.astype(np.float64)
        result[name] = {
            "mean": wide.mean(axis=0),
            "std": wide.std(axis=0),
            "min": wide.min(axis=0),
            "max": wide.max(axis=0),
            "quantiles": np.quantile(wide, QUANTILES, axis=0, method="inverted_cdf"),
        }
    return result


def test_merged_statistics_of_many_files(
    benchmark: Any, tmp_path_factory: pytest.TempPathFactory, request: Any
) -> None:
    """h5recorder.dataset (stored summaries only) against reading every file and numpy."""
    files = request.config.getoption("--stats-files")
    folder = tmp_path_factory.mktemp("stats_files")
    distinct = 10
    for seed in range(distinct):
        _small_episode(folder, f"distinct_{seed}", 200 + 37 * seed, seed)
    originals = sorted(folder.glob("*.h5"))
    for index in range(files - distinct):  # copies of the distinct ones: same cost to read
        shutil.copy(originals[index % distinct], folder / f"copy_{index:05d}.h5")
    paths = sorted(folder.glob("*.h5"))
    started = time.perf_counter()
    merged = h5recorder.dataset(folder)
    from_summaries = time.perf_counter() - started
    started = time.perf_counter()
    exact = _recompute(paths)
    from_data = time.perf_counter() - started
    joints = merged.stats["observation/joints"]
    np.testing.assert_allclose(joints["mean"], exact["observation/joints"]["mean"], rtol=1e-9)
    benchmark.pedantic(lambda: None, rounds=1)
    report(
        benchmark,
        "many episodes: merged statistics",
        {
            "files": len(paths),
            "steps": merged.steps,
            "from summaries s": round(from_summaries, 2),
            "recomputed from data s": round(from_data, 2),
            "speedup": round(from_data / from_summaries, 1),
        },
    )
