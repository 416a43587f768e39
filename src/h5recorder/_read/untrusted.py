"""Checks on a file handed to the reader, ``dataset()`` and ``recover``: nothing it claims is
believed before it is checked against the file itself.

Recordings travel, and ``h5recorder.open``, ``inspect``, ``stats`` and ``recover`` are pointed
at files someone else made. What the format lets a file claim is checked here, before anything
is allocated, read from elsewhere or written on its word:

- JSON attributes: at most :data:`MAX_JSON_BYTES` of text (a space description may hold more:
  per-element bounds), at most :data:`MAX_JSON_DEPTH` levels deep, of the type the format gives
  them (``recorder_status``: an object of numbers);
- ``size``: one non-negative integer;
- the layout: groups and datasets reached from the roots by hard links only (a soft or external
  link is not followed), each once, at most ``MAX_DEPTH`` groups deep; datasets stored in
  this file (external or virtual storage would read other files): the walk is
  :func:`h5recorder._format.attrs.walk_datasets`;
- a space description: the shape it gives each leaf is the shape of the dataset that holds it;
- rows: a dataset stores the chunks that the rows to be read from it need, so a claimed length
  costs what the file holds, not what it says;
- PNG frame keys: names of leaves, with no empty, ``.`` or ``..`` part (the writer's rule);
- variable-length data (``str`` attributes, ``Text`` rows): the global heap collections it
  refers to, walked before HDF5 reads them (``_format.heap``: HDF5 loops for ever on some
  damaged collections). The attributes of the root, the groups and the datasets are checked
  here; rows, by the reader, before it reads them.

What h5py raises on a file HDF5 cannot read (an ``OSError``, ``KeyError``, ``RuntimeError`` or
``ValueError`` for a bad checksum, a truncated file, a chunk that does not decode) is raised
again, inside ``_format.attrs.hdf5_errors``, as a :class:`ReadError` naming what was being read.

Before HDF5 reads anything, :func:`check_at_rest` looks at the file's head: a complete
journal in the user block (a commit interrupted by a power cut or a kill, ``durability=
"power"``) or a file shorter than its superblock says is refused, naming ``h5recorder
recover``. HDF5 would read such a file as it is, and some of its states (a variable-length
string heap half rewritten) make HDF5 loop forever.

Every failure is a :class:`ReadError` that names the attribute or dataset, what was expected
and what was found; ``recover`` raises it again as a :class:`RecoveryError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .._format.attrs import (
    FRAMES_ATTRIBUTE,
    OPTIONS_ATTRIBUTE,
    RECOVERED_ATTRIBUTE,
    SPACE_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    check_storage,
    walk_datasets,
)
from .._format.head import end_of_file, read_journal
from .._format.heap import HeapCheck
from ..errors import ReadError, RecoveryError

__all__ = [
    "MAX_ITEM_ELEMENTS",
    "MAX_JSON_BYTES",
    "Checked",
    "check_at_rest",
    "check_dataset",
    "check_description",
    "check_frame_keys",
    "check_recording",
    "check_rows",
    "json_attribute",
]

MAX_JSON_BYTES = 4 << 20  # the recorder's own attributes are a few KiB
JSON_BYTES_PER_ELEMENT = 64  # a space description may list two bounds for every element
MAX_JSON_DEPTH = 64  # the deepest space a recorder writes nests a few levels
MAX_ITEM_ELEMENTS = 1 << 20  # a Tuple item (one JSON string a step) described as an array


def check_at_rest(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ReadError` when ``path`` is not as a finished commit left it: its last
    commit was interrupted (a complete journal), or it is shorter than its superblock says.
    Reads the file's head only (a few small reads; the journal's bytes when there is one)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # HDF5 says why when it tries
    try:
        length = os.fstat(fd).st_size
        try:
            journal = read_journal(fd)
        except RecoveryError as error:
            raise ReadError(f"its journal cannot be believed: {error}") from error
        if journal is not None:
            raise ReadError(
                "its last commit was interrupted (a crash while the recorder committed, "
                f"durability='power'): run 'h5recorder recover {path}' to roll it back to the "
                "last durable commit, then read it"
            )
        end = end_of_file(fd, length)
        if end is not None and length < end:
            raise ReadError(
                f"it is truncated: {length} bytes, where its superblock says {end}. If a crash "
                f"left it so, run 'h5recorder recover {path}'; a copy cut short, copy it again"
            )
    finally:
        os.close(fd)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


def _depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and objects, without recursing."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        level.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def json_attribute(
    obj: h5py.HLObject,
    name: str,
    expected: type | tuple[type, ...] = dict,
    limit: int = MAX_JSON_BYTES,
) -> Any:
    """The JSON attribute ``name`` of ``obj``, checked; None when it is absent or not JSON
    (mbodied writes Python reprs, and a crash may leave a string cut short)."""
    try:
        raw = obj.attrs.get(name)
    except OSError:  # rewritten by the commit a crash cut short (see ``_write.recover``)
        return None
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if not isinstance(raw, str):
        return None
    where = f"{obj.name}:{name}" if obj.name != "/" else name
    if len(raw) > limit:
        raise ReadError(f"{where}: expected JSON of at most {limit} bytes, found {len(raw)}")
    try:
        value = json.loads(raw)
    except RecursionError as error:
        raise ReadError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from error
    except ValueError:
        return None
    depth = _depth(value)
    if depth > MAX_JSON_DEPTH:
        raise ReadError(
            f"{where}: expected JSON at most {MAX_JSON_DEPTH} levels deep, found {depth}+"
        )
    if not isinstance(value, expected):
        wanted = "an object" if expected is dict else "a list" if expected is list else "JSON"
        raise ReadError(f"{where}: expected {wanted}, found {_kind(value)}")
    return value


def _size_attribute(file: h5py.File) -> int | None:
    if "size" not in file.attrs:
        return None
    array = np.asarray(file.attrs["size"])
    if array.size != 1 or array.dtype.kind not in "iu":
        shown = array.reshape(-1)[:3].tolist() if array.dtype.kind in "biufcU" else array.dtype
        raise ReadError(f"size: expected one integer, found {shown!r} ({array.dtype})")
    size = int(array.reshape(-1)[0])
    if size < 0:
        raise ReadError(f"size: expected a number of steps (0 or more), found {size}")
    return size


def _check_status(status: Mapping[str, Any] | None) -> None:
    if status is None:
        return
    for key, value in status.items():
        if value is not None and not isinstance(value, int | float):  # bool is an int
            raise ReadError(
                f"{STATUS_ATTRIBUTE}: expected numbers, found {_kind(value)} for {key!r}"
            )


def _row_shape(dataset: h5py.Dataset) -> list[int]:
    return [int(size) for size in dataset.shape[1:]]


def _shape(value: Any, where: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(item, int) and not isinstance(item, bool) and item >= 0
               for item in values):
        raise ReadError(f"{where}: expected a shape of whole numbers, found {value!r:.80}")
    return list(values)


def check_description(description: Any, node: h5py.Group | h5py.Dataset, where: str) -> None:
    """``description`` (a ``recorder_space``) describes ``node``: Dict for groups, and for
    datasets the shape each row has."""
    if not isinstance(description, dict):
        raise ReadError(f"{where}: expected a space description (an object), found "
                        f"{_kind(description)}")
    kind = description.get("type")
    if kind == "Dict":
        children = description.get("spaces")
        if not isinstance(node, h5py.Group) or not isinstance(children, dict):
            raise ReadError(f"{where}: a Dict space describes a group of leaves, found {node!r}")
        for key, child in children.items():
            if key not in node:
                raise ReadError(f"{where}/{key}: described by the space, absent from the file")
            check_description(child, node[key], f"{where}/{key}")
        return
    if not isinstance(node, h5py.Dataset):
        raise ReadError(f"{where}: a {kind} space describes a dataset, found a group")
    row = _row_shape(node)
    if kind == "Box":
        claimed = _shape(description.get("shape"), f"{where}: the space's shape")
    elif kind == "MultiDiscrete":
        try:
            claimed = list(np.shape(description.get("nvec", [])))
        except ValueError as error:  # a ragged list
            raise ReadError(f"{where}: the space's nvec is not an array") from error
    elif kind == "MultiBinary":
        claimed = _shape(description.get("n"), f"{where}: the space's n")
    elif kind == "Tuple":
        items = description.get("spaces")
        if not isinstance(items, list):
            raise ReadError(f"{where}: a Tuple space lists its items, found {_kind(items)}")
        for position, item in enumerate(items):
            _check_item(item, f"{where}[{position}]")
        claimed = []
    elif kind in ("Discrete", "Text"):
        claimed = []
    else:
        raise ReadError(f"{where}: expected a space type (Box, Dict, ...), found {kind!r:.80}")
    if claimed != row:
        raise ReadError(f"{where}: the space gives each step the shape {claimed}, the dataset "
                        f"holds rows of shape {row}")


def _check_item(description: Any, where: str) -> None:
    """An item of a Tuple space (stored as JSON text, no dataset to compare with): arrays of
    at most :data:`MAX_ITEM_ELEMENTS` elements."""
    if not isinstance(description, dict):
        raise ReadError(f"{where}: expected a space description, found {_kind(description)}")
    kind = description.get("type")
    subs = description.get("spaces")
    if kind in ("Dict", "Tuple"):
        values = subs.values() if isinstance(subs, dict) else subs if isinstance(subs, list) else []
        for key, sub in enumerate(values):
            _check_item(sub, f"{where}[{key}]")
        return
    shape: list[int] = []
    if kind == "Box":
        shape = _shape(description.get("shape"), f"{where}: the space's shape")
    elif kind == "MultiBinary":
        shape = _shape(description.get("n"), f"{where}: the space's n")
    if math.prod(shape) > MAX_ITEM_ELEMENTS:
        raise ReadError(f"{where}: expected at most {MAX_ITEM_ELEMENTS} elements in a Tuple "
                        f"item, found the shape {shape}")


def _elements(datasets: Sequence[tuple[str, h5py.Dataset]]) -> int:
    return sum(math.prod(dataset.shape[1:]) for _, dataset in datasets)


def _check_legacy(datasets: Sequence[tuple[str, h5py.Dataset]]) -> None:
    """The reference layout's ``shape`` attribute, where a space is rebuilt from it."""
    for name, dataset in datasets:
        if "shape" not in dataset.attrs:
            continue
        shape = np.asarray(dataset.attrs["shape"])
        numbers = shape.dtype.kind in "iu" or not shape.size
        claimed = shape.reshape(-1).tolist() if numbers else None
        if claimed != _row_shape(dataset):
            raise ReadError(f"{name}: its 'shape' attribute gives each step the shape "
                            f"{claimed if claimed is not None else shape.dtype}, the dataset "
                            f"holds rows of shape {_row_shape(dataset)}")


