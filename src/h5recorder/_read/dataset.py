"""Many episodes: one schema, their health, and statistics merged from the stored summaries.

:func:`dataset` opens each file only to read attributes: the layout (dataset names, dtypes,
shapes, spaces), ``size`` and ``recorder_status``, and the ``stats_*`` attributes that
``close()`` stores. No row of data is read, so a folder of thousands of episodes is
summarized in seconds. Moments merge exactly (count-weighted means, pooled sums of squared
deviations); quantiles merge by pooling each episode's summary, and the merged rank-error
bound is the sum of the episodes' bounds over the total count.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._format.attrs import ROOTS, hdf5_errors, jsonable
from .._format.health import Health, has_statistics, health_of, steps_of
from .._format.summary import (
    QUANTILES,
    Summary,
    quantile_key,
    summaries_from_fields,
    unpack_summary,
)
from ..errors import ReadError, SchemaError
from .untrusted import Checked, check_at_rest, check_recording, check_rows

__all__ = ["Dataset", "EpisodeInfo", "dataset", "episode_paths"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class LeafSchema:
    """What must agree between episodes for one dataset of the layout."""

    dtype: str
    shape: tuple[int, ...]
    space: str

    def describe(self) -> str:
        return f"{self.space} of shape {self.shape} and dtype {self.dtype}"


@dataclass(frozen=True)
class EpisodeInfo:
    """One episode file: its steps and its health, from attributes only.

    ``health`` is the :class:`~h5recorder.Health` that ``h5recorder.open(path).health``
    gives, except that the PNG frames counted missing are those the recorder listed (no
    folder is read). The other attributes are read from it: ``closed`` is ``health.closed``
    (``close()`` finished the file; None for files that cannot say), ``statistics`` whether
    every leaf holds the statistics ``close()`` stores (only those episodes are merged),
    ``frames_missing`` and ``rows_past_size`` counts. ``problems`` lists, in words, what a
    user should know before training on it.
    """

    path: Path
    health: Health

    @property
    def steps(self) -> int:
        return self.health.size

    @property
    def closed(self) -> bool | None:
        return self.health.closed

    @property
    def statistics(self) -> bool:
        return self.health.statistics

    @property
    def drops(self) -> int:
        return self.health.drops

    @property
    def waits(self) -> int:
        return self.health.waits

    @property
    def missing_values(self) -> int:
        return self.health.missing_values

    @property
    def frames_missing(self) -> int:
        return len(self.health.frames_missing)

    @property
    def rows_past_size(self) -> int:
        return max(self.health.rows_past_size.values(), default=0)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(self.health.problems)

    @property
    def ok(self) -> bool:
        return self.health.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "steps": self.steps,
            "ok": self.ok,
            "closed": self.closed,
            "statistics": self.statistics,
            "drops": self.drops,
            "waits": self.waits,
            "missing_values": self.missing_values,
            "frames_missing": self.frames_missing,
            "rows_past_size": self.rows_past_size,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Dataset:
    """Episodes that share one schema, and their merged statistics.

    Attributes
    ----------
    episodes
        One :class:`EpisodeInfo` per file, in the order given (folders and globs: sorted).
    schema
        Dataset name (``"observation/image"``) to its dtype, shape per step and space type.
    stats
        Dataset name to merged statistics over the episodes that stored them: ``count``
        (steps), ``min``, ``max``, ``mean``, ``std``, ``q01`` ... ``q99`` with ``rank_error``
        (the bound: each quantile lies between the exact ones at ``q - rank_error`` and
        ``q + rank_error``), and ``value_counts`` for ``Discrete`` spaces. Shaped like the
        per-episode ``stats_*`` attributes (per channel for images, per element otherwise).
    """

    episodes: tuple[EpisodeInfo, ...]
    schema: dict[str, LeafSchema]
    stats: dict[str, dict[str, Any]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def steps(self) -> int:
        """Steps in all episodes."""
        return sum(e.steps for e in self.episodes)

    @property
    def paths(self) -> list[Path]:
        return [e.path for e in self.episodes]

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values (arrays as lists, NaN as None)."""
        return {
            "episodes": len(self.episodes),
            "steps": self.steps,
            "summarized_episodes": sum(e.statistics for e in self.episodes),
            "schema": {
                name: {"dtype": s.dtype, "shape": list(s.shape), "space": s.space}
                for name, s in self.schema.items()
            },
            "stats": {
                name: {key: jsonable(value) for key, value in stats.items()}
                for name, stats in self.stats.items()
            },
            "health": [e.to_dict() for e in self.episodes],
        }


