"""Statistics kept as rows go by: quantile summaries within their stated rank-error bound."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import Recorder, native
from h5recorder._format.summary import (
    QUANTILES,
    Summary,
    quantile_key,
    summaries_from_fields,
    unpack_summary,
)
from h5recorder._write.schema import make_leaf
from h5recorder._write.stats import SKETCH_K, LeafStats
from h5recorder.workloads import photo_frames


def joint_trajectories(steps: int, width: int, seed: int) -> np.ndarray:
    """Random walks with sensor noise, like joint angles of an arm moving about."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.01, (steps, width)), axis=0)
    return (walk + rng.normal(0, 0.002, (steps, width))).astype(np.float32)


def assert_within_rank_error(data: np.ndarray, q: float, answer: float, bound: float) -> None:
    """``answer`` lies between numpy's exact quantiles at ``q - bound`` and ``q + bound``.

    In ranks: at most ``(q + bound) * n`` values are below it and at least ``(q - bound) * n``
    are at or below it (``data`` without NaN).
    """
    data = np.sort(data[~np.isnan(data)])
    n = len(data)
    slack = bound + 1e-12
    low = np.quantile(data, max(0.0, q - slack), method="inverted_cdf")
    high = np.quantile(data, min(1.0, q + slack), method="inverted_cdf")
    below = np.searchsorted(data, answer, side="left")
    at_or_below = np.searchsorted(data, answer, side="right")
    assert low <= answer <= high, (q, answer, low, high, bound)
    assert below <= (q + slack) * n and at_or_below >= (q - slack) * n


def test_the_rank_check_rejects_an_answer_outside_the_bound():
    data = joint_trajectories(20_000, 1, seed=5)[:, 0]
    exact = np.quantile(data, 0.5, method="inverted_cdf")
    assert_within_rank_error(data, 0.5, exact, 0.0)
    off = np.quantile(data, 0.52, method="inverted_cdf")
    with pytest.raises(AssertionError):
        assert_within_rank_error(data, 0.5, off, 0.01)


def _fold_all(stats: LeafStats, data: np.ndarray, compiled: bool, block: int = 700) -> None:
    """Feed ``data`` through a small wrapping ring, as the writer does."""
    ring = np.zeros((1000, data[0].size), data.dtype)
    head = 0
    for start in range(0, len(data), block):
        rows = data[start : start + block].reshape(-1, ring.shape[1])
        slots = (head + np.arange(len(rows))) % len(ring)
        ring[slots] = rows
        stats.fold(ring, head % len(ring), len(rows), np.empty((0, ring.shape[1]), ring.dtype), 0,
                   compiled)  # fmt: skip
        stats.rows += len(rows)
        head += len(rows)


def test_compiled_sketch_and_its_numpy_twin_keep_the_same_items():
    data = joint_trajectories(3 * SKETCH_K + 123, 3, seed=1)
    data[7, 1] = np.nan
    leaf = make_leaf(("x",), spaces.Box(-np.inf, np.inf, (3,), np.float32), 1 << 20)
    compiled, twin = LeafStats(leaf), LeafStats(leaf)
    _fold_all(compiled, data, compiled=True)
    _fold_all(twin, data, compiled=False)
    assert compiled.errors.tolist() == twin.errors.tolist() and compiled.errors.max() > 0
    assert compiled.sketched.tolist() == [len(data), len(data) - 1, len(data)]
    for ours, theirs in zip(compiled.summaries(), twin.summaries(), strict=True):
        np.testing.assert_array_equal(np.sort(ours.values), np.sort(theirs.values))
        assert ours.weights.sum() == theirs.weights.sum() == ours.count


