"""What a recording holds, written down once: attribute names, their payloads, the codecs.

Both sides use this module, the write side (recorder, writer, recover) and the read side
(open, inspect, dataset, cli); it imports neither, only the standard library, numpy and
:mod:`h5recorder.errors`. To add an attribute or a codec, start here.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SchemaError

__all__ = [
    "CLOSED_ATTRIBUTE",
    "FRAMES_ATTRIBUTE",
    "OPTIONS_ATTRIBUTE",
    "RECOVERED_ATTRIBUTE",
    "SPACE_ATTRIBUTE",
    "STATUS_ATTRIBUTE",
    "TIME_ATTRIBUTE",
    "VERSION_ATTRIBUTE",
    "Compression",
    "frames_payload",
    "jsonable",
    "parse_compression",
]

VERSION_ATTRIBUTE = "recorder_version"
OPTIONS_ATTRIBUTE = "recorder_options"
STATUS_ATTRIBUTE = "recorder_status"
FRAMES_ATTRIBUTE = "recorder_frames"
CLOSED_ATTRIBUTE = "recorder_closed"
RECOVERED_ATTRIBUTE = "recorder_recovered"
TIME_ATTRIBUTE = "recorder_time"
SPACE_ATTRIBUTE = "recorder_space"


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


# -- codecs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compression:
    """The ``compression`` option, parsed: ``filter`` is ``"blosc2"``, ``"gzip"``, ``"lzf"``
    or None (stored raw); ``codec`` is blosc2's inner codec, ``level`` the level of blosc2 and
    gzip (the other filters have none)."""

    filter: str | None
    codec: str = "lz4"
    level: int = 1


def parse_compression(compression: str | None, level: int | None) -> Compression:
    """Parse ``compression`` (see ``Options``); a level of None picks 1 (blosc2, gzip).

    A blosc2 codec other than lz4 and zstd is passed on as given (hdf5plugin checks it).
    """
    if compression is None:
        return Compression(None)
    if compression.startswith("blosc2"):
        codec = compression.partition(":")[2] or "lz4"
        return Compression("blosc2", codec, 1 if level is None else level)
    if compression == "gzip":
        return Compression("gzip", level=1 if level is None else level)
    if compression == "lzf":
        return Compression("lzf")
    raise SchemaError(
        f"compression: expected 'blosc2', 'blosc2:lz4', 'blosc2:zstd', 'gzip', 'lzf' or None, "
        f"got {compression!r}"
    )
