"""Running statistics of every leaf, kept by the writer as rows leave the ring.

Each statistic column (per channel for images, per element otherwise) keeps count, min, max,
mean, the sum of squared deviations and a quantile summary that merges across episodes:

- integers of at most 16 bits (images, depth, flags) keep an exact histogram
  (``native.histogram_rows``): moments from it are exact, and so are their quantiles;
- everything else keeps Chan merges of block moments (``native.fold_rows``) and a
  deterministic compactor sketch (``native.sketch_rows``) whose rank error is counted as it
  goes, so each stored summary carries a bound that holds, not an estimate.

``save_stats()`` stores them as ``stats_*`` attributes: ``q01`` ... ``q99`` and ``rank_error``
shaped like ``mean``, and ``stats_summary``: one array of bytes holding the moments and
the quantile summary (the histogram of 8-bit data, else points per column with their count
and rank error) packed by :func:`pack_summary`, from which ``h5recorder.dataset`` merges any
set of episodes with one attribute read per dataset and no data read.
Quantiles ignore NaN (as ``numpy.nanquantile`` does).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from .. import native
from .._format.summary import (
    QUANTILES,
    Summary,
    pack_summary,
    quantile_key,
)
from ..errors import WriterError
from .schema import Leaf

__all__ = ["LeafStats"]

SKETCH_K = 4096  # items per compactor level: the bound grows like log2(n / k) / k
SKETCH_POINTS = 1024  # points stored per column: they add at most 1 / 2048 to the rank error
MAX_SKETCH_COLUMNS = 64  # wider leaves keep moments only
ATTRIBUTE_BYTES = 56_000  # an HDF5 attribute of the default file format holds under 64 KiB
MAX_ATTRIBUTE_BYTES = 64_000
HISTOGRAM_CELLS = 1 << 21  # 16 MiB of int64 counts at most per leaf


def _exact_moments(
    values: np.ndarray[Any, Any], counts: np.ndarray[Any, Any]
) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations of a histogram, with exact integer sums
    (Python ints: no overflow, no cancellation), rounded once to float64."""
    used = np.flatnonzero(counts)
    pairs = list(zip(values[used].tolist(), counts[used].tolist(), strict=True))
    n = sum(c for _, c in pairs)
    if not n:
        return 0, np.nan, np.nan
    total = sum(v * c for v, c in pairs)
    square = sum(v * v * c for v, c in pairs)
    return n, total / n, (n * square - total * total) / n


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
        self.histogram: np.ndarray[Any, Any] | None = None
        self.levels: np.ndarray[Any, Any] | None = None
        self._scratch: np.ndarray[Any, Any] | None = None
        kind = np.dtype(np.uint8) if leaf.dtype.kind == "b" else leaf.dtype
        small = not leaf.is_string and kind.kind in "iu" and kind.itemsize <= 2
        if small and width << (8 * kind.itemsize) <= HISTOGRAM_CELLS:
            # counted through an unsigned view: bin b holds the value whose bits are b
            self.unsigned = np.dtype(f"u{kind.itemsize}")
            bins = 1 << (8 * kind.itemsize)
            self.bin_values = np.arange(bins, dtype=self.unsigned).view(kind).astype(np.int64)
            self.histogram = np.zeros((native.kernels.TABLES * width, bins), np.int64)
            self._no_rows = np.empty((0, 1), self.unsigned)
        elif not leaf.is_string and width <= MAX_SKETCH_COLUMNS:
            # numba has no float16: its values are sketched as float32, exactly
            self.sketch_dtype = np.dtype(np.float32) if kind == np.float16 else kind
            self.levels = np.zeros((width, 1, SKETCH_K), self.sketch_dtype)
            self.fills = np.zeros((width, 1), np.int64)
            self.passes = np.zeros((width, 1), np.int64)
            self.errors = np.zeros(width)
            self.sketched = np.zeros(width, np.int64)
        if leaf.kind == "discrete":
            self.counts = np.zeros(int(leaf.space.n), np.int64)  # type: ignore[attr-defined]
            self.offset = int(leaf.space.start)  # type: ignore[attr-defined]

    @property
    def has_lanes(self) -> bool:
        """Whether whole chunks may be counted on other threads (:meth:`count_in_lane`)."""
        return self.histogram is not None

    def add_lanes(self, lanes: int) -> None:
        """Give the histogram ``lanes`` more sets of tables, one per thread that may count
        whole chunks at the same time as the others (:meth:`count_in_lane`). Call before
        anything is counted; :meth:`_tables` adds every set up."""
        if self.histogram is not None and lanes > 0:
            rows, bins = self.histogram.shape
            self.histogram = np.zeros(((1 + lanes) * rows, bins), np.int64)
            if bins == 256:
                # 8-bit values are counted into 32-bit tables first, then added up: the
                # kernel runs about twice as fast on tables half the size
                self._scratch = np.zeros(((1 + lanes) * rows, bins), np.uint32)

    def count_in_lane(
        self, ring: np.ndarray[Any, Any], slot: int, count: int, lane: int
    ) -> None:
        """Count ``count`` ring rows (2-D view) into set ``lane`` (1 and up) of the histogram
        tables, copying nothing. Threads given different lanes never share a table, and the
        compiled kernel runs without the GIL: several chunks are counted at once."""
        assert self.histogram is not None
        rows = native.kernels.TABLES * self.width
        tables = self.histogram[lane * rows : (lane + 1) * rows]
        if self._scratch is None:
            self._count(ring.view(self.unsigned), slot, count, self._no_rows, 0, tables)
            return
        scratch = self._scratch[lane * rows : (lane + 1) * rows]
        scratch[:] = 0  # a chunk holds far fewer than 2**32 values
        self._count(ring.view(self.unsigned), slot, count, self._no_rows, 0, scratch)
        tables += scratch

    def _count(
        self,
        ring: np.ndarray[Any, Any],
        slot: int,
        count: int,
        out: np.ndarray[Any, Any],
        out_row: int,
        tables: np.ndarray[Any, Any],
    ) -> None:
        """``native.histogram_rows`` into ``tables``; a table too small is an error."""
        if not native.histogram_rows(ring, slot, count, out, out_row, self.width, tables):
            raise WriterError(f"{self.leaf.name}: its statistics table is too small")

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
        if self.histogram is not None:
            ring, out = ring.view(self.unsigned), out.view(self.unsigned)
            if compiled:
                self._count(ring, slot, count, out, out_row, self.histogram)
            else:
                block = self._copy_numpy(ring, slot, count, out, out_row)
                for column in range(self.width):
                    self.histogram[column] += np.bincount(
                        block[:, column], minlength=self.histogram.shape[1]
                    )
            return
        if not compiled or self.leaf.dtype == np.float16:  # numba has no float16 arithmetic
            block = self._copy_numpy(ring, slot, count, out, out_row)
            with np.errstate(all="ignore"):  # inf and nan are recorded as they are
                self._moments_numpy(block)
        else:
            native.fold_rows(
                ring, slot, count, out, out_row, self.width,
                self.n, self.mean, self.m2, self.low, self.high,
            )  # fmt: skip
        if self.levels is not None:
            self._sketch(ring, slot, count, compiled)

    def _copy_numpy(
        self,
        ring: np.ndarray[Any, Any],
        slot: int,
        count: int,
        out: np.ndarray[Any, Any],
        out_row: int,
    ) -> np.ndarray[Any, Any]:
        index = (slot + np.arange(count)) % ring.shape[0]
        if out.shape[0]:
            out[out_row : out_row + count] = ring[index]
            return out[out_row : out_row + count].reshape(-1, self.width)
        block: np.ndarray[Any, Any] = ring[index].reshape(-1, self.width)
        return block  # statistics only

    def _moments_numpy(self, block: np.ndarray[Any, Any]) -> None:
        wide = block.astype(np.float64)
        block_mean = wide.mean(axis=0)
        block_m2 = ((wide - block_mean) ** 2).sum(axis=0)
        self.merge(block.shape[0], block_mean, block_m2, block.min(axis=0), block.max(axis=0))

    def _sketch(self, ring: np.ndarray[Any, Any], slot: int, count: int, compiled: bool) -> None:
        assert self.levels is not None
        per_column = count * (ring.shape[1] // self.width)
        most = int(self.sketched.max()) + per_column
        levels = self.levels.shape[1]
        if SKETCH_K << (levels - 1) <= most:  # level h holds up to k * 2**(h-1) values
            while SKETCH_K << (levels - 1) <= most:
                levels += 1
            grow = levels - self.levels.shape[1]
            self.levels = np.concatenate(
                (self.levels, np.zeros((self.width, grow, SKETCH_K), self.sketch_dtype)), axis=1
            )
            self.fills = np.concatenate((self.fills, np.zeros((self.width, grow), np.int64)), 1)
            self.passes = np.concatenate((self.passes, np.zeros((self.width, grow), np.int64)), 1)
        if compiled and ring.dtype == self.sketch_dtype:
            column = native.sketch_rows(
                ring, slot, count, self.width, self.levels, self.fills, self.passes,
                self.errors, self.sketched,
            )  # fmt: skip
            if column != -1:
                raise WriterError(f"{self.leaf.name}: the quantile sketch ran out of levels")
            return
        index = (slot + np.arange(count)) % ring.shape[0]
        block = ring[index].reshape(-1, self.width).astype(self.sketch_dtype)
        if compiled:
            native.sketch_rows(
                block, 0, len(block), self.width, self.levels, self.fills, self.passes,
                self.errors, self.sketched,
            )  # fmt: skip
            return
        for column in range(self.width):
            self._sketch_numpy(column, block[:, column])

    def _sketch_numpy(self, c: int, values: np.ndarray[Any, Any]) -> None:
        """numpy twin of ``native.sketch_rows`` for one column: the same items, in order."""
        assert self.levels is not None
        if values.dtype.kind == "f":
            values = values[~np.isnan(values)]
        self.sketched[c] += len(values)
        half = SKETCH_K // 2
        while len(values):
            fill = int(self.fills[c, 0])
            take = min(SKETCH_K - fill, len(values))
            self.levels[c, 0, fill : fill + take] = values[:take]
            values = values[take:]
            if fill + take < SKETCH_K:
                self.fills[c, 0] = fill + take
                continue
            self.fills[c, 0] = 0
            run = np.sort(self.levels[c, 0])[self.passes[c, 0] & 1 :: 2]
            self.passes[c, 0] += 1
            self.errors[c] += 1.0
            for h in range(1, self.levels.shape[1]):
                if self.fills[c, h] == 0:
                    self.levels[c, h, :half] = run
                    self.fills[c, h] = half
                    break
                merged = np.sort(np.concatenate((self.levels[c, h, :half], run)))
                run = merged[self.passes[c, h] & 1 :: 2]
                self.passes[c, h] += 1
                self.fills[c, h] = 0
                self.errors[c] += 2.0**h
            else:
                raise WriterError(f"{self.leaf.name}: the quantile sketch ran out of levels")

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

    def summaries(self) -> list[Summary] | None:
        """The quantile summary of every column, or None for leaves that keep none."""
        if self.histogram is not None:
            return [Summary(self.bin_values, row, int(row.sum()), 0.0) for row in self._tables()]
        if self.levels is None:
            return None
        result = []
        for c in range(self.width):
            fills = self.fills[c].tolist()
            values = np.concatenate([self.levels[c, h, :f] for h, f in enumerate(fills)])
            weights = np.concatenate([np.full(f, 2.0**h) for h, f in enumerate(fills)])
            result.append(Summary(values, weights, int(self.sketched[c]), float(self.errors[c])))
        return result

    def _tables(self) -> np.ndarray[Any, Any]:
        """The histogram of each column: the kernel's copies added up."""
        assert self.histogram is not None
        copies = self.histogram.reshape(-1, self.width, self.histogram.shape[1])
        tables: np.ndarray[Any, Any] = copies.sum(axis=0)
        return tables

    def _histogram_moments(self) -> None:
        values = self.bin_values
        for column, table in enumerate(self._tables()):
            n, mean, m2 = _exact_moments(values, table)
            used = np.flatnonzero(table)
            self.mean[column], self.m2[column] = mean, m2
            self.low[column] = values[used].min() if n else np.nan
            self.high[column] = values[used].max() if n else np.nan
            self.n[0] = n

    def as_dict(self) -> dict[str, Any]:
        """count, min, max, mean, std (population), q01 ... q99 and their rank-error bound,
        the stored quantile summary, and value_counts for ``Discrete``."""
        result: dict[str, Any] = {"count": self.rows}
        fields: dict[str, Any] = {}
        if not self.leaf.is_string:
            if self.histogram is not None:
                self._histogram_moments()
            n = self.n[0]
            std = np.sqrt(self.m2 / n) if n else np.full(self.width, np.nan)
            mean = self.mean if n else np.full(self.width, np.nan)
            shaped = self.width > 1 and not self.leaf.is_image
            shape = self.leaf.shape if shaped else (self.width,)

            def put(key: str, values: Any) -> None:
                array = np.array(values, np.float64).reshape(shape)
                result[key] = array if (shaped or self.leaf.is_image) else float(array[0])

            for key, values in (("min", self.low), ("max", self.high)):
                put(key, values)
            put("mean", mean)
            put("std", std)
            for key in ("count", "min", "max", "mean", "std"):
                fields[key] = np.asarray(result[key])
            summaries = self.summaries()
            if summaries is not None:
                quantiles = np.array([s.quantiles() for s in summaries])  # (width, 5)
                stored = self._stored_form(summaries)
                for i, q in enumerate(QUANTILES):
                    put(quantile_key(q), quantiles[:, i])
                errors = zip(stored.pop("errors"), summaries, strict=True)
                put("rank_error", [e / max(1, s.count) for e, s in errors])
                fields.update(stored)
        if self.counts is not None:
            result["value_counts"] = self.counts.copy()
        if not self.leaf.is_string:
            if self.counts is not None:
                fields["value_counts"] = result["value_counts"]
            packed = pack_summary(fields)
            if packed.nbytes <= MAX_ATTRIBUTE_BYTES:  # very wide leaves: their moments only
                result["summary"] = packed
        return result

    def _stored_form(self, summaries: list[Summary]) -> dict[str, Any]:
        """The summary as attributes that fit HDF5's limit: the histogram of 8-bit data,
        otherwise points per column (their error then includes the condensing)."""
        itemsize = self.leaf.dtype.itemsize
        if self.histogram is not None and itemsize == 1:
            order = np.argsort(self.bin_values)  # bins by value: int8 from -128
            table = np.array([s.weights[order] for s in summaries], np.int64)
            if table.nbytes <= ATTRIBUTE_BYTES:
                return {
                    "histogram": table,
                    "histogram_offset": int(self.bin_values[order[0]]),
                    "errors": [0.0] * len(summaries),
                }
        points = max(1, min(SKETCH_POINTS, ATTRIBUTE_BYTES // (self.width * itemsize)))
        condensed = [s.condensed(points) for s in summaries]
        width = max(len(v) for v, _ in condensed)
        dtype = np.uint8 if self.leaf.dtype.kind == "b" else self.leaf.dtype
        table = np.zeros((self.width, width), dtype)
        for row, (values, _) in zip(table, condensed, strict=True):
            row[: len(values)] = values
        errors = [e for _, e in condensed]
        return {
            "sketch": table,
            "sketch_count": np.array([s.count for s in summaries], np.int64),
            "sketch_error": np.array(errors),
            "errors": errors,
        }

    def store(self, dataset: h5py.Dataset) -> dict[str, Any]:
        """Write the statistics as ``stats_*`` attributes of ``dataset``; return them.

        Written in place (``modify``) where a value of the same shape is already stored,
        so that storing them again does not make the object header grow.
        """
        result = self.as_dict()
        for key, value in result.items():
            try:
                dataset.attrs.modify(f"stats_{key}", value)
            except TypeError:  # another shape than the value stored before (sketches grow)
                dataset.attrs[f"stats_{key}"] = value
        return result