@pytest.mark.parametrize("steps", [500, 60_000])
def test_a_recorded_episode_stores_quantiles_within_their_bound(tmp_path, steps):
    vector = joint_trajectories(steps, 4, seed=steps)
    vector[3, 2] = np.nan  # quantiles ignore NaN, as numpy.nanquantile does
    counts = np.random.default_rng(0).integers(0, 1000, steps)
    space = spaces.Dict(
        {
            "joints": spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "ticks": spaces.Box(0, 10**6, (), np.int64),
        }
    )
    with Recorder("q", out_dir=str(tmp_path), observation_space=space, chunk_bytes=8192) as rec:
        for i in range(steps):
            rec.record(observation={"joints": vector[i], "ticks": counts[i]})
        stats = rec.save_stats()
    joints = stats["observation/joints"]
    assert joints["rank_error"].shape == (4,)
    if steps <= 1024:  # every value is stored: exact
        assert joints["rank_error"].max() == 0
    else:  # the bound is counted, not guessed, and stays small
        assert 0 < joints["rank_error"].max() < 0.002
    for q in QUANTILES:
        for c in range(4):
            answer = joints[quantile_key(q)][c]
            assert_within_rank_error(vector[:, c], q, answer, joints["rank_error"][c])
        assert_within_rank_error(
            counts.astype(np.float64), q, stats["observation/ticks"][quantile_key(q)],
            stats["observation/ticks"]["rank_error"],
        )  # fmt: skip
    with h5py.File(tmp_path / "q.h5") as file:
        attrs = file["observation/joints"].attrs
        np.testing.assert_array_equal(attrs["stats_q50"], joints["q50"])
        summaries = summaries_from_fields(unpack_summary(attrs["stats_summary"]))
    assert summaries is not None
    assert [s.count for s in summaries] == [steps, steps, steps - 1, steps]
    for c, summary in enumerate(summaries):  # read back from the attributes alone
        for q, answer in zip(QUANTILES, summary.quantiles(), strict=True):
            assert_within_rank_error(vector[:, c], q, answer, summary.rank_error)


def test_image_and_depth_quantiles_come_from_exact_histograms(tmp_path):
    frames = photo_frames(40, 48, 64)
    depth = photo_frames(40, 48, 64, channels=1, seed=3).astype(np.uint16) * 37 + 400
    space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
            "depth": spaces.Box(0, 65535, (48, 64), np.uint16),
        }
    )
    with Recorder("img", out_dir=str(tmp_path), observation_space=space) as rec:
        for i in range(40):
            rec.record(observation={"image": frames[i], "depth": depth[i]})
        stats = rec.save_stats()
    image, deep = stats["observation/image"], stats["observation/depth"]
    pixels = frames.reshape(-1, 3)
    packed = unpack_summary(image["summary"])
    assert packed["histogram"].shape == (3, 256) and image["rank_error"].tolist() == [0, 0, 0]
    for q in QUANTILES:  # exact per channel
        exact = np.quantile(pixels, q, axis=0, method="inverted_cdf")
        np.testing.assert_array_equal(image[quantile_key(q)], exact)
        assert_within_rank_error(depth.ravel().astype(np.float64), q, deep[quantile_key(q)][0],
                                 deep["rank_error"][0])  # fmt: skip
    np.testing.assert_array_equal(packed["histogram"][1], np.bincount(pixels[:, 1], minlength=256))
    assert deep["rank_error"][0] == pytest.approx(1 / 2048)  # 1,024 points of an exact table


def test_merged_summaries_bound_the_quantiles_of_the_concatenated_data():
    episodes = [joint_trajectories(n, 1, seed=n)[:, 0] + n % 3 for n in (900, 7000, 20_000)]
    leaf = make_leaf(("x",), spaces.Box(-np.inf, np.inf, (), np.float32), 1 << 20)
    parts = []
    for data in episodes:
        stats = LeafStats(leaf)
        _fold_all(stats, data.reshape(-1, 1), compiled=True)
        summary = stats.summaries()[0]
        points, error = summary.condensed(1024)  # as stored
        weight = 1.0 if len(points) >= summary.count else summary.count / len(points)
        parts.append(Summary(points, np.full(len(points), weight), summary.count, error))
    merged = Summary.merge(parts)
    everything = np.concatenate(episodes)
    assert merged.count == len(everything)
    assert merged.rank_error < 0.002
    for q, answer in zip(QUANTILES, merged.quantiles(), strict=True):
        assert_within_rank_error(everything, q, answer, merged.rank_error)


