"""Running statistics of every leaf, kept by the writer as rows leave the ring.

Numeric leaves keep count, min, max, mean and the sum of squared deviations per statistic
column (per channel for images, per element otherwise), updated by ``native.fold_rows``.
``Discrete`` leaves also count each value. ``save_stats()`` reads these totals: it never
re-reads the file.
"""

from __future__ import annotations

import math
from typing import Any

import h5py
import numpy as np

from . import native
from ._schema import Leaf

__all__ = ["LeafStats"]


class LeafStats:
    """Totals of one leaf; the arrays are handed to the kernels and updated in place."""

    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf
        width = 1 if leaf.is_string else leaf.stat_width
        self.width = width
        self.rows = 0
        self.n = np.zeros(1)
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)
        self.low = np.full(width, np.nan)
        self.high = np.full(width, np.nan)
        self.counts: np.ndarray[Any, Any] | None = None
        kind = np.dtype(np.uint8) if leaf.dtype.kind == "b" else leaf.dtype
        self.exact = not leaf.is_string and kind.kind in "iu" and kind.itemsize <= 2
        if self.exact:
            info = np.iinfo(kind)
            biggest = max(abs(int(info.min)), int(info.max)) ** 2
            per_row = max(1, (math.prod(leaf.shape) or 1) // width)
            # int64 sums of squares of a block must not overflow
            self.block_rows = max(1, (2**62 // biggest) // per_row)
            self.per_row = per_row
            self._sums = np.zeros(width, np.int64)
            self._squares = np.zeros(width, np.int64)
            self._low = np.zeros(width, np.int64)
            self._high = np.zeros(width, np.int64)
        if leaf.kind == "discrete":
            self.counts = np.zeros(int(leaf.space.n), np.int64)  # type: ignore[attr-defined]
            self.offset = int(leaf.space.start)  # type: ignore[attr-defined]

    def fold(
        self,
        ring: np.ndarray[Any, Any],
        slot: int,
        count: int,
        out: np.ndarray[Any, Any],
        out_row: int,
    ) -> None:
        """Copy ``count`` ring rows (2-D views) into ``out`` and add them to the totals."""
        if not self.exact:
            native.fold_rows(ring, slot, count, out, out_row, self.width,
                             self.n, self.mean, self.m2, self.low, self.high)
            return
        capacity = ring.shape[0]
        while count:
            rows = min(count, self.block_rows)
            self._sums[:] = 0
            self._squares[:] = 0
            self._low[:] = np.iinfo(np.int64).max
            self._high[:] = np.iinfo(np.int64).min
            native.fold_small_ints(ring, slot, rows, out, out_row, self.width,
                                   self._sums, self._squares, self._low, self._high)
            elements = rows * self.per_row
            block_mean = np.empty(self.width)
            block_m2 = np.empty(self.width)
            for k in range(self.width):
                total, square = int(self._sums[k]), int(self._squares[k])
                block_mean[k] = total / elements
                block_m2[k] = (elements * square - total * total) / elements  # exact integers
            native.kernels._merge(self.n, self.mean, self.m2, self.low, self.high, elements,
                                  block_mean, block_m2, self._low.astype(np.float64),
                                  self._high.astype(np.float64))
            slot = (slot + rows) % capacity
            out_row += rows
            count -= rows

    def as_dict(self) -> dict[str, Any]:
        """count, min, max, mean, std (population), and value_counts for ``Discrete``."""
        result: dict[str, Any] = {"count": self.rows}
        if not self.leaf.is_string:
            n = self.n[0]
            std = np.sqrt(self.m2 / n) if n else np.full(self.width, np.nan)
            mean = self.mean if n else np.full(self.width, np.nan)
            shaped = self.width > 1 and not self.leaf.is_image
            shape = self.leaf.shape if shaped else (self.width,)
            for key, values in (
                ("min", self.low), ("max", self.high), ("mean", mean), ("std", std)
            ):
                array = np.array(values, np.float64).reshape(shape)
                result[key] = array if (shaped or self.leaf.is_image) else float(array[0])
        if self.counts is not None:
            result["value_counts"] = self.counts.copy()
        return result

    def store(self, dataset: h5py.Dataset) -> dict[str, Any]:
        """Write the statistics as ``stats_*`` attributes of ``dataset``; return them."""
        result = self.as_dict()
        for key, value in result.items():
            dataset.attrs[f"stats_{key}"] = value
        return result
