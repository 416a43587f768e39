"""Kernels that move rows out of the ring and keep running statistics in one pass.

Statistics are merged block by block: a block's mean and sum of squared deviations are
computed from the block itself (two passes over data already in cache), then merged into
the running totals with Chan's formula, so no mean of squares is ever subtracted. Integers
of at most 16 bits are counted into histograms instead (exact moments and quantiles); other
numbers also feed a compactor sketch whose rank error is counted as it compacts.

A kernel that indexes a table by a value checks that the value is inside the table: per
value (``count_values``), or once for all when the table covers every value of the dtype
(``histogram_rows``). A wrong offset must raise, never write past an array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

_kernel = njit(cache=True, nogil=True, boundscheck=False)


@_kernel
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


@_kernel
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


TABLES = 4  # histogram copies filled in turn, so that equal neighbours do not wait on each other


@_kernel
def histogram_rows(ring, start, count, out, out_row, width, histogram):  # type: ignore[no-untyped-def]
    """``fold_rows`` for unsigned integers of at most 16 bits: count every value.

    Element ``j`` of a row adds one to ``histogram[t * width + j % width, value]``, the copy
    ``t`` taking the pixels in turn (the caller adds the ``TABLES`` copies up). The histogram
    gives exact moments and exact quantiles; signed data is counted through an unsigned view.
    Bounds are checked once: the table must have a column for every value of the ring's
    dtype, so no value can index past it. Returns False (counting nothing) when it has not.
    """
    if histogram.shape[1] < (1 << (8 * ring.itemsize)) or histogram.shape[0] < TABLES * width:
        return False
    capacity, row_size = ring.shape
    per_row = row_size // width
    copy = out.shape[0] > 0
    for i in range(count):
        src = (start + i) % capacity
        if copy:
            out[out_row + i, :] = ring[src, :]
        row = ring[src]
        if width == 3:  # RGB, unrolled over four pixels
            whole = per_row - per_row % 4
            for b in range(0, 3 * whole, 12):
                histogram[0, row[b]] += 1
                histogram[1, row[b + 1]] += 1
                histogram[2, row[b + 2]] += 1
                histogram[3, row[b + 3]] += 1
                histogram[4, row[b + 4]] += 1
                histogram[5, row[b + 5]] += 1
                histogram[6, row[b + 6]] += 1
                histogram[7, row[b + 7]] += 1
                histogram[8, row[b + 8]] += 1
                histogram[9, row[b + 9]] += 1
                histogram[10, row[b + 10]] += 1
                histogram[11, row[b + 11]] += 1
            for b in range(3 * whole, row_size):
                histogram[b % 3, row[b]] += 1
        elif width == 1:  # gray, depth, scalars
            whole = row_size - row_size % 4
            for b in range(0, whole, 4):
                histogram[0, row[b]] += 1
                histogram[1, row[b + 1]] += 1
                histogram[2, row[b + 2]] += 1
                histogram[3, row[b + 3]] += 1
            for b in range(whole, row_size):
                histogram[0, row[b]] += 1
        else:
            j = 0
            for p in range(per_row):
                table = (p % TABLES) * width
                for k in range(width):
                    histogram[table + k, row[j]] += 1
                    j += 1
    return True


@_kernel
def sketch_rows(ring, start, count, width, levels, fills, passes, errors, counts):  # type: ignore[no-untyped-def]
    """Add ``count`` ring rows (2-D, wrapping) from ``start`` to one quantile sketch per column.

    A deterministic compactor per column (element ``j`` of a row feeds column ``j % width``):
    ``levels[c, h]`` holds up to ``k`` items of weight ``2**h``. When level 0 fills it is
    sorted and every other item (even and odd positions in turn) moves up as one item of
    twice the weight; a level that receives a second sorted run merges the two and compacts
    the same way. Each compaction at level ``h`` moves the estimated rank of any value by at
    most ``2**h``: ``errors[c]`` adds that up, so it bounds the rank error of the column
    exactly. NaN is skipped; ``counts[c]`` counts the values added. Returns -1, or the
    column whose levels ran out (the caller allocates more levels before calling).
    """
    capacity, row_size = ring.shape
    k = levels.shape[2]
    half = k // 2
    per_row = row_size // width
    run = np.empty(half, levels.dtype)
    merged = np.empty(k, levels.dtype)
    for i in range(count):
        row = ring[(start + i) % capacity]
        j = 0
        for _ in range(per_row):
            for c in range(width):
                x = row[j]
                j += 1
                if x != x:
                    continue
                fill = fills[c, 0]
                levels[c, 0, fill] = x
                counts[c] += 1
                if fill + 1 < k:
                    fills[c, 0] = fill + 1
                    continue
                fills[c, 0] = 0
                bottom = levels[c, 0]
                bottom.sort()
                offset = passes[c, 0] & 1
                passes[c, 0] += 1
                for t in range(half):
                    run[t] = bottom[2 * t + offset]
                errors[c] += 1.0
                if not _push(levels[c], fills[c], passes[c], run, merged, errors, c):
                    return c
    return -1


@_kernel
def _push(levels, fills, passes, run, merged, errors, c):  # type: ignore[no-untyped-def]
    """Add the sorted ``run`` (half a level) to level 1, compacting upwards while levels fill."""
    half = run.shape[0]
    for h in range(1, levels.shape[0]):
        if fills[h] == 0:
            levels[h, :half] = run
            fills[h] = half
            return True
        stored = levels[h]
        i = 0
        j = 0
        for t in range(2 * half):
            if j >= half or (i < half and stored[i] <= run[j]):
                merged[t] = stored[i]
                i += 1
            else:
                merged[t] = run[j]
                j += 1
        offset = passes[h] & 1
        passes[h] += 1
        for t in range(half):
            run[t] = merged[2 * t + offset]
        fills[h] = 0
        errors[c] += 2.0**h
    return False


@_kernel
def count_values(ring, start, count, offset, counts):  # type: ignore[no-untyped-def]
    """Add to ``counts[v - offset]`` for each of ``count`` values of ``ring`` from ``start``.

    Returns -1 when every value was counted, or the position ``i`` (``0 <= i < count``) of
    the first value outside the table, whose value is ``ring[(start + i) % capacity]``;
    nothing from it on is counted. A position, not the value: any value, -1 included, may be
    the bad one. The index is checked, never trusted, since a wrong ``offset`` would
    otherwise write past ``counts``.
    """
    capacity = ring.shape[0]
    bins = counts.shape[0]
    for i in range(count):
        v = ring[(start + i) % capacity]
        index = v - offset
        if index < 0 or index >= bins:
            return i
        counts[index] += 1
    return -1


BINS_PER_OCTAVE = 16
SMALLEST_NS = 64.0


@_kernel
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


def warm_up(dtypes: list[np.dtype[Any]]) -> None:
    """Compile (or load from the cache) every kernel for the given ring dtypes."""
    stats = (np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, np.inf), np.full(1, -np.inf))
    for dtype in dtypes:
        ring = np.zeros((2, 1), dtype)
        if dtype.kind in "iub" and dtype.itemsize <= 2:
            unsigned = np.dtype(f"u{dtype.itemsize}")
            table = np.zeros((TABLES, 1 << (8 * dtype.itemsize)), np.int64)
            histogram_rows(ring.view(unsigned), 1, 2, np.zeros((2, 1), unsigned), 0, 1, table)
            if dtype.itemsize == 1:  # whole chunks are counted into 32-bit tables
                table = np.zeros((TABLES, 256), np.uint32)
                histogram_rows(ring.view(unsigned), 1, 2, np.zeros((2, 1), unsigned), 0, 1, table)
        else:
            fold_rows(ring, 1, 2, np.zeros((2, 1), dtype), 0, 1, *stats)
            sketch_rows(
                ring,
                1,
                2,
                1,
                np.zeros((1, 2, 4), dtype),
                np.zeros((1, 2), np.int64),
                np.zeros((1, 2), np.int64),
                np.zeros(1),
                np.zeros(1, np.int64),
            )
        if dtype.kind in "iu" and dtype.itemsize == 8:
            count_values(ring[:, 0], 0, 2, 0, np.zeros(1, np.int64))
    merge_intervals(np.ones(2, np.int64), 0, 2, 0, np.zeros(4, np.int64))