def test_shifted_discrete_counts_each_value_in_its_own_bin(tmp_path):
    values = np.random.default_rng(4).integers(-3, 2, 3000)  # Discrete(5, start=-3)
    space = spaces.Dict({"mode": spaces.Discrete(5, start=-3)})
    with Recorder("d", out_dir=str(tmp_path), observation_space=space) as rec:
        for value in values:
            rec.record(observation={"mode": int(value)})
        stats = rec.save_stats()
    assert stats["observation/mode"]["value_counts"].tolist() == np.bincount(values + 3).tolist()
    assert stats["observation/mode"]["min"] == -3


def test_kernels_that_index_by_value_refuse_values_outside_their_table():
    column = np.array([0, 1, 7, 2], np.int64)
    counts = np.zeros(4, np.int64)
    assert native.count_values(column, 0, 4, 0, counts) == 2  # offset forgotten: caught at 2
    assert counts.tolist() == [1, 1, 0, 0]  # nothing past the bad value was counted
    ring = np.array([[3, 300]], np.uint16)
    table = np.zeros((4, 256), np.int64)  # 8-bit table, 16-bit values
    out = np.empty((0, 2), np.uint16)
    assert native.histogram_rows(ring, 0, 1, out, 0, 1, table) is False
    assert table.sum() == 0
    wide = np.zeros((4, 65536), np.int64)
    assert native.histogram_rows(ring, 0, 1, out, 0, 1, wide) is True
    assert wide.sum(axis=0)[[3, 300]].tolist() == [1, 1]


@pytest.mark.parametrize("bad", [-1, -5, -(2**40)])
def test_count_values_reports_values_below_its_table_even_minus_one(bad):
    # Discrete(4, start=-3) counts -3..0; a value below -3 must stop the count, and the
    # result must tell "all counted" from "the bad value is -1" (it is a position).
    column = np.array([-3, 0, bad - 3, -2, -1], np.int64)
    counts = np.zeros(4, np.int64)
    position = native.count_values(column, 0, 5, -3, counts)
    assert position == 2
    assert column[position] == bad - 3
    assert counts.tolist() == [1, 0, 0, 1]
    wrapped = np.array([-2, 5, -9], np.int64)  # starts at slot 2 and wraps to slots 0, 1
    counts[:] = 0
    assert native.count_values(wrapped, 2, 3, -3, counts) == 0
    assert counts.sum() == 0
    counts[:] = 0
    assert native.count_values(np.array([-3, -2, -1, 0], np.int64), 0, 4, -3, counts) == -1
    assert counts.tolist() == [1, 1, 1, 1]


def test_signed_small_integers_keep_exact_statistics(tmp_path):
    values = np.random.default_rng(6).integers(-128, 128, (500, 2)).astype(np.int8)
    space = spaces.Dict({"torque": spaces.Box(-128, 127, (2,), np.int8)})
    with Recorder("s", out_dir=str(tmp_path), observation_space=space) as rec:
        for row in values:
            rec.record(observation={"torque": row})
        stats = rec.save_stats()["observation/torque"]
    wide = values.astype(np.float64)
    np.testing.assert_array_equal(stats["min"], wide.min(axis=0))
    np.testing.assert_allclose(stats["mean"], wide.mean(axis=0), rtol=1e-12)
    packed = unpack_summary(stats["summary"])
    assert packed["histogram_offset"] == -128
    first = np.bincount(values[:, 0].astype(np.int64) + 128, minlength=256)
    np.testing.assert_array_equal(packed["histogram"][0], first)
    for q in QUANTILES:
        exact = np.quantile(values, q, axis=0, method="inverted_cdf")
        np.testing.assert_array_equal(stats[quantile_key(q)], exact)
