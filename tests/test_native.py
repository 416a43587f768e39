"""The compiled kernels and their numpy twins (used until compilation ends) agree."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import native
from h5recorder._write.schema import make_leaf
from h5recorder._write.stats import LeafStats
from h5recorder._write.writer import _merge_intervals_numpy
from h5recorder.workloads import photo_frames

CASES = {
    "rgb": (spaces.Box(0, 255, (48, 64, 3), np.uint8), lambda: photo_frames(12, 48, 64)),
    "depth": (
        spaces.Box(0, 65535, (48, 64), np.uint16),
        lambda: photo_frames(12, 48, 64, channels=1).astype(np.uint16) * 250,
    ),
    "vector": (
        spaces.Box(-np.inf, np.inf, (5,), np.float32),
        lambda: np.random.default_rng(1).normal(3, 2, (12, 5)).astype(np.float32),
    ),
    "ints": (
        spaces.Box(-(10**9), 10**9, (2,), np.int64),
        lambda: np.random.default_rng(2).integers(-(10**9), 10**9, (12, 2)),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_and_numpy_folds_agree_with_numpy(case):
    space, make = CASES[case]
    data = make()
    ring = data.reshape(len(data), -1)
    results = []
    for compiled in (True, False):
        leaf = make_leaf(("x",), space, 1 << 20)
        stats = LeafStats(leaf)
        out = np.zeros((8, ring.shape[1]), ring.dtype)
        stats.fold(ring, 9, 8, out, 0, compiled)  # wraps: rows 9, 10, 11, 0, ..., 4
        stats.fold(ring, 5, 4, out[:4], 0, compiled)  # rows 5..8
        results.append(stats.as_dict())
        np.testing.assert_array_equal(out[:4], ring[5:9])
    wide = data.astype(np.float64)
    axis = (0, 1, 2) if case == "rgb" else None if case == "depth" else 0
    for result in results:
        np.testing.assert_allclose(result["mean"], wide.mean(axis=axis), rtol=1e-12)
        np.testing.assert_allclose(result["std"], wide.std(axis=axis), rtol=1e-9)
        np.testing.assert_array_equal(result["min"], wide.min(axis=axis))
        np.testing.assert_array_equal(result["max"], wide.max(axis=axis))


def test_interval_histograms_agree():
    stamps = np.cumsum(np.random.default_rng(3).integers(10, 10**7, 100)).astype(np.int64)
    compiled = np.zeros(256, np.int64)
    twin = np.zeros(256, np.int64)
    longest = native.merge_intervals(stamps, 90, 30, 5, compiled)
    assert longest == _merge_intervals_numpy(stamps, 90, 30, 5, twin)
    np.testing.assert_array_equal(compiled, twin)
    assert compiled.sum() == 30
