"""Recordings that cross every boundary the writer treats specially, read back exactly.

Each leaf fills more than two chunks, commits land in the middle of chunks (so partly filled
chunks are written raw and rewritten), one image compresses well (a smooth render) and one
hardly at all (a photograph with sensor noise), and every compression setting is tried. Each
step's time is checked against the clock read just before and just after its ``record()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the blosc2 filter for plain h5py
import numpy as np
import pytest
from gymnasium import spaces

import h5recorder
from h5recorder import Recorder
from h5recorder.workloads import photo_frames, render_frames

STEPS = 3000
HEIGHT, WIDTH = 24, 32
COMPRESSIONS = [None, "blosc2", "blosc2:zstd", "portable", "gzip", "lzf"]


def _values(steps: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20)
    photos = photo_frames(97, HEIGHT, WIDTH, seed=20)  # noisy: hardly compresses
    return {
        "observation/camera": photos[np.arange(steps) % len(photos)],
        "observation/render": render_frames(steps, HEIGHT, WIDTH, seed=20),
        "observation/joints": np.cumsum(rng.normal(0, 0.02, (steps, 7)), axis=0).astype(
            np.float32
        ),
        "observation/mode": rng.integers(-2, 3, steps),
        "observation/flags": rng.integers(0, 2, (steps, 3)).astype(np.int8),
        "observation/note": np.array([f"step {i // 40}" for i in range(steps)], dtype=object),
        "action": np.tanh(rng.normal(0, 0.6, (steps, 4))),
    }


OBSERVATION = spaces.Dict(
    {
        "camera": spaces.Box(0, 255, (HEIGHT, WIDTH, 3), np.uint8),
        "render": spaces.Box(0, 255, (HEIGHT, WIDTH, 3), np.uint8),
        "joints": spaces.Box(-np.inf, np.inf, (7,), np.float32),
        "mode": spaces.Discrete(5, start=-2),
        "flags": spaces.MultiBinary(3),
        "note": spaces.Text(20),
    }
)
ACTION = spaces.Box(-1.0, 1.0, (4,), np.float64)


@pytest.fixture(scope="module")
def values() -> dict[str, np.ndarray]:
    return _values(STEPS)


def _record(
    folder: Path,
    values: dict[str, np.ndarray],
    compression: str | None,
    before: np.ndarray | None = None,
    after: np.ndarray | None = None,
) -> tuple[Path, dict]:
    """Record ``values`` with ``compression``, commits landing inside chunks; ``before`` and
    ``after`` get ``perf_counter_ns()`` around each ``record()``. Returns the file and its
    statistics."""
    clock = time.perf_counter_ns
    with Recorder(
        "bounds",
        out_dir=str(folder),
        observation_space=OBSERVATION,
        action_space=ACTION,
        image_keys_to_save=[],
        compression=compression,
        commit_interval=0.01,
    ) as recorder:
        for i in range(STEPS):
            started = clock()
            recorder.record(
                observation={
                    "camera": values["observation/camera"][i],
                    "render": values["observation/render"][i],
                    "joints": values["observation/joints"][i],
                    "mode": int(values["observation/mode"][i]),
                    "flags": values["observation/flags"][i],
                    "note": values["observation/note"][i],
                },
                action=values["action"][i],
            )
            if before is not None and after is not None:
                before[i], after[i] = started, clock()
            if i % 500 == 499:
                time.sleep(0.02)  # let commits land inside chunks
        stats = recorder.save_stats()
    return recorder.filename, stats


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_leaf_and_every_steps_time_reads_back_exactly(tmp_path, values, compression):
    before = np.empty(STEPS, np.int64)
    after = np.empty(STEPS, np.int64)
    wall_before = time.time_ns()
    filename, stats = _record(tmp_path, values, compression, before, after)
    wall_after = time.time_ns()
    for name in ("observation/camera", "observation/render"):  # counted by several threads
        pixels = values[name].reshape(-1, 3).astype(np.float64)
        assert stats[name]["count"] == STEPS
        np.testing.assert_allclose(stats[name]["mean"], pixels.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats[name]["std"], pixels.std(axis=0), rtol=1e-9)
        np.testing.assert_array_equal(stats[name]["max"], pixels.max(axis=0))

    with h5py.File(filename, "r") as file:
        assert int(file.attrs["size"]) == STEPS
        for name in values:
            assert file[name].chunks[0] * 2 < STEPS, f"{name}: fewer than three chunks"

    with h5recorder.open(filename) as episode:
        assert len(episode) == STEPS
        for name, expected in values.items():
            got = np.asarray(episode[name])
            if expected.dtype == object:
                assert got.tolist() == expected.tolist(), name
            else:
                np.testing.assert_array_equal(got, expected, err_msg=name)
        assert episode.time is not None
        stamps = np.asarray(episode.time.monotonic_ns)
        wall = np.asarray(episode.time.wall_ns)
        seconds = episode.time.seconds()
    late = np.flatnonzero((stamps < before) | (stamps > after))
    assert late.size == 0, f"{late.size} stamps outside their record() call, first at {late[:5]}"
    assert np.all(np.diff(seconds) > 0)
    slack = 200_000_000  # the wall clock is mapped to the monotonic one once per drain
    assert wall.min() >= wall_before - slack and wall.max() <= wall_after + slack
    offsets = wall - stamps
    assert np.ptp(offsets) < slack, "the wall clock drifts from the monotonic one"


def test_compressible_and_incompressible_chunks_are_both_stored(tmp_path, values):
    """The fixture really crosses the raw/compressed boundary: the render compresses, the
    photograph is stored raw (``RAW_ABOVE``)."""
    steps = 1200
    with Recorder(
        "kinds",
        out_dir=str(tmp_path),
        observation_space=spaces.Dict(
            {k: OBSERVATION[k] for k in ("camera", "render")}
        ),
        image_keys_to_save=[],
    ) as recorder:
        for i in range(steps):
            recorder.record(
                observation={
                    "camera": values["observation/camera"][i],
                    "render": values["observation/render"][i],
                }
            )
    with h5py.File(recorder.filename, "r") as file:
        ratios = {}
        for name in ("camera", "render"):
            dataset = file["observation"][name]
            infos = [dataset.id.get_chunk_info(k) for k in range(dataset.id.get_num_chunks())]
            full = infos[:-1]  # the last one is partly filled: raw by design
            raw = dataset.chunks[0] * int(np.prod(dataset.chunks[1:]))
            ratios[name] = sum(info.size for info in full) / (raw * len(full))
    assert ratios["render"] < 0.5
    assert ratios["camera"] > 0.9


# -- any HDF5 reader, no plugin ----------------------------------------------------------------

PLAIN_READER = """
import json, sys
import numpy as np
try:
    import hdf5plugin