def episode_paths(source: PathLike | Iterable[PathLike]) -> list[Path]:
    """The episode files of ``source``: a folder (its ``*.h5`` files), a glob pattern, one
    file, or an iterable of files; folders and globs sorted by name."""
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            found = sorted(path.glob("*.h5"))
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True))
        else:
            found = [path]
    else:
        found = [Path(os.fspath(p)) for p in source]
    if not found:
        raise FileNotFoundError(f"no episode files in {source!r}")
    for path in found:
        if not path.is_file():
            raise FileNotFoundError(f"episode file {path} does not exist")
    return found


def _checked(file: h5py.File) -> Checked:
    """The file's attributes and the datasets under its roots, checked (``_read.untrusted``)."""
    return check_recording(file, [root for root in ROOTS if root in file])


def _schema_of(datasets: dict[str, h5py.Dataset]) -> dict[str, LeafSchema]:
    result = {}
    for name, node in datasets.items():
        space = node.attrs.get("space_type", "")
        space = space.decode() if isinstance(space, bytes) else str(space)
        result[name] = LeafSchema(str(node.dtype), tuple(node.shape[1:]), space)
    return result


def _difference(first: dict[str, LeafSchema], other: dict[str, LeafSchema]) -> str:
    for name in first:
        if name not in other:
            return f"it lacks {name!r}"
        if first[name] != other[name]:
            return f"{name!r} is a {other[name].describe()}, not a {first[name].describe()}"
    extra = next(name for name in other if name not in first)
    return f"it has {extra!r}, which the first episode lacks"


_STAT_KEYS = ("stats_count", "stats_min", "stats_max", "stats_mean", "stats_std")


def _episode(path: Path, file: h5py.File, datasets: dict[str, h5py.Dataset],
             checked: Checked) -> tuple[EpisodeInfo, dict[str, dict[str, Any]]]:
    rows = {name: int(node.shape[0]) if node.shape else 0 for name, node in datasets.items()}
    size = steps_of(checked.size, rows)
    stats: dict[str, dict[str, Any]] = {}
    for name, node in datasets.items():
        check_rows(node, name, min(size, rows[name]))
        attrs = node.attrs
        entry: dict[str, Any]
        try:  # everything needed, in one read (a lookup by name costs as much as a read)
            blob = attrs["stats_summary"]
        except KeyError:
            blob = None
        if blob is not None:
            try:
                entry = dict(unpack_summary(blob))
                entry["summaries"] = summaries_from_fields(entry)
            except (ValueError, TypeError, KeyError, IndexError) as error:
                raise ReadError(f"{name}: stats_summary cannot be unpacked ({error})") from error
        else:  # strings, leaves too wide for one attribute, files not closed
            present = set(attrs)
            if not has_statistics(present):
                continue
            entry = {key[6:]: attrs[key] for key in _STAT_KEYS if key in present}
            if "stats_value_counts" in present:
                entry["value_counts"] = attrs["stats_value_counts"]
            entry["summaries"] = None
        entry["per_row"] = math.prod(node.shape[1:])
        stats[name] = entry
    health = health_of(
        file.attrs,
        path=path,
        size=checked.size,
        rows=rows,
        statistics=bool(datasets) and len(stats) == len(datasets),
        status=checked.status,
        frames=checked.frames,
        recovered=checked.recovered,
    )
    return EpisodeInfo(path, health), stats


