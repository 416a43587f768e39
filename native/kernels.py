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
    ``m2``, ``low`` and ``high`` (``width`` elements, float64) are updated in place. An
    ``out`` with no rows means: statistics only, no copy.
    """
    capacity, row_size = ring.shape
    if count == 0:
        return
    per_row = row_size // width
    block_sum = np.zeros(width)
    block_low = np.full(width, np.inf)
    block_high = np.full(width, -np.inf)
    copy = out.shape[0] > 0
    for i in range(count):
        src = (start + i) % capacity
        if copy:
            out[out_row + i, :] = ring[src, :]
        j = 0
        for _ in range(per_row):
            for k in range(width):
                x = float(ring[src, j])
                j += 1
                block_sum[k] += x
                block_low[k] = min(block_low[k], x)
                block_high[k] = max(block_high[k], x)
    per_stat = count * per_row
    block_mean = block_sum / per_stat
    block_m2 = np.zeros(width)
    for i in range(count):
        src = (start + i) % capacity
        j = 0
        for _ in range(per_row):
            for k in range(width):
                d = float(ring[src, j]) - block_mean[k]
                j += 1
                block_m2[k] += d * d
    _merge(n, mean, m2, low, high, per_stat, block_mean, block_m2, block_low, block_high)


@njit(**_OPTIONS)
def _merge(n, mean, m2, low, high, count, block_mean, block_m2, block_low, block_high):  # type: ignore[no-untyped-def]
    """Chan's merge of a block's (count, mean, m2) into the running totals."""
    total = n[0] + count
    for k in range(mean.shape[0]):
        delta = block_mean[k] - mean[k]
        mean[k] += delta * count / total
        m2[k] += block_m2[k] + delta * delta * n[0] * count / total
        if n[0] == 0 or block_low[k] < low[k]:
            low[k] = block_low[k]
        if n[0] == 0 or block_high[k] > high[k]:
            high[k] = block_high[k]
    n[0] = total


@njit(**_OPTIONS)
def fold_small_ints(ring, start, count, out, out_row, width, sums, squares, low, high):  # type: ignore[no-untyped-def]
    """``fold_rows`` for integers of at most 16 bits: exact int64 sums of values and squares.

    The caller turns ``sums`` and ``squares`` into the block's mean and sum of squared
    deviations with exact integer arithmetic, then merges; blocks are kept small enough
    that the squares cannot overflow.
    """
    capacity, row_size = ring.shape
    per_row = row_size // width
    copy = out.shape[0] > 0
    for i in range(count):
        src = (start + i) % capacity
        if copy:
            out[out_row + i, :] = ring[src, :]
        row = ring[src]
        if width == 3:  # RGB: one pass with the three channels in registers
            _fold_rgb(row, per_row, sums, squares, low, high)
            continue
        for k in range(width):
            total = np.int64(0)
            square = np.int64(0)
            lo = low[k]
            hi = high[k]
            for p in range(per_row):
                x = np.int64(row[p * width + k])
                total += x
                square += x * x
                lo = min(lo, x)
                hi = max(hi, x)
            sums[k] += total
            squares[k] += square
            low[k] = lo
            high[k] = hi


@njit(**_OPTIONS)
def _fold_rgb(row, pixels, sums, squares, low, high):  # type: ignore[no-untyped-def]
    r_sum = g_sum = b_sum = r_sq = g_sq = b_sq = np.int64(0)
    r_lo, g_lo, b_lo = low[0], low[1], low[2]
    r_hi, g_hi, b_hi = high[0], high[1], high[2]
    for p in range(pixels):
        r = np.int64(row[3 * p])
        g = np.int64(row[3 * p + 1])
        b = np.int64(row[3 * p + 2])
        r_sum += r
        g_sum += g
        b_sum += b
        r_sq += r * r
        g_sq += g * g
        b_sq += b * b
        r_lo, g_lo, b_lo = min(r_lo, r), min(g_lo, g), min(b_lo, b)
        r_hi, g_hi, b_hi = max(r_hi, r), max(g_hi, g), max(b_hi, b)
    sums[0] += r_sum
    sums[1] += g_sum
    sums[2] += b_sum
    squares[0] += r_sq
    squares[1] += g_sq
    squares[2] += b_sq
    low[0], low[1], low[2] = r_lo, g_lo, b_lo
    high[0], high[1], high[2] = r_hi, g_hi, b_hi


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
        if dtype.kind in "iub" and dtype.itemsize <= 2:
            ints = (
                np.zeros(1, np.int64),
                np.zeros(1, np.int64),
                np.zeros(1, np.int64),
                np.zeros(1, np.int64),
            )
            fold_small_ints(ring, 1, 2, np.zeros((2, 1), dtype), 0, 1, *ints)
        else:
            fold_rows(ring, 1, 2, np.zeros((2, 1), dtype), 0, 1, *stats)
        if dtype.kind in "iu" and dtype.itemsize == 8:
            count_values(ring[:, 0], 0, 2, 0, np.zeros(1, np.int64))
    merge_intervals(np.ones(2, np.int64), 0, 2, 0, np.zeros(4, np.int64))
