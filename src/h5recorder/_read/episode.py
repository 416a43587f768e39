"""One recorded episode, read back: ``h5recorder.open(path)``.

The read side of the contract in ``_write.schema``: spaces are rebuilt from the attributes, every
leaf is a lazy :class:`Column` that reads only the chunks a selection needs, steps come back
as the nested dicts mbodied's ``Replayer`` yields, and batches as flat dicts of arrays read a
block of chunks at a time. Rows at or beyond the ``size`` attribute are never read: they are
the over-allocation of mbodied's own recorder or the uncommitted tail of a crashed recording.

This module never imports the writer, its threads or the PNG pool.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import blosc2
import h5py
import hdf5plugin  # noqa: F401 - registers the blosc2 filter for reading
import numpy as np
from gymnasium import spaces
from isal import isal_zlib

from .._format.attrs import (
    SPACE_ATTRIBUTE,
    TIME_ATTRIBUTE,
    VERSION_ATTRIBUTE,
    hdf5_errors,
    roots_of,
)
from .._format.codecs import BLOSC2_FILTER, DEFLATE_FILTER, SHUFFLE_FILTER, filters_of
from .._format.health import Health, closed_of, has_statistics, health_of, steps_of
from .._format.heap import HeapCheck
from .._format.spaces import TEXT_MAX_LENGTH, space_from_json
from ..errors import ReadError, SchemaError
from .untrusted import (
    MAX_ITEM_ELEMENTS,
    check_at_rest,
    check_dataset,
    check_description,
    check_recording,
    check_rows,
    json_attribute,
)

__all__ = ["Column", "Episode", "Health", "Time", "open_episode"]

BLOCK_BYTES = 32 << 20  # one batch read holds about this much (whole chunks of every leaf)
# chunks at least this large are read directly (_DirectChunks); below it, the Python cost per
# chunk (about 50 us) outweighs the copies saved, and HDF5's pipeline is faster
DIRECT_CHUNK_BYTES = 512 << 10


# -- spaces from attributes ---------------------------------------------------------------


def _json_attr(obj: h5py.HLObject, name: str) -> Any:
    """A JSON attribute, or None when it is absent or not JSON (mbodied writes Python reprs);
    size and depth checked (``_read.untrusted``)."""
    return json_attribute(obj, name, object)


def _scalar(value: Any) -> Any:
    array = np.asarray(value)
    return array.reshape(-1)[0].item() if array.size else None


def _space_from_schema(schema: Any) -> spaces.Space[Any] | None:
    """A space from a JSON Schema written by an earlier version (Tuple items, Dict order)."""
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if kind == "object":
        children = {
            key: _space_from_schema(sub) for key, sub in schema.get("properties", {}).items()
        }
        if any(child is None for child in children.values()):
            return None
        return spaces.Dict(children)  # type: ignore[arg-type]
    if kind == "integer" and "minimum" in schema and "maximum" in schema and "dtype" not in schema:
        low = int(schema["minimum"])
        return spaces.Discrete(int(schema["maximum"]) - low + 1, start=low)
    if kind == "string":
        return spaces.Text(
            int(schema.get("maxLength", TEXT_MAX_LENGTH)),
            min_length=int(schema.get("minLength", 1)),
        )
    if kind == "array" and "prefixItems" in schema:
        items = [_space_from_schema(sub) for sub in schema["prefixItems"]]
        if any(item is None for item in items):
            return None
        return spaces.Tuple(items)  # type: ignore[arg-type]
    shape: list[int] = []
    while isinstance(schema, Mapping) and schema.get("type") == "array" and "items" in schema:
        shape.append(int(schema.get("maxItems", 0)))
        schema = schema["items"]
    if math.prod(shape) > MAX_ITEM_ELEMENTS:
        raise ReadError(f"an item of a Tuple: expected at most {MAX_ITEM_ELEMENTS} elements, "
                        f"its schema gives the shape {shape}")
    if isinstance(schema, Mapping) and "dtype" in schema:
        dtype = np.dtype(schema["dtype"])
        if schema.get("minimum") == 0 and schema.get("maximum") == 1 and dtype == np.int8:
            return spaces.MultiBinary(shape)
        low, high = _full_range(dtype)
        return spaces.Box(low, high, tuple(shape), dtype)
    return None


def _full_range(dtype: np.dtype[Any]) -> tuple[Any, Any]:
    if dtype.kind == "f":
        return -np.inf, np.inf
    if dtype.kind == "b":
        return 0, 1
    info = np.iinfo(dtype)
    return info.min, info.max


def _legacy_space(obj: h5py.Group | h5py.Dataset) -> spaces.Space[Any]:
    """A space from the reference layout's attributes (files without ``recorder_space``).

    Exact where the attributes say everything; Box bounds are the first element of each
    (all the reference keeps), broadcast over the shape.
    """
    attrs = obj.attrs
    kind = attrs.get("space_type")
    kind = kind.decode() if isinstance(kind, bytes) else kind
    schema = _json_attr(obj, "json_schema")
    if isinstance(obj, h5py.Group):
        order = list(schema.get("properties", {})) if isinstance(schema, Mapping) else []
        keys = [key for key in order if key in obj] + [key for key in obj if key not in order]
        return spaces.Dict({key: _space_of(obj[key]) for key in keys})
    dtype = obj.dtype
    row_shape = tuple(obj.shape[1:])
    if kind == "Discrete":
        start = int(schema["minimum"]) if isinstance(schema, Mapping) and "minimum" in schema else 0
        return spaces.Discrete(int(_scalar(attrs["n"])), start=start)
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(attrs["nvec"]), dtype=dtype)
    if kind == "MultiBinary":
        n = np.asarray(attrs["n"])
        return spaces.MultiBinary(int(n) if n.ndim == 0 else n.tolist())
    if kind == "Text":
        minimum = int(schema.get("minLength", 1)) if isinstance(schema, Mapping) else 1
        return spaces.Text(int(_scalar(attrs["max_length"])), min_length=minimum)
    if kind == "Tuple":
        rebuilt = _space_from_schema(schema)
        if rebuilt is not None:
            return rebuilt
        length = int(_scalar(attrs.get("tuple_length", 0)))
        if not 0 <= length <= MAX_ITEM_ELEMENTS:
            raise ReadError(f"{obj.name}: tuple_length: expected 0 to {MAX_ITEM_ELEMENTS}, "
                            f"found {length}")
        # the reference writes no item spaces: each item is read back as JSON gives it
        return spaces.Tuple([spaces.Text(TEXT_MAX_LENGTH) for _ in range(length)])
    if h5py.check_string_dtype(dtype) is not None:
        return spaces.Text(TEXT_MAX_LENGTH)
    if dtype.kind not in "biuf":
        raise SchemaError(f"{obj.name}: cannot read a dataset of dtype {dtype}")
    shape = tuple(int(size) for size in attrs["shape"]) if "shape" in attrs else row_shape
    low, high = _full_range(dtype)
    if "low" in attrs and "high" in attrs:
        low, high = _scalar(attrs["low"]), _scalar(attrs["high"])
    return spaces.Box(
        np.full(shape, low).astype(dtype),
        np.full(shape, high).astype(dtype),
        shape,
        dtype,
    )


def _space_of(obj: h5py.Group | h5py.Dataset) -> spaces.Space[Any]:
    description = _json_attr(obj, SPACE_ATTRIBUTE)
    if description is not None:
        check_description(description, obj, obj.name or "?")  # before it allocates bounds
        return space_from_json(description)
    return _legacy_space(obj)


# -- values -------------------------------------------------------------------------------


def _from_json(item: Any, space: spaces.Space[Any]) -> Any:
    """One JSON-decoded item back into the type its space records."""
    if isinstance(space, spaces.Dict) and isinstance(item, Mapping):
        return {key: _from_json(item[key], sub) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple) and isinstance(item, list):
        return tuple(_from_json(value, sub) for value, sub in zip(item, space.spaces, strict=False))
    if isinstance(space, spaces.Discrete):
        return int(item)
    if isinstance(space, spaces.Box | spaces.MultiDiscrete | spaces.MultiBinary):
        return np.asarray(item, dtype=space.dtype).reshape(space.shape)
    return item


def _leaf_kind(space: spaces.Space[Any]) -> str:
    for kind, name in (
        (spaces.Tuple, "tuple"),
        (spaces.Text, "text"),
        (spaces.Discrete, "discrete"),
        (spaces.MultiDiscrete, "multidiscrete"),
        (spaces.MultiBinary, "multibinary"),
    ):
        if isinstance(space, kind):
            return name
    return "box"


class Column:
    """One leaf of an episode, read lazily: ``column[i]``, ``column[a:b]``, ``column[[i, j]]``,
    ``np.asarray(column)``.

    Only rows below the episode's length are visible, and a selection reads only the chunks
    that hold it. Strings come back as ``str`` (object arrays for several rows), ``Tuple``
    values as tuples decoded from their JSON; the heap they are kept in is checked before HDF5
    reads it (``_format.heap``). A file HDF5 cannot read raises :class:`ReadError`.
    """

    def __init__(self, name: str, dataset: h5py.Dataset, space: spaces.Space[Any], rows: int,
                 heap: HeapCheck | None = None):
        self.name = name
        self._heap = heap
        self._heap_checked: set[int] = set()  # first rows of the chunks whose heap is checked
        self.dataset = dataset
        self.space = space
        self.kind = _leaf_kind(space)
        self._rows = rows
        self.is_string = h5py.check_string_dtype(dataset.dtype) is not None
        self.dtype: np.dtype[Any] = np.dtype(object) if self.is_string else dataset.dtype
        self.row_shape: tuple[int, ...] = tuple(dataset.shape[1:])
        self.chunk_rows = int(dataset.chunks[0]) if dataset.chunks else max(1, rows)
        itemsize = 16 if self.is_string else dataset.dtype.itemsize
        self.row_bytes = itemsize * math.prod(self.row_shape)
        self._chunks: _DirectChunks | None = None
        self._direct: bool | None = None  # whether chunks are read directly: first read decides

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._rows, *self.row_shape)

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return f"<Column {self.name!r} shape={self.shape} dtype={self.dtype}>"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        data = self.read(0, self._rows)
        return data if dtype is None else data.astype(dtype)

    def read(
        self, start: int, stop: int, out: np.ndarray[Any, Any] | None = None
    ) -> np.ndarray[Any, Any]:
        """Rows ``[start, stop)`` (clipped to the episode), decoded; into ``out`` when given
        (a C-contiguous array of ``stop - start`` rows of this column's dtype)."""
        start, stop = max(0, start), min(stop, self._rows)
        if stop <= start:
            return np.empty((0, *self.row_shape), self.dtype)
        if self.is_string:
            if out is not None:
                raise ValueError(f"{self.name}: text is read into new arrays, not into out")
            return self._decode(self._strings(start, stop, np.s_[start:stop]))
        shape = (stop - start, *self.row_shape)
        if out is None:
            out = np.empty(shape, self.dtype)
        elif out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"{self.name}: out must be a C-contiguous {self.dtype} array of "
                             f"shape {shape}, got {out.dtype} {out.shape}")
        with hdf5_errors(self.name):
            if self._direct is None:
                self._chunks = _DirectChunks.of(self.dataset)
                self._direct = self._chunks is not None
            if self._chunks is not None:
                self._chunks.read(start, stop, out)
            else:
                self.dataset.read_direct(out, np.s_[start:stop])
        return out

    def _strings(self, start: int, stop: int, selection: Any) -> Any:
        """Rows of a variable-length leaf, after the heap objects rows ``[start, stop)``
        refer to are checked (every row of their chunks below the episode's length)."""
        with hdf5_errors(self.name):
            chunks = range(start - start % self.chunk_rows, stop, self.chunk_rows)
            if not self._heap_checked.issuperset(chunks):
                heap = self._heap
                if heap is None:
                    heap = self._heap = HeapCheck(self.dataset.file)
                heap.rows(self.dataset, start, stop, self.name, self._rows)
                self._heap_checked.update(chunks)
            return self.dataset[selection]

    def _decode(self, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if not self.is_string:
            return raw
        out = np.empty(raw.shape, object)
        flat = raw.reshape(-1)
        target = out.reshape(-1)
        for position, item in enumerate(flat):
            target[position] = self._decode_one(item)
        return out

    def _decode_one(self, item: Any) -> Any:
        try:
            text = item.decode() if isinstance(item, bytes) else str(item)
            if self.kind != "tuple":
                return text
            value = json.loads(text)
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            wanted = "JSON in UTF-8" if self.kind == "tuple" else "UTF-8 text"
            raise ReadError(f"{self.name}: expected {wanted} in every row, as the recorder "
                            f"writes, found {error}") from error
        if isinstance(value, Mapping) and "item" in value:
            value = value["item"]
        return _from_json(value, self.space) if isinstance(value, list) else value

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            return self[first][(slice(None), *rest) if not _is_int(first) else rest]
        if _is_int(key):
            index = int(key)
            if index < 0:
                index += self._rows
            if not 0 <= index < self._rows:
                raise IndexError(f"{self.name}: step {key} out of range for {self._rows} steps")
            if self.is_string:
                return self._decode_one(self._strings(index, index + 1, index))
            with hdf5_errors(self.name):
                return self.dataset[index]
        if isinstance(key, slice):
            start, stop, step = key.indices(self._rows)
            if step == 1:
                return self.read(start, stop)
            if step > 0:
                return self.read(start, stop)[::step]
            return self[np.arange(start, stop, step)]
        return self._take(np.asarray(key), key)

    def _take(self, index: np.ndarray[Any, Any], key: Any) -> np.ndarray[Any, Any]:
        if index.dtype == bool:
            if index.shape != (self._rows,):
                raise IndexError(f"{self.name}: a mask of {index.shape} for {self._rows} steps")
            index = np.flatnonzero(index)
        if index.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: cannot index with {key!r}")
        index = np.where(index < 0, index + self._rows, index)
        if index.size and (index.min() < 0 or index.max() >= self._rows):
            raise IndexError(f"{self.name}: steps {key!r} out of range for {self._rows} steps")
        if index.size == 0:
            return np.empty((*index.shape, *self.row_shape), self.dtype)
        unique, inverse = np.unique(index.reshape(-1), return_inverse=True)
        if self.is_string:
            taken = self._decode(self._strings(int(unique[0]), int(unique[-1]) + 1, unique))
        else:
            with hdf5_errors(self.name):
                taken = self.dataset[unique]
        result: np.ndarray[Any, Any] = taken[inverse].reshape(*index.shape, *self.row_shape)
        return result

    def iter_chunks(self) -> Iterator[np.ndarray[Any, Any]]:
        """The rows chunk by chunk, as stored."""
        for start in range(0, self._rows, self.chunk_rows):
            yield self.read(start, start + self.chunk_rows)


class _DirectChunks:
    """Whole rows of a chunked dataset read chunk by chunk without HDF5's filter pipeline.

    A chunk stored raw (no filter, or its filters marked as skipped, as the recorder leaves
    a partly filled chunk) is read by HDF5 straight into the caller's array; a blosc2 chunk
    (a one-chunk blosc2 frame, as the recorder writes) is read, then decompressed straight
    into it; a deflate chunk (shuffled or not) is inflated by ISA-L, then unshuffled into it.
    That is one copy, or one copy and one decompression, per chunk, where HDF5's pipeline
    makes three: ``episode.batches()`` of 224x224 frames reads 1.56x the steps/s it
    did through ``dataset[a:b]`` (``benchmarks/test_read.py``, README). Anything else (small
    chunks, other filters, a frame another writer made) goes through HDF5 as usual.
    """

    def __init__(self, dataset: h5py.Dataset, filters: list[int]) -> None:
        self.dataset = dataset
        self.filters = filters
        self.filtered = bool(filters)
        self.chunk_rows = int(dataset.chunks[0])
        self.row_bytes = dataset.dtype.itemsize * math.prod(dataset.shape[1:])
        self.chunk_bytes = self.chunk_rows * self.row_bytes
        self.zeros = (0,) * (dataset.ndim - 1)

    @classmethod
    def of(cls, dataset: h5py.Dataset) -> _DirectChunks | None:
        """A reader for ``dataset``, or None where HDF5 has to read it."""
        chunks = dataset.chunks
        if chunks is None or tuple(chunks[1:]) != tuple(dataset.shape[1:]):
            return None
        if dataset.dtype.kind not in "biufc" or dataset.id.get_type().get_size() != (
            dataset.dtype.itemsize
        ):
            return None  # bytes on disk laid out otherwise than in memory: HDF5 converts them
        if chunks[0] * dataset.dtype.itemsize * math.prod(chunks[1:]) < DIRECT_CHUNK_BYTES:
            return None
        filters = filters_of(dataset)
        if filters not in _DIRECT_FILTERS:
            return None
        return cls(dataset, filters)

    def read(self, start: int, stop: int, out: np.ndarray[Any, Any]) -> None:
        flat = out.reshape(-1).view(np.uint8)
        rows = self.chunk_rows
        for first in range(start - start % rows, stop, rows):
            lo, hi = max(start, first), min(stop, first + rows)
            target = flat[(lo - start) * self.row_bytes : (hi - start) * self.row_bytes]
            if not self._chunk(first, lo - first, hi - first, target):
                self.dataset.read_direct(out, np.s_[lo:hi], np.s_[lo - start : hi - start])

    def _chunk(self, first: int, lo: int, hi: int, target: np.ndarray[Any, Any]) -> bool:
        """Rows ``[lo, hi)`` of the chunk at row ``first`` into ``target``; False when
        HDF5 has to read them.

        In the recording process the writer thread may rewrite the chunk between the lookup
        and the read (a raw chunk, once full, may be written compressed elsewhere): what is
        decided is decided on the mask and size of the bytes actually read.
        """
        coord = (first, *self.zeros)
        chunks = self.dataset.id
        info = chunks.get_chunk_info_by_coord(coord)
        if info.byte_offset is None:
            return False  # never written: HDF5 gives the fill value
        whole = lo == 0 and hi == self.chunk_rows
        if whole and info.size == self.chunk_bytes and (not self.filtered or info.filter_mask & 1):
            try:
                mask, read = chunks.read_direct_chunk(coord, out=target)
            except ValueError:  # it grew since the lookup
                return False
            return bool((not self.filtered or mask & 1) and len(read) == self.chunk_bytes)
        mask, stored = chunks.read_direct_chunk(coord)
        if not self.filtered or mask & 1:
            if len(stored) != self.chunk_bytes:
                return False
            target[:] = np.frombuffer(stored, np.uint8, len(target), lo * self.row_bytes)
            return True
        if self.filters != [BLOSC2_FILTER]:
            return self._inflate(stored, lo, hi, target)
        try:
            schunk = blosc2.schunk_from_cframe(stored, copy=False)
            if schunk.nchunks != 1 or schunk.nbytes != self.chunk_bytes:
                return False
            if whole:
                schunk.decompress_chunk(0, dst=target)
                return True
            whole_chunk = np.empty(self.chunk_bytes, np.uint8)  # per call: threads may share us
            schunk.decompress_chunk(0, dst=whole_chunk)
        except (RuntimeError, ValueError):
            return False
        target[:] = whole_chunk[lo * self.row_bytes : hi * self.row_bytes]
        return True

    def _inflate(self, stored: bytes, lo: int, hi: int, target: np.ndarray[Any, Any]) -> bool:
        try:
            raw = isal_zlib.decompress(stored, bufsize=self.chunk_bytes)
        except isal_zlib.error:  # type: ignore[misc]  # an exception class, untyped
            return False  # HDF5 reads it, and says what is wrong
        if len(raw) != self.chunk_bytes:
            return False
        chunk = np.frombuffer(raw, np.uint8)
        if self.filters[0] == SHUFFLE_FILTER:
            itemsize = self.dataset.dtype.itemsize
            chunk = chunk.reshape(itemsize, -1).T.reshape(-1)
        target[:] = chunk[lo * self.row_bytes : hi * self.row_bytes]
        return True


# filter pipelines the direct reader decodes itself
_DIRECT_FILTERS: tuple[list[int], ...] = (
    [], [BLOSC2_FILTER], [DEFLATE_FILTER], [SHUFFLE_FILTER, DEFLATE_FILTER]
)


def _is_int(key: Any) -> bool:
    return isinstance(key, int | np.integer) and not isinstance(key, bool)


@dataclass(frozen=True)
class Time:
    """Each step's time: ``monotonic_ns`` (when ``record()`` stored it, the clock of
    ``time.monotonic_ns()``) and ``wall_ns`` (the same instant, Unix epoch nanoseconds)."""

    monotonic_ns: Column
    wall_ns: Column

    def seconds(self) -> np.ndarray[Any, Any]:
        """Seconds since the first step (float64), from the monotonic clock."""
        stamps = np.asarray(self.monotonic_ns)
        if not stamps.size:
            return np.zeros(0)
        seconds: np.ndarray[Any, Any] = (stamps - stamps[0]).astype(np.float64) / 1e9
        return seconds


def _order(space: spaces.Space[Any], name: str) -> list[str]:
    if isinstance(space, spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in _order(sub, f"{name}/{key}")]
    return [name]


def _sub_space(space: spaces.Space[Any], path: Sequence[str]) -> spaces.Space[Any]:
    for key in path:
        assert isinstance(space, spaces.Dict)
        space = space.spaces[key]
    return space


class Episode:
    """An open recording. Use :func:`h5recorder.open`; see its docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.file = _open_file(self.path)
        try:
            with hdf5_errors(self.path):
                self._load()
        except Exception:
            self.file.close()
            raise

    def _load(self) -> None:
        file = self.file
        attrs = file.attrs
        roots = roots_of(file)
        if not roots:
            raise ReadError(
                f"{self.path}: no observation, action, state or supervision in this file; "
                "it was not written by a recorder (or no space was ever configured)"
            )
        try:
            checked = check_recording(file, roots)
        except ReadError as error:
            raise ReadError(f"{self.path}: {error}") from error
        datasets = checked.datasets
        rows = {name: int(dataset.shape[0]) if dataset.shape else 0 for name, dataset in datasets}
        self._problems: list[str] = []
        self._rows = rows
        self._size_attribute = checked.size
        self.size = steps_of(checked.size, rows)
        self.length = min([self.size, *rows.values()])
        self.rows_past_size = {name: count - self.size for name, count in rows.items()
                               if count > self.size}
        try:
            self.spaces: dict[str, spaces.Space[Any]] = {root: _space_of(file[root])
                                                         for root in roots}
        except ReadError as error:
            raise ReadError(f"{self.path}: {error}") from error
        except (KeyError, ValueError, TypeError, OverflowError) as error:
            raise ReadError(f"{self.path}: cannot rebuild the spaces from the attributes "
                            f"({error!r})") from error
        by_name = dict(datasets)
        self.columns: dict[str, Column] = {}
        for root, space in self.spaces.items():
            for name in _order(space, root):
                if name not in by_name:
                    raise ReadError(f"{self.path}: the spaces name a leaf {name!r}, the file "
                                    "holds no dataset there")
                parts = name.split("/")
                self.columns[name] = Column(
                    name, by_name[name], _sub_space(space, parts[1:]), self.length, checked.heap
                )
        try:
            for name, column in self.columns.items():
                check_rows(column.dataset, name, self.length)
        except ReadError as error:
            raise ReadError(f"{self.path}: {error}") from error
        self.time: Time | None = self._load_time()
        self.status: dict[str, Any] | None = checked.status
        self.options: dict[str, Any] | None = checked.options
        self._frames_info: dict[str, Any] | None = checked.frames
        self._recovered: dict[str, Any] | None = checked.recovered
        version = attrs.get(VERSION_ATTRIBUTE)
        self.version: str | None = (
            version.decode() if isinstance(version, bytes) else None if version is None
            else str(version)
        )
        self._template = self._step_template()

    def _load_time(self) -> Time | None:
        reference = self.file.attrs.get(TIME_ATTRIBUTE)
        if not isinstance(reference, h5py.Reference) or not reference:
            return None
        try:
            group = self.file[reference]
            columns = [
                Column(name, check_dataset(group, name, 0), spaces.Box(0, 0, (), np.int64),
                       self.length)
                for name in ("monotonic_ns", "wall_ns")
            ]
        except ReadError as error:
            raise ReadError(f"{self.path}: the time columns: {error}") from error
        except (KeyError, ValueError, OSError) as error:
            self._problems.append(f"the time columns cannot be read ({error})")
            return None
        short = [column.name for column in columns if column.dataset.shape[0] < self.length]
        if short:
            self._problems.append(f"the time columns {short} hold fewer rows than the steps")
            return None
        try:
            for column in columns:
                check_rows(column.dataset, column.name, self.length)
        except ReadError as error:
            raise ReadError(f"{self.path}: the time columns: {error}") from error
        return Time(*columns)

    # -- the mapping and sequence faces --------------------------------------------------

    @property
    def space(self) -> spaces.Dict:
        """Every root space in one ``Dict``."""
        return spaces.Dict(self.spaces)

    def keys(self) -> list[str]:
        """Leaf names (``"observation/image"``), in the order of the spaces."""
        return list(self.columns)

    def __len__(self) -> int:
        return self.length

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self.columns[key]
            except KeyError:
                raise KeyError(f"{key!r}: not a leaf of {self.path.name}; "
                               f"the leaves are {self.keys()}") from None
        if not _is_int(key):
            raise TypeError(f"an episode is indexed by a step (int) or a leaf name, got {key!r}")
        index = int(key)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"step {key} out of range for {self.length} steps")
        return self._step({name: column[index] for name, column in self.columns.items()})

    def _step_template(self) -> list[tuple[str, Any]]:
        def node(space: spaces.Space[Any], name: str) -> Any:
            if isinstance(space, spaces.Dict):
                return [(key, node(sub, f"{name}/{key}")) for key, sub in space.spaces.items()]
            return name

        return [(root, node(space, root)) for root, space in self.spaces.items()]

    def _step(self, values: Mapping[str, Any]) -> dict[str, Any]:
        def build(node: Any) -> Any:
            if isinstance(node, str):
                return values[node]
            return {key: build(child) for key, child in node}

        return {root: build(node) for root, node in self._template}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every step as nested dicts, read a block of whole chunks at a time."""
        names = list(self.columns)
        for batch in self.batches(include_time=False):
            columns = [batch[name] for name in names]
            for row in range(len(batch["step"])):
                yield self._step(
                    {name: column[row] for name, column in zip(names, columns, strict=True)}
                )

    def block_rows(self, names: Sequence[str]) -> int:
        """Rows per batch: whole chunks of the largest-chunked leaf, about ``BLOCK_BYTES``."""
        columns = [self.columns[name] for name in names]
        if not columns:
            return 1024
        row_bytes = sum(column.row_bytes for column in columns) + 16
        widest = max(column.chunk_rows for column in columns)
        rows = max(1, BLOCK_BYTES // row_bytes)
        if rows >= widest:
            return rows - rows % widest
        # whole chunks of the leaves whose chunks fit; the small-row leaves are cached by HDF5
        fitting = [column.chunk_rows for column in columns if column.chunk_rows <= rows]
        step = max(fitting) if fitting else 1
        return max(step, rows - rows % step)

    def batches(
        self,
        size: int | None = None,
        keys: Sequence[str] | None = None,
        start: int = 0,
        stop: int | None = None,
        *,
        include_time: bool = True,
        allocate: Callable[[tuple[int, ...], np.dtype[Any]], np.ndarray[Any, Any]] | None = None,
    ) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        """Steps ``[start, stop)`` in batches: flat dicts of arrays, one entry per leaf.

        Each batch holds ``"step"`` (int64 step numbers), ``"monotonic_ns"`` and
        ``"wall_ns"`` when the file keeps each step's time, and one array per leaf name in
        ``keys`` (default: every leaf), first axis the steps. ``size=None`` picks whole
        chunks, about 32 MiB a batch. ``allocate(shape, dtype)``, when given, makes the empty
        array each leaf's rows are read into (text leaves excepted).
        """
        names = list(self.columns) if keys is None else list(keys)
        for name in names:
            if name not in self.columns:
                raise KeyError(f"{name!r}: not a leaf of {self.path.name}; the leaves are "
                               f"{self.keys()}")
        stop = self.length if stop is None else min(stop, self.length)
        rows = self.block_rows(names) if size is None else int(size)
        if rows < 1:
            raise ValueError(f"size: expected at least 1, got {size}")
        time = self.time if include_time else None
        for first in range(max(0, start), stop, rows):
            last = min(stop, first + rows)
            batch: dict[str, np.ndarray[Any, Any]] = {
                "step": np.arange(first, last, dtype=np.int64)
            }
            if time is not None:
                batch["monotonic_ns"] = time.monotonic_ns.read(first, last)
                batch["wall_ns"] = time.wall_ns.read(first, last)
            for name in names:
                column = self.columns[name]
                out = None
                if allocate is not None and not column.is_string:
                    out = allocate((last - first, *column.row_shape), column.dtype)
                batch[name] = column.read(first, last, out=out)
            yield batch

    # -- what the recorder left beside the data -----------------------------------------

    @property
    def frames_dir(self) -> Path:
        return self.path.with_name(self.path.stem + "_frames")

    def frame_folders(self) -> dict[str, Path]:
        """The PNG folder of each saved leaf, from the ``recorder_frames`` attribute.

        Files without it (mbodied's, or no key saved): ``<stem>_frames`` for a leaf named
        ``image`` when that folder holds PNG files.
        """
        info = self._frames_info
        if isinstance(info, Mapping) and info.get("keys"):
            keys = [str(key) for key in info["keys"]]
            if len(keys) == 1:
                return {keys[0]: self.frames_dir}
            return {key: self.frames_dir.joinpath(*key.split("/")) for key in keys}
        images = [name for name in self.columns if name.rsplit("/", 1)[-1] == "image"]
        if len(images) == 1 and any(self.frames_dir.glob("*.png")):
            return {images[0]: self.frames_dir}
        return {}

    @property
    def frames(self) -> dict[str, list[Path]]:
        """Each saved leaf's PNG files that exist, in step order (missing ones left out)."""
        found: dict[str, list[Path]] = {}
        for name, folder in self.frame_folders().items():
            present = set(os.listdir(folder)) if folder.is_dir() else set()
            found[name] = [
                folder / f"{index}.png" for index in range(self.length) if f"{index}.png" in present
            ]
        return found

    def frame_path(self, name: str, index: int) -> Path:
        """Where the PNG of leaf ``name`` at step ``index`` is (or would be)."""
        folders = self.frame_folders()
        if name not in folders:
            raise KeyError(f"{name!r}: no PNG frames are saved for it; saved: {list(folders)}")
        return folders[name] / f"{index}.png"

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """Each leaf's ``stats_*`` attributes (``save_stats()`` and ``close()`` store them)."""
        found: dict[str, dict[str, Any]] = {}
        for name, column in self.columns.items():
            with hdf5_errors(f"{self.path}: {name}"):
                values = {
                    key[len("stats_") :]: value
                    for key, value in column.dataset.attrs.items()
                    if key.startswith("stats_")
                }
            if values:
                found[name] = values
        return found

    @property
    def closed(self) -> bool | None:
        """True when ``close()`` finished the file; False when the recording never got there
        (a crash, or still running); None for files that cannot say (older versions,
        mbodied's). The same as ``health.closed``."""
        with hdf5_errors(self.path):
            return closed_of(self.file.attrs, bool(self.rows_past_size))

    @property
    def health(self) -> Health:
        """Whether the recording went well (:class:`Health`), from its attributes, with the
        PNG frames that are absent from disk."""
        with hdf5_errors(self.path):
            return health_of(
                self.file.attrs,
                path=self.path,
                size=self._size_attribute,
                rows=self._rows,
                statistics=bool(self.columns)
                and all(has_statistics(column.dataset.attrs) for column in self.columns.values()),
                status=self.status,
                frames=self._frames_info,
                recovered=self._recovered,
                frames_missing=self.missing_frames(),
                problems=self._problems,
            )

    def missing_frames(self) -> list[str]:
        """PNG files of saved leaves that are not on disk (listed by the recorder, or absent)."""
        info = self._frames_info
        if not isinstance(info, Mapping):
            return []
        listed = [str(path) for path in info.get("missing", [])]
        absent: list[str] = []
        if info.get("keys"):
            for folder in self.frame_folders().values():
                present = set(os.listdir(folder)) if folder.is_dir() else set()
                absent += [
                    str(folder / f"{index}.png")
                    for index in range(self.length)
                    if f"{index}.png" not in present
                ]
        names = {os.path.basename(path) for path in absent}
        return absent + [path for path in listed if os.path.basename(path) not in names]

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Episode:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Episode {str(self.path)!r} ({self.length} steps, {len(self.columns)} leaves)>"


def _open_file(path: Path) -> h5py.File:
    if not path.exists():
        raise ReadError(f"{path}: no such file")
    if path.is_dir():
        raise ReadError(f"{path}: is a folder, not a recording")
    try:
        check_at_rest(path)
    except ReadError as error:
        raise ReadError(f"{path}: {error}") from error
    try:
        return h5py.File(path, "r")
    except OSError as error:
        text = str(error)
        if "unable to lock file" in text:
            reason = ("it is open for writing (a recorder is still running); read it after "
                      "close(), or after the process ended and 'h5recorder recover'")
        elif "truncated file" in text:
            reason = ("it is truncated: its recorder was killed before the first commit, and "
                      "nothing in it can be read")
        elif "file signature not found" in text:
            reason = "it is not an HDF5 file"
        else:
            reason = f"HDF5 cannot open it ({text})"
        raise ReadError(f"{path}: {reason}") from error


def open_episode(path: str | os.PathLike[str]) -> Episode:
    """Open a recording for reading.

    Parameters
    ----------
    path
        An ``.h5`` file written by h5recorder (any version) or by mbodied's ``Recorder``.
        A file whose recorder was killed opens as it is: only the steps below ``size`` are
        read, and :attr:`Episode.health` says it needs ``h5recorder recover``.

    Returns
    -------
    Episode
        A context manager. ``len(episode)`` steps; ``episode.spaces`` (rebuilt from the
        attributes); ``episode["observation/image"]`` a lazy :class:`Column`;
        ``episode[i]`` one step as nested dicts, as mbodied's ``Replayer`` yields it (``Text``
        as ``str``, ``Tuple`` as a tuple); ``for step in episode`` and
        ``episode.batches(...)`` read a block of whole chunks at a time; ``episode.time`` each
        step's monotonic and wall-clock time (None for files that do not keep it);
        ``episode.frames``, ``episode.stats``, ``episode.status``, ``episode.health``.

    Raises
    ------
    ReadError
        When the file is missing, not HDF5, truncated, still open for writing, or holds no
        recording; the message says which.

    Examples
    --------
    >>> with h5recorder.open("saved_datasets/episode.h5") as episode:  # doctest: +SKIP
    ...     for batch in episode.batches(keys=["observation/image", "action"]):
    ...         train(batch["observation/image"], batch["action"])
    """
    return Episode(path)
