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

from . import native  # type: ignore[attr-defined]  # mapped from native/
from ._schema import Leaf

__all__ = ["LeafStats"]


def _exact_moments(
    count: int, sums: np.ndarray[Any, Any], squares: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Mean and sum of squared deviations from exact integer sums (Python ints: no overflow,
    no cancellation), rounded once to float64."""
    pairs = [(int(total), int(square)) for total, square in zip(sums, squares, strict=True)]
    mean = np.array([total / count for total, _ in pairs])
    m2 = np.array([(count * square - total * total) / count for total, square in pairs])
    return mean, m2


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
        compiled: bool = True,
    ) -> None:
        """Copy ``count`` ring rows (2-D views) into ``out`` and add them to the totals.

        An ``out`` with no rows: statistics only. Until the kernels are compiled
        (``compiled=False``), numpy does the same work.
        """
        if not compiled or self.leaf.dtype == np.float16:  # numba has no float16 arithmetic
            with np.errstate(all="ignore"):  # inf and nan are recorded as they are
                self._fold_numpy(ring, slot, count, out, out_row)
            return
        if not self.exact:
            native.fold_rows(
                ring,
                slot,
                count,
                out,
                out_row,
                self.width,
                self.n,
                self.mean,
                self.m2,
                self.low,
                self.high,
            )
            return
        capacity = ring.shape[0]
        while count:
            rows = min(count, self.block_rows)
            self._sums[:] = 0
            self._squares[:] = 0
            self._low[:] = np.iinfo(np.int64).max
            self._high[:] = np.iinfo(np.int64).min
            native.fold_small_ints(
                ring,
                slot,
                rows,
                out,
                out_row,
                self.width,
                self._sums,
                self._squares,
                self._low,
                self._high,
            )
            elements = rows * self.per_row
            block_mean, block_m2 = _exact_moments(elements, self._sums, self._squares)
            self.merge(elements, block_mean, block_m2, self._low, self._high)
            slot = (slot + rows) % capacity
            out_row += rows
            count -= rows

    def _fold_numpy(
        self,
        ring: np.ndarray[Any, Any],
        slot: int,
        count: int,
        out: np.ndarray[Any, Any],
        out_row: int,
    ) -> None:
        index = (slot + np.arange(count)) % ring.shape[0]
        if out.shape[0]:
            out[out_row : out_row + count] = ring[index]
            block = out[out_row : out_row + count].reshape(-1, self.width)
        else:  # statistics only
            block = ring[index].reshape(-1, self.width)
        if self.exact:
            wide = block.astype(np.int64)
            block_mean, block_m2 = _exact_moments(
                block.shape[0], wide.sum(axis=0), (wide * wide).sum(axis=0)
            )
        else:
            wide = block.astype(np.float64)
            block_mean = wide.mean(axis=0)
            block_m2 = ((wide - block_mean) ** 2).sum(axis=0)
        self.merge(block.shape[0], block_mean, block_m2, block.min(axis=0), block.max(axis=0))

    def merge(
        self,
        count: int,
        block_mean: np.ndarray[Any, Any],
        block_m2: np.ndarray[Any, Any],
        block_low: np.ndarray[Any, Any],
        block_high: np.ndarray[Any, Any],
    ) -> None:
        """Chan's merge of one block's (count, mean, m2, min, max) into the totals."""
        before = self.n[0]
        total = before + count
        delta = block_mean - self.mean
        self.mean += delta * count / total
        self.m2 += block_m2 + delta * delta * before * count / total
        low = block_low.astype(np.float64)
        high = block_high.astype(np.float64)
        self.low[:] = low if before == 0 else np.minimum(self.low, low)
        self.high[:] = high if before == 0 else np.maximum(self.high, high)
        self.n[0] = total

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
                ("min", self.low),
                ("max", self.high),
                ("mean", mean),
                ("std", std),
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