def check_frame_keys(keys: Any, leaves: Sequence[str]) -> list[str]:
    """The leaves named by ``recorder_frames`` ``keys``: each a leaf of the file, whose parts
    name folders (no empty, ``.`` or ``..`` part: the writer's ``frame_dirs`` rule)."""
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ReadError(f"{FRAMES_ATTRIBUTE}: expected a list of leaf names, found {keys!r:.80}")
    for key in keys:
        if any(part in ("", ".", "..") or "\\" in part or "\0" in part
               for part in key.split("/")):
            raise ReadError(f"{FRAMES_ATTRIBUTE}: {key!r:.80} cannot name a folder of PNG frames")
        if key not in leaves:
            raise ReadError(f"{FRAMES_ATTRIBUTE}: {key!r:.80} is not a leaf of the file "
                            f"(expected one of {list(leaves)[:8]})")
    return list(keys)


def check_rows(dataset: h5py.Dataset, name: str, rows: int) -> None:
    """``dataset`` stores what reading its first ``rows`` rows needs: every chunk (each one
    written takes space in the file) or, unchunked, every byte."""
    if rows <= 0:
        return
    elements = math.prod(dataset.shape[1:])
    if dataset.chunks is None:
        stored = int(dataset.id.get_storage_size())
        if stored < rows * elements:  # at least a byte for each element
            raise ReadError(f"{name}: expected {rows} rows, the file stores {stored} bytes "
                            "of it")
        return
    chunks = dataset.chunks
    per_rows = math.prod(-(-int(size) // int(chunk))
                         for size, chunk in zip(dataset.shape[1:], chunks[1:], strict=True))
    needed = -(-rows // int(chunks[0])) * per_rows
    stored = int(dataset.id.get_num_chunks())
    if stored < needed:
        at_most = stored // max(1, per_rows) * int(chunks[0])
        raise ReadError(f"{name}: expected {rows} rows, the file stores chunks for at most "
                        f"{at_most}")


def check_dataset(group: h5py.Group, key: str, rows: int) -> h5py.Dataset:
    """The dataset ``key`` of ``group`` (hard link, stored here), checked for ``rows`` rows."""
    where = f"{group.name}/{key}"
    link = group.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise ReadError(f"{where}: expected a dataset, found {type(link).__name__}")
    dataset = group[key]
    if not isinstance(dataset, h5py.Dataset):
        raise ReadError(f"{where}: expected a dataset, found {_kind(dataset)}")
    check_storage(dataset, where)
    check_rows(dataset, where, rows)
    return dataset


@dataclass(frozen=True)
class Checked:
    """What :func:`check_recording` found, checked."""

    size: int | None
    datasets: list[tuple[str, h5py.Dataset]]
    descriptions: dict[str, dict[str, Any] | None]
    status: dict[str, Any] | None
    options: dict[str, Any] | None
    frames: dict[str, Any] | None
    recovered: dict[str, Any] | None
    heap: HeapCheck


def _groups(roots: Sequence[str], datasets: Sequence[tuple[str, h5py.Dataset]]) -> list[str]:
    """The roots and every group between them and the datasets, each once."""
    groups = dict.fromkeys(roots)
    for name, _ in datasets:
        parts = name.split("/")
        groups.update(dict.fromkeys("/".join(parts[:end]) for end in range(1, len(parts))))
    return list(groups)


def check_recording(file: h5py.File, roots: Sequence[str],
                    heap: HeapCheck | None = None) -> Checked:
    """Check the attributes and layout of ``file`` below ``roots``; see the module docstring.
    ``heap`` reads the file for the checks of variable-length data (default: HDF5's own
    descriptor of it)."""
    heap = HeapCheck(file) if heap is None else heap
    heap.attributes(file, "/")
    size = _size_attribute(file)
    status = json_attribute(file, STATUS_ATTRIBUTE)
    _check_status(status)
    options = json_attribute(file, OPTIONS_ATTRIBUTE)
    recovered = json_attribute(file, RECOVERED_ATTRIBUTE)
    datasets = walk_datasets(file, list(roots))
    for name in _groups(roots, datasets):
        heap.attributes(file[name], name)
    for name, dataset in datasets:
        heap.attributes(dataset, name)
    limit = MAX_JSON_BYTES + JSON_BYTES_PER_ELEMENT * _elements(datasets)
    descriptions: dict[str, dict[str, Any] | None] = {}
    legacy: list[tuple[str, h5py.Dataset]] = []
    for root in roots:
        node = file[root]
        description = json_attribute(node, SPACE_ATTRIBUTE, limit=limit)
        if description is not None:
            check_description(description, node, root)
        else:
            legacy += [(name, d) for name, d in datasets if name.split("/", 1)[0] == root]
        descriptions[root] = description
    _check_legacy(legacy)
    frames = json_attribute(file, FRAMES_ATTRIBUTE)
    if frames is not None:
        if frames.get("keys"):
            check_frame_keys(frames["keys"], [name for name, _ in datasets])
        missing = frames.get("missing", [])
        if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
            raise ReadError(f"{FRAMES_ATTRIBUTE}: 'missing': expected a list of paths, found "
                            f"{missing!r:.80}")
    return Checked(size, datasets, descriptions, status, options, frames, recovered, heap)
