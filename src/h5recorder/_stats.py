"""Running statistics of every leaf, kept by the writer as rows leave the ring.

Numeric leaves keep count, min, max, mean and the sum of squared deviations per statistic
column (per channel for images, per element otherwise), updated by ``native.fold_rows``.
``Discrete`` leaves also count each value. ``save_stats()`` reads these totals: it never
re-reads the file.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

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
        if leaf.kind == "discrete":
            self.counts = np.zeros(int(leaf.space.n), np.int64)  # type: ignore[attr-defined]
            self.offset = int(leaf.space.start)  # type: ignore[attr-defined]

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
