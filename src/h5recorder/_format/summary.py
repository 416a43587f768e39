"""The statistics summary a closed episode stores (``stats_summary``) and how summaries merge.

Written by the write side (``_write.stats``) when an episode closes, read by ``dataset()`` to
merge any set of episodes without reading their data. ``QUANTILES`` are the quantiles every
summary answers (``stats_q01`` ... ``stats_q99``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "QUANTILES",
    "Summary",
    "pack_summary",
    "quantile_key",
    "summaries_from_fields",
    "unpack_summary",
    "weighted_quantiles",
]

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def quantile_key(q: float) -> str:
    """``0.01`` -> ``"q01"``: the name of a quantile in the statistics."""
    return f"q{round(q * 100):02d}"


def weighted_quantiles(
    values: np.ndarray[Any, Any], weights: np.ndarray[Any, Any], qs: tuple[float, ...]
) -> np.ndarray[Any, Any]:
    """For each ``q``, the smallest value whose cumulative weight reaches ``q`` of the total.

    With every weight 1 this is ``numpy.quantile(values, q, method="inverted_cdf")``.
    """
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if not len(values):
        return np.full(len(qs), np.nan)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = np.searchsorted(cumulative, np.asarray(qs) * cumulative[-1], side="left")
    chosen: np.ndarray[Any, Any] = values[order][np.minimum(index, len(values) - 1)]
    return chosen.astype(np.float64)


@dataclass
class Summary:
    """The quantile summary of one column: weighted points, how many values, the rank error.

    ``error`` bounds, in values, how far the weight of the points at or below any ``y`` can be
    from the number of values at or below ``y``; summaries merge by concatenation, their
    counts and errors adding up.
    """

    values: np.ndarray[Any, Any]
    weights: np.ndarray[Any, Any]
    count: int
    error: float

    @staticmethod
    def merge(parts: list[Summary]) -> Summary:
        return Summary(
            np.concatenate([p.values.astype(np.float64) for p in parts]),
            np.concatenate([p.weights.astype(np.float64) for p in parts]),
            sum(p.count for p in parts),
            sum(p.error for p in parts),
        )

    def quantiles(self, qs: tuple[float, ...] = QUANTILES) -> np.ndarray[Any, Any]:
        return weighted_quantiles(self.values, self.weights, qs)

    @property
    def rank_error(self) -> float:
        """The bound as a fraction of the values (0 for exact histograms)."""
        return self.error / self.count if self.count else 0.0

    def condensed(self, points: int) -> tuple[np.ndarray[Any, Any], float]:
        """At most ``points`` values standing for this summary, and its error once stored.

        Point ``i`` is the value at cumulative weight ``(i + 0.5) * count / points``: read back
        with weight ``count / points`` each, it adds at most ``count / (2 * points)``.
        """
        keep = self.weights > 0
        values, weights = self.values[keep], self.weights[keep]
        order = np.argsort(values, kind="stable")
        values, cumulative = values[order], np.cumsum(weights[order])
        if self.count <= points and np.all(weights == 1):
            return values, self.error
        targets = (np.arange(points) + 0.5) * (cumulative[-1] / points)
        index = np.minimum(np.searchsorted(cumulative, targets, side="left"), len(values) - 1)
        return values[index], self.error + self.count / (2 * points)


def _stored_points(values: np.ndarray[Any, Any], count: int, error: float) -> Summary:
    """A summary read back from ``points`` stored by :meth:`Summary.condensed`."""
    weight = 1.0 if len(values) >= count else count / max(1, len(values))
    return Summary(values, np.full(len(values), weight), count, error)


def pack_summary(fields: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Arrays as one uint8 array, to be stored as one attribute: reading a file's statistics
    then costs one attribute read per dataset, not one per array.

    Layout: a 4-byte little-endian length, a JSON header ``{name: [dtype, shape, offset]}``,
    then each array's bytes (C order, the dtype's own byte order).
    """
    arrays = {name: np.asarray(value) for name, value in fields.items()}
    header: dict[str, Any] = {}
    offset = 0
    for name, array in arrays.items():
        header[name] = [array.dtype.str, list(array.shape), offset]
        offset += array.nbytes
    text = json.dumps(header).encode()
    parts = [len(text).to_bytes(4, "little"), text, *(a.tobytes("C") for a in arrays.values())]
    return np.frombuffer(b"".join(parts), np.uint8)


def unpack_summary(blob: Any) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays of a ``stats_summary`` attribute (see :func:`pack_summary`)."""
    data = np.asarray(blob, np.uint8).tobytes()
    length = int.from_bytes(data[:4], "little")
    header = json.loads(data[4 : 4 + length])
    body = memoryview(data)[4 + length :]
    result = {}
    for name, (dtype, shape, offset) in header.items():
        kind = np.dtype(dtype)
        count = math.prod(shape)
        result[name] = np.frombuffer(body, kind, count, offset).reshape(shape)
    return result


def summaries_from_fields(fields: dict[str, np.ndarray[Any, Any]]) -> list[Summary] | None:
    """The per-column quantile summaries of an unpacked ``stats_summary``, or None."""
    if "histogram" in fields:
        table = fields["histogram"]
        values = int(fields["histogram_offset"]) + np.arange(table.shape[1])
        return [Summary(values, row, int(row.sum()), 0.0) for row in table]
    if "sketch" in fields:
        points = fields["sketch"]
        counts = fields["sketch_count"].tolist()
        errors = fields["sketch_error"].tolist()
        return [
            _stored_points(points[c, : min(points.shape[1], n)], n, error)
            for c, (n, error) in enumerate(zip(counts, errors, strict=True))
        ]
    return None
