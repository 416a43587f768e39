"""Shared checks: record steps, read the file back with plain h5py, compare."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the blosc2 filter
import numpy as np
import pytest

from h5recorder import Recorder

# Recorders made in this process record into a 32 MiB ring unless a test gives buffer_bytes or
# is marked default_ring. Faulting in the default 256 MiB took 180 ms per recorder on average,
# 36 s of a run of the suite (200 recorders); a smaller ring also wraps sooner, which the tests
# want to cross. The default ring is what every recording subprocess of the suite, the demo
# and the benchmarks use.
TEST_RING_BYTES = 32 << 20


@pytest.fixture(autouse=True)
def _smaller_default_ring(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("default_ring"):
        return
    original = Recorder.__init__

    @functools.wraps(original)
    def init(self: Recorder, *args: Any, **options: Any) -> None:
        options.setdefault("buffer_bytes", TEST_RING_BYTES)
        original(self, *args, **options)

    monkeypatch.setattr(Recorder, "__init__", init)


def read_leaf(file: h5py.File, path: str) -> np.ndarray:
    dataset = file[path]
    data = dataset[: int(file.attrs["size"])]
    if h5py.check_string_dtype(dataset.dtype) is not None:
        data = np.array([item.decode() for item in data], dtype=object)
    return data


def expected_column(steps: list[dict[str, Any]], root: str, keys: tuple[str, ...]) -> list[Any]:
    column = []
    for step in steps:
        value = step.get(root)
        for key in keys:
            value = value[key] if isinstance(value, dict) else getattr(value, key)
        column.append(value)
    return column


def assert_same(stored: Any, recorded: Any, where: str) -> None:
    if isinstance(recorded, str):
        assert stored == recorded, where
    elif isinstance(recorded, tuple):
        assert json.loads(stored) == {"item": [np.asarray(item).tolist() for item in recorded]}, (
            where
        )
    else:
        array = np.asarray(getattr(recorded, "array", recorded))
        np.testing.assert_array_equal(np.asarray(stored), array, err_msg=where)


def check_roundtrip(
    tmp_path: Path,
    spaces_by_root: dict[str, Any],
    steps: list[dict[str, Any]],
    leaves: dict[str, tuple[str, ...]],
    **options: Any,
) -> h5py.File:
    """Record ``steps``, close, and compare every leaf (``"root/key": (root, key...)``)."""
    with Recorder("roundtrip", out_dir=str(tmp_path), **spaces_by_root, **options) as recorder:
        for step in steps:
            recorder.record(**step)
    file = h5py.File(recorder.filename, "r")
    assert int(file.attrs["size"]) == len(steps)
    for name, (root, *keys) in leaves.items():
        stored = read_leaf(file, name)
        assert file[name].shape[0] == len(steps), f"{name}: rows beyond size"
        for index, value in enumerate(expected_column(steps, root, tuple(keys))):
            assert_same(stored[index], value, f"{name}[{index}]")
    return file


@pytest.fixture
def frames() -> np.ndarray:
    from h5recorder.workloads import photo_frames

    return photo_frames(24, 48, 64, seed=3)