def _merge_leaf(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge one dataset's statistics over episodes (each a dict read from attributes)."""
    rows = np.array([int(p["count"]) for p in parts], np.int64)
    result: dict[str, Any] = {"count": int(rows.sum())}
    if "mean" in parts[0]:
        shape = np.shape(parts[0]["mean"])
        mean = np.array([np.asarray(p["mean"], np.float64).ravel() for p in parts])
        std = np.array([np.asarray(p["std"], np.float64).ravel() for p in parts])
        width = mean.shape[1]
        counts = rows * (parts[0]["per_row"] // width if width else 1)
        n = counts.sum()
        keep = counts > 0
        if n:
            merged_mean = (counts[keep, None] * mean[keep]).sum(axis=0) / n
            spread = counts[keep, None] * (std[keep] ** 2 + (mean[keep] - merged_mean) ** 2)
            merged_std = np.sqrt(spread.sum(axis=0) / n)
            low = np.min([np.ravel(p["min"]) for p in parts if p["count"]], axis=0)
            high = np.max([np.ravel(p["max"]) for p in parts if p["count"]], axis=0)
        else:
            merged_mean = merged_std = low = high = np.full(width, np.nan)

        def shaped(values: np.ndarray[Any, Any]) -> Any:
            return float(values[0]) if shape == () else values.reshape(shape)

        result.update(min=shaped(low), max=shaped(high), mean=shaped(merged_mean))
        result["std"] = shaped(merged_std)
        if all(p["summaries"] is not None for p in parts):
            merged = [
                _merge_summaries([p["summaries"][c] for p in parts]) for c in range(width)
            ]
            quantiles = np.array([m.quantiles() for m in merged])
            for i, q in enumerate(QUANTILES):
                result[quantile_key(q)] = shaped(quantiles[:, i])
            result["rank_error"] = shaped(np.array([m.rank_error for m in merged]))
    if "value_counts" in parts[0]:
        result["value_counts"] = np.sum([np.asarray(p["value_counts"]) for p in parts], axis=0)
    return result


def _merge_summaries(parts: list[Summary]) -> Summary:
    first = parts[0].values
    if len(first) > 256 or any(not np.array_equal(p.values, first) for p in parts[1:]):
        return Summary.merge(parts)
    # histograms over the same bins: add the counts
    return Summary(
        first,
        np.sum([p.weights for p in parts], axis=0),
        sum(p.count for p in parts),
        sum(p.error for p in parts),
    )


def dataset(source: PathLike | Iterable[PathLike]) -> Dataset:
    """The episodes of ``source``, checked to share one schema, with merged statistics.

    Parameters
    ----------
    source
        A folder (its ``*.h5`` files), a glob pattern (``"runs/**/*.h5"``), one file, or an
        iterable of files.

    Returns
    -------
    Dataset
        Episodes with their steps and health, the shared schema, and statistics merged from
        the summaries each episode stored when it closed, without reading any data.
        Episodes without statistics (killed recordings) are listed, and left out of ``stats``.

    Raises
    ------
    SchemaError
        Naming the first file whose layout differs from the first file's, and how.
    ReadError
        Naming a file whose attributes or layout cannot be believed (see ``h5recorder.open``).
    FileNotFoundError
        When ``source`` holds no episode, or names a file that does not exist.
    """
    paths = episode_paths(source)
    episodes: list[EpisodeInfo] = []
    per_leaf: dict[str, list[dict[str, Any]]] = {}
    schema: dict[str, LeafSchema] | None = None
    for path in paths:
        try:
            check_at_rest(path)
        except ReadError as error:
            raise ReadError(f"{path}: {error}") from error
        try:
            file = h5py.File(path, "r")
        except OSError as error:
            raise SchemaError(f"{path}: not a readable HDF5 file ({error})") from error
        with file:
            try:
                with hdf5_errors("the file"):
                    checked = _checked(file)
            except ReadError as error:
                raise ReadError(f"{path}: {error}") from error
            datasets = dict(checked.datasets)
            with hdf5_errors(path):
                this = _schema_of(datasets)
            if schema is None:
                schema = this
                if not schema:
                    raise SchemaError(f"{path}: no recorded datasets in it")
            elif this != schema:
                raise SchemaError(
                    f"{path} does not share the schema of {paths[0]}: {_difference(schema, this)}"
                )
            try:
                with hdf5_errors("the file"):
                    info, stats = _episode(path, file, datasets, checked)
            except ReadError as error:
                raise ReadError(f"{path}: {error}") from error
        episodes.append(info)
        if info.statistics:
            for name, entry in stats.items():
                per_leaf.setdefault(name, []).append(entry)
    assert schema is not None
    merged = {name: _merge_leaf(parts) for name, parts in per_leaf.items()}
    return Dataset(tuple(episodes), schema, merged)
