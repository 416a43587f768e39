"""Episodes as a Ray Data dataset: one row per step, read in parallel by Ray's tasks.

Optional: ``pip install 'h5recorder[ray]'``. Ray is imported by this module only, never by
``import h5recorder``. Built on Ray Data's public ``Datasource`` API: the driver opens each
file once for its length and layout (attributes only) and plans read tasks; each task opens
its files by path (h5py objects cannot be pickled) and reads only the projected columns, in
whole chunks, through :func:`h5recorder.open`. The same code runs on a laptop
(``ray.init(num_cpus=2)``) and on a cluster whose nodes see the files at the same paths.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._format.attrs import ROOTS, walk_datasets
from ._read.dataset import LeafSchema, _difference, _schema_of, episode_paths
from ._read.episode import open_episode
from .errors import SchemaError

try:
    import pyarrow as pa
    from ray.data import Datasource as _Datasource
    from ray.data import ReadTask, read_datasource
    from ray.data.block import BlockMetadata
    from ray.data.extensions import ArrowTensorArray
except ImportError as _missing:  # pragma: no cover - exercised without the extra
    _RAY_ERROR: ImportError | None = _missing
    _Datasource = object  # type: ignore[misc,assignment]
else:
    _RAY_ERROR = None

__all__ = ["EpisodeDatasource", "read_episodes"]

TASK_BYTES = 256 << 20  # a file larger than this (in the columns read) is split between tasks
BLOCK_BYTES = 128 << 20  # Ray Data's own target block size: fewer, larger blocks read faster


@dataclass(frozen=True)
class _Range:
    """Steps ``[start, stop)`` of episode number ``episode``."""

    episode: int
    path: str
    start: int
    stop: int


def _require_ray() -> None:
    if _RAY_ERROR is not None:
        raise ImportError(
            "h5recorder.ray needs Ray Data: pip install 'h5recorder[ray]'"
        ) from _RAY_ERROR


def _column(values: np.ndarray[Any, Any]) -> Any:
    if values.dtype == object:
        return pa.array(values.tolist())
    if values.ndim > 1:
        return ArrowTensorArray.from_numpy(np.ascontiguousarray(values))
    return pa.array(values)


def _pooled(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """An empty array in Arrow's memory pool, which keeps freed memory for the next batch:
    a fresh 150 MB array from the system allocator costs 36,000 page faults (80 ms) to fill,
    many times the reading itself."""
    buffer = pa.allocate_buffer(max(1, math.prod(shape) * dtype.itemsize))
    return np.frombuffer(buffer, dtype, math.prod(shape)).reshape(shape)


def _read_ranges(ranges: list[_Range], columns: list[str], rows: int) -> Iterator[Any]:
    """A read task's body: open each file by path, yield one Arrow table per batch."""
    for part in ranges:
        with open_episode(part.path) as episode:
            for batch in episode.batches(rows, columns, part.start, part.stop, allocate=_pooled):
                table = {"episode": np.full(len(batch["step"]), part.episode, np.int64)}
                table.update(batch)
                yield pa.table({name: _column(values) for name, values in table.items()})


