"""What a recording holds, written down once: attribute names, their payloads, the layout.

Both sides use this module, the write side (recorder, writer, recover) and the read side
(open, inspect, dataset, cli); it imports neither, only the standard library, numpy, h5py and
:mod:`h5recorder.errors`. To add an attribute, start here; a codec,
:mod:`h5recorder._format.codecs`.

File attributes (JSON text unless said otherwise)::

    size                 int: rows every reader may read (mbodied's layout)
    recorder_version     str: the h5recorder that wrote the file
    recorder_options     the recorder's Options.to_dict()
    recorder_status      counters and health (Status.to_dict()), rewritten at every commit
    recorder_frames      PNG frames: see frames_payload()
    recorder_closed      bool (not JSON): close() finished the file
    recorder_recovered   what ``h5recorder recover`` changed: size_before, size_after, trimmed
    recorder_time        object reference to the group of the time columns

Each dataset (and group) of a space also has ``recorder_space``: its space as JSON.

The layout: one group (or dataset) per root of :data:`ROOTS` at the top of the file, a
dataset per leaf below it, first axis the steps; the time columns in a group that no link
names, reached by the ``recorder_time`` reference. :func:`walk_datasets` is the one walk of a
file's datasets, for the writer, the reader, ``dataset()`` and ``recover``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np

from ..errors import ReadError, RecorderError

__all__ = [
    "CLOSED_ATTRIBUTE",
    "FRAMES_ATTRIBUTE",
    "MAX_DEPTH",
    "OPTIONS_ATTRIBUTE",
    "RECOVERED_ATTRIBUTE",
    "ROOTS",
    "SPACE_ATTRIBUTE",
    "STATUS_ATTRIBUTE",
    "TIME_ATTRIBUTE",
    "VERSION_ATTRIBUTE",
    "check_storage",
    "frames_payload",
    "hdf5_errors",
    "jsonable",
    "roots_of",
    "walk_datasets",
]

VERSION_ATTRIBUTE = "recorder_version"
OPTIONS_ATTRIBUTE = "recorder_options"
STATUS_ATTRIBUTE = "recorder_status"
FRAMES_ATTRIBUTE = "recorder_frames"
CLOSED_ATTRIBUTE = "recorder_closed"
RECOVERED_ATTRIBUTE = "recorder_recovered"
TIME_ATTRIBUTE = "recorder_time"
SPACE_ATTRIBUTE = "recorder_space"

ROOTS = ("observation", "action", "state", "supervision")  # record()'s arguments, in order
MAX_DEPTH = 32  # groups below a root


def frames_payload(
    keys: list[str], folders: list[str], deferred: int, missing: list[str]
) -> dict[str, Any]:
    """The ``recorder_frames`` payload: the saved image keys, the folder of each, how many
    frames were deferred to ``close()`` and the PNG files that are missing."""
    return {"keys": keys, "folders": folders, "deferred": deferred, "missing": missing}


def jsonable(value: Any) -> Any:
    """``value`` in JSON's types, for reports (``inspect``, ``dataset``): numpy arrays and
    scalars become lists and Python numbers, mappings dicts with string keys, tuples lists.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (what ``str``
    gives, and ``float`` reads back), so any JSON parser reads the result.
    """
    if isinstance(value, np.ndarray):
        return [jsonable(item) for item in value.tolist()] if value.ndim else jsonable(
            value.item()
        )
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


# -- layout -----------------------------------------------------------------------------------

def roots_of(file: h5py.File) -> list[str]:
    """The roots the reader reads: the recorder's, in order, then any other root key."""
    return [key for key in ROOTS if key in file] + sorted(key for key in file if key not in ROOTS)


HDF5_ERRORS = (OSError, KeyError, RuntimeError, ValueError)  # what h5py raises for bad files


@contextmanager
def hdf5_errors(where: object) -> Iterator[None]:
    """Raise what h5py raises on a file it cannot read as a :class:`ReadError` naming
    ``where``; the project's own errors pass as they are."""
    try:
        yield
    except RecorderError:
        raise
    except HDF5_ERRORS as error:
        text = str(error).strip("'\"") or type(error).__name__
        raise ReadError(f"{where}: HDF5 cannot read it ({text})") from error


def check_storage(dataset: h5py.Dataset, name: str) -> None:
    """Refuse a dataset whose rows are not stored in its own file (virtual, external)."""
    plist = dataset.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise ReadError(f"{name}: a virtual dataset (it reads other datasets or files); a "
                        "recording stores its rows in its own file")
    if plist.get_external_count():
        source = plist.get_external(0)[0]
        raise ReadError(f"{name}: its rows are stored in an external file ({source!r}); a "
                        "recording stores its rows in its own file")


def _walk(
    node: h5py.Group, name: str, found: list[tuple[str, h5py.Dataset]], depth: int,
    seen: set[Any], skip_seen: bool = False,
) -> None:
    for key in node:
        path = f"{name}/{key}"
        link = node.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ReadError(f"{path}: a {type(link).__name__}; a recording's groups and "
                            "datasets are reached by hard links only")
        child = node[key]
        if child.id in seen:  # h5py compares objects by file and address
            if skip_seen:
                continue
            raise ReadError(f"{path}: reached twice (a link back into the layout)")
        seen.add(child.id)
        if isinstance(child, h5py.Dataset):
            check_storage(child, path)
            found.append((path, child))
        elif isinstance(child, h5py.Group):
            if depth >= MAX_DEPTH:
                raise ReadError(f"{path}: expected at most {MAX_DEPTH} nested groups")
            _walk(child, path, found, depth + 1, seen, skip_seen)


def walk_datasets(
    file: h5py.File, roots: list[str] | tuple[str, ...] | None = None, *,
    referenced: bool = False,
) -> list[tuple[str, h5py.Dataset]]:
    """Every dataset below ``roots`` (default :func:`roots_of`: every key at the top), as
    ``(path, dataset)``, in the order HDF5 lists them.

    Safe on a file someone else made: groups and datasets are reached by hard links only (a
    soft or external link is refused, not followed), each object once, at most
    :data:`MAX_DEPTH` groups deep, and each dataset's rows stored in this file
    (:func:`check_storage`); a :class:`ReadError` names what was refused. With
    ``referenced``, the datasets of groups that an object reference among the file's
    attributes points to (the time group, which no link names) follow, named
    ``<attribute>/<key>``; below those, an object already reached is passed over (the time
    group links to itself, to outlive the link it was created under).
    """
    found: list[tuple[str, h5py.Dataset]] = []
    seen: set[Any] = set()
    for root in roots_of(file) if roots is None else roots:
        link = file.get(root, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ReadError(f"{root}: a {type(link).__name__}; a recording's roots are "
                            "reached by hard links only")
        node = file[root]
        if isinstance(node, h5py.Dataset):
            check_storage(node, root)
            found.append((root, node))
        elif isinstance(node, h5py.Group):
            _walk(node, root, found, 0, seen)
    if referenced:
        for name in file.attrs:
            if h5py.check_ref_dtype(file.attrs.get_id(name).dtype) is None:
                continue  # not read: a string attribute may be cut off by a crash
            value = file.attrs[name]
            if not isinstance(value, h5py.Reference) or not value:
                continue
            target = file[value]
            if isinstance(target, h5py.Group) and target.id not in seen:
                seen.add(target.id)
                _walk(target, name, found, 0, seen, skip_seen=True)
    return found