except ImportError:
    pass
else:
    sys.exit("hdf5plugin is importable here")
import h5py

out = {}
with h5py.File(sys.argv[1], "r") as file:
    size = int(file.attrs["size"])
    leaves = [("observation/" + key, file["observation"][key]) for key in file["observation"]]
    leaves.append(("action", file["action"]))
    time = file[file.attrs["recorder_time"]]
    leaves += [("time/" + key, time[key]) for key in time
               if isinstance(time[key], h5py.Dataset)]
    for name, dataset in leaves:
        try:
            rows = dataset[:size]
        except OSError as error:
            out[name] = {"error": str(error)[:300]}
            continue
        if rows.dtype == object:
            out[name] = {"text": [row.decode() for row in rows]}
        else:
            np.save(sys.argv[2] + "/" + name.replace("/", "-") + ".npy", rows)
            out[name] = {"saved": True}
print(json.dumps(out))
"""


def _plain_environment(folder: Path) -> dict[str, str]:
    """An environment with only h5py and numpy: ``python -S`` (no site-packages, no ``.pth``
    hook) with a folder that links to those two packages alone on ``PYTHONPATH``."""
    site = Path(h5py.__file__).resolve().parent.parent
    folder.mkdir()
    for name in ("h5py", "h5py.libs", "numpy", "numpy.libs"):
        if (site / name).exists():
            (folder / name).symlink_to(site / name)
    env = {k: v for k, v in os.environ.items() if k not in ("HDF5_PLUGIN_PATH", "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(folder)}


@pytest.mark.parametrize("compression", ["blosc2", "portable"])
def test_a_reader_without_plugins_reads_every_portable_leaf(tmp_path, values, compression):
    """Where the file travels: plain h5py, no hdf5plugin. Under the default, every leaf but
    the images reads exactly (they are blosc2 and say so); under ``"portable"``, every leaf."""
    filename, _ = _record(tmp_path, values, compression)
    with h5recorder.open(filename) as episode:
        expected = dict(values)
        expected["time/monotonic_ns"] = np.asarray(episode.time.monotonic_ns)
        expected["time/wall_ns"] = np.asarray(episode.time.wall_ns)
    with h5py.File(filename, "r") as file:  # whole chunks, compressed, in every leaf
        for name in values:
            dataset = file[name]
            compressed = [
                dataset.id.get_chunk_info(k).filter_mask == 0
                for k in range(dataset.id.get_num_chunks())
            ]
            assert dataset.chunks[0] * 2 < STEPS, f"{name}: fewer than three chunks"
            if dataset.dtype != object and name != "observation/camera":
                assert any(compressed), f"{name}: no chunk stored compressed"
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    child = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(PLAIN_READER), str(filename),
         str(arrays)],
        capture_output=True, text=True, timeout=120, env=_plain_environment(tmp_path / "site"),
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    read = json.loads(child.stdout)
    assert set(read) == set(expected)
    if compression == "blosc2":  # the render's chunks are blosc2; the noisy photograph's raw
        assert "error" in read.pop("observation/render"), "blosc2 read without the plugin?"
    for name, want in expected.items():
        if name not in read:
            continue
        assert "error" not in read[name], f"{name}: {read[name]}"
        if want.dtype == object:
            assert read[name]["text"] == want.tolist(), name
        else:
            got = np.load(arrays / (name.replace("/", "-") + ".npy"))
            np.testing.assert_array_equal(got, want, err_msg=name)