class EpisodeDatasource(_Datasource):
    """A Ray Data ``Datasource`` over episode files; see :func:`read_episodes`."""

    def __init__(
        self,
        paths: Sequence[Path],
        columns: Sequence[str] | None = None,
        *,
        batch_rows: int | None = None,
        task_bytes: int = TASK_BYTES,
    ) -> None:
        _require_ray()
        self.paths = [str(path) for path in paths]
        schema: dict[str, LeafSchema] | None = None
        lengths: list[int] = []
        chunk_rows, row_bytes = 1, 32
        for path in self.paths:
            with open_episode(path) as episode:
                lengths.append(len(episode))
                this = _schema_of(dict(walk_datasets(
                    episode.file, [root for root in ROOTS if root in episode.file])))
                if schema is None:
                    schema = this
                    names = episode.keys()
                    self.columns = names if columns is None else list(columns)
                    unknown = [name for name in self.columns if name not in names]
                    if unknown:
                        raise KeyError(
                            f"{unknown[0]!r}: not a leaf of these episodes; the leaves are {names}"
                        )
                    row_bytes = sum(episode.columns[n].row_bytes for n in self.columns) + 32
                    chunk_rows = max(
                        [episode.columns[n].chunk_rows for n in self.columns], default=1
                    )
                    whole = BLOCK_BYTES // row_bytes // chunk_rows * chunk_rows
                    self.batch_rows = batch_rows or max(chunk_rows, whole)
                elif this != schema:
                    raise SchemaError(
                        f"{path} does not share the schema of {self.paths[0]}: "
                        f"{_difference(schema, this)}"
                    )
        self.row_bytes = row_bytes
        self.lengths = lengths
        # split a large file into ranges of whole chunks, so no chunk is read twice
        span = max(chunk_rows, task_bytes // row_bytes // chunk_rows * chunk_rows)
        self.ranges = [
            _Range(index, path, start, min(length, start + span))
            for index, (path, length) in enumerate(zip(self.paths, lengths, strict=True))
            for start in range(0, length, span)
        ]

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(self.lengths) * self.row_bytes

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[Any]:
        """At most ``parallelism`` tasks, each a run of consecutive ranges of about equal rows."""
        ranges = self.ranges
        count = max(1, min(parallelism if parallelism > 0 else len(ranges), len(ranges)))
        total = sum(r.stop - r.start for r in ranges)
        groups: list[list[_Range]] = [[] for _ in range(count)]
        done = 0
        for position, part in enumerate(ranges):
            if count == len(ranges):
                groups[position].append(part)
                continue
            groups[min(count - 1, done * count // max(1, total))].append(part)
            done += part.stop - part.start
        tasks = []
        for group in groups:
            if not group:
                continue
            rows = sum(r.stop - r.start for r in group)
            metadata = BlockMetadata(
                num_rows=rows,
                size_bytes=rows * self.row_bytes,
                exec_stats=None,
                input_files=tuple(sorted({r.path for r in group})),
            )
            tasks.append(
                ReadTask(
                    functools.partial(_read_ranges, group, self.columns, self.batch_rows),
                    metadata,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks


def read_episodes(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    columns: Sequence[str] | None = None,
    *,
    batch_rows: int | None = None,
    task_bytes: int = TASK_BYTES,
    **read_args: Any,
) -> Any:
    """Episodes as a ``ray.data.Dataset``, one row per step, read in parallel.

    Parameters
    ----------
    paths
        A folder (its ``*.h5`` files), a glob pattern, one file, or an iterable of files.
        They must share one schema (a :class:`~h5recorder.SchemaError` names the first
        that does not).
    columns
        Leaf names to read (``["observation/joints", "action"]``); default every leaf. Only
        these are read from the files: a job that needs no images never reads them.
    batch_rows
        Steps per block (default: whole chunks, about 128 MiB: with 32 MiB blocks Ray Data
        read the seed workload 1.6x slower, its cost per block weighing more).
    task_bytes
        A file holding more than this in the columns read is split into several read tasks
        (ranges of whole chunks); smaller files are grouped, at most one task per block.
    **read_args
        Passed to ``ray.data.read_datasource`` (``num_cpus``, ``concurrency``, ...);
        ``override_num_blocks`` defaults to one read task per file or range.

    Returns
    -------
    ray.data.Dataset
        Columns: ``episode`` (the file's position in ``paths``), ``step``, ``monotonic_ns``
        and ``wall_ns`` (when the files keep each step's time), and one per leaf, named by its
        path (``"observation/image"``): numbers as scalars, arrays as tensor columns,
        text as strings. Only steps below each file's ``size`` are read, so a recording that
        was killed (and mended with ``h5recorder recover``) yields the steps it committed.
    """
    _require_ray()
    files = episode_paths(paths)
    source = EpisodeDatasource(files, columns, batch_rows=batch_rows, task_bytes=task_bytes)
    # one block per range as planned: Ray's default asks for more and splits each block after
    # reading it, a copy of every row for nothing
    read_args.setdefault("override_num_blocks", len(source.ranges))
    return read_datasource(source, **read_args)
