"""Kernels that move rows out of the ring and keep running statistics in one pass.

Statistics are merged block by block: a block's mean and sum of squared deviations are
computed from the block itself (two passes over data already in cache), then merged into
the running totals with Chan's formula, so no mean of squares is ever subtracted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False}


@njit(**_OPTIONS)
def fold_rows(ring, start, count, out, out_row, width, n, mean, m2, low, high):  # type: ignore[no-untyped-def]
    """Copy ``count`` rows of ``ring`` (2-D, wrapping) from ``start`` into ``out[out_row:]``.

    Element ``j`` of a row feeds statistic ``j % width``; ``n`` (1 element), ``mean``,
    ``m2``, ``low`` and ``high`` (``width`` elements, float64) are updated in place.
    """
    capacity, row_size = ring.shape
    if count == 0:
        return
    block_sum = np.zeros(width)
    block_low = np.full(width, np.inf)
    block_high = np.full(width, -np.inf)
    for i in range(count):
        src = (start + i) % capacity
        dst = out_row + i
        for j in range(row_size):
            value = ring[src, j]
            out[dst, j] = value
            x = float(value)
            k = j % width
            block_sum[k] += x
            if x < block_low[k]:
                block_low[k] = x
            if x > block_high[k]:
                block_high[k] = x
    per_stat = count * (row_size // width)
    block_mean = block_sum / per_stat
    block_m2 = np.zeros(width)
    for i in range(count):
        dst = out_row + i
        for j in range(row_size):
            k = j % width
            d = float(out[dst, j]) - block_mean[k]
            block_m2[k] += d * d
    total = n[0] + per_stat
    for k in range(width):
        delta = block_mean[k] - mean[k]
        mean[k] += delta * per_stat / total
        m2[k] += block_m2[k] + delta * delta * n[0] * per_stat / total
        if block_low[k] < low[k] or not (low[k] == low[k]):
            low[k] = block_low[k]
        if block_high[k] > high[k] or not (high[k] == high[k]):
            high[k] = block_high[k]
    n[0] = total


@njit(**_OPTIONS)
def count_values(ring, start, count, offset, counts):  # type: ignore[no-untyped-def]
    """Add to ``counts[v - offset]`` for each of ``count`` values of ``ring`` from ``start``."""
    capacity = ring.shape[0]
    for i in range(count):
        counts[ring[(start + i) % capacity] - offset] += 1


BINS_PER_OCTAVE = 16
SMALLEST_NS = 64.0


@njit(**_OPTIONS)
def merge_intervals(stamps, start, count, previous, histogram):  # type: ignore[no-untyped-def]
    """Add the intervals between consecutive ``stamps`` (ns, wrapping ring) to ``histogram``.

    ``previous`` is the stamp before ``start`` (0 for none). Bin ``b`` holds intervals
    near ``SMALLEST_NS * 2 ** (b / BINS_PER_OCTAVE)``. Returns the longest interval seen.
    """
    capacity = stamps.shape[0]
    bins = histogram.shape[0]
    longest = 0
    for i in range(count):
        stamp = stamps[(start + i) % capacity]
        if previous > 0:
            gap = stamp - previous
            if gap > longest:
                longest = gap
            b = 0
            if gap > SMALLEST_NS:
                b = int(np.log2(gap / SMALLEST_NS) * BINS_PER_OCTAVE)
            if b >= bins:
                b = bins - 1
            histogram[b] += 1
        previous = stamp
    return longest


def warm_up(dtypes: list[np.dtype]) -> None:  # type: ignore[type-arg]
    """Compile (or load from the cache) every kernel for the given ring dtypes."""
    stats = (np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, np.inf), np.full(1, -np.inf))
    for dtype in dtypes:
        ring = np.zeros((2, 1), dtype)
        fold_rows(ring, 1, 2, np.zeros((2, 1), dtype), 0, 1, *stats)
        if dtype.kind in "iu" and dtype.itemsize == 8:
            count_values(ring[:, 0], 0, 2, 0, np.zeros(1, np.int64))
    merge_intervals(np.ones(2, np.int64), 0, 2, 0, np.zeros(4, np.int64))
