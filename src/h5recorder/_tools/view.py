"""An episode in the Rerun viewer: ``h5recorder view FILE [--save out.rrd]``.

Each leaf is sent as whole columns (``rerun.send_columns``), a batch of whole chunks at a time,
on two timelines: ``step`` (the step number) and ``time`` (each step's wall-clock time, when the
file keeps it). Image leaves (uint8 HxW, HxWx1/3/4; uint16 HxWx3/4) become images, uint16 HxW
leaves depth images (millimetres), numbers and vectors of up to ``MAX_SCALARS`` elements time
series, ``Text`` and ``Tuple`` leaves text logs.

rerun-sdk is an optional extra (``pip install 'h5recorder[view]'``), imported only here.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .._read.episode import Column, Episode, open_episode

__all__ = ["MAX_SCALARS", "plan_entities", "view"]

MAX_SCALARS = 64  # wider leaves (matrices, point sets) are listed as not shown
DEPTH_METER = 1000.0  # uint16 depth in millimetres, as most depth cameras give it
# Images go out about 1 MiB a call: the .rrd sink took 1.1 s for one 75 MiB column of 512
# frames, 0.12-0.16 s in calls of 8 (per-step rr.log: 0.2-0.3 s)
IMAGE_CALL_BYTES = 1 << 20


class _Blobs:
    """A ready Arrow array of image buffers, for ``rerun.ComponentColumn``."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def as_arrow_array(self) -> Any:
        return self.array


def _import_rerun() -> Any:
    try:
        import rerun
    except ImportError as error:
        raise ImportError(
            "h5recorder view needs the Rerun SDK, an optional extra: "
            "pip install 'h5recorder[view]' (or pip install rerun-sdk)"
        ) from error
    return rerun


def _kind(column: Column) -> str | None:
    """How a leaf is shown: 'image', 'depth', 'scalars', 'text', or None (not shown)."""
    shape, dtype = column.row_shape, column.dtype
    if column.is_string:
        return "text"
    if dtype == np.uint16 and len(shape) == 2:
        return "depth"
    images = (np.dtype(np.uint8), np.dtype(np.uint16))
    if dtype in images and (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))):
        return "image" if dtype == np.uint8 or shape[-1] in (3, 4) else None
    if dtype.kind in "biuf" and math.prod(shape) <= MAX_SCALARS:
        return "scalars"
    return None


def plan_entities(episode: Episode) -> dict[str, str | None]:
    """Each leaf name and how it is shown (None: not shown, too wide to plot)."""
    return {name: _kind(column) for name, column in episode.columns.items()}


def _format(rr: Any, column: Column) -> Any:
    height, width = column.row_shape[:2]
    channels = column.row_shape[2] if len(column.row_shape) == 3 else 1
    model = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    datatype = "U8" if column.dtype == np.uint8 else "U16"
    return rr.components.ImageFormat(
        width=width, height=height, color_model=model, channel_datatype=datatype
    )


def view(
    path: str | os.PathLike[str],
    *,
    save: str | os.PathLike[str] | None = None,
    keys: list[str] | None = None,
    spawn: bool = True,
    batch_size: int | None = None,
) -> dict[str, str | None]:
    """Send the episode at ``path`` to the Rerun viewer, or save it as an ``.rrd`` file.

    Parameters
    ----------
    path
        A recording (anything :func:`h5recorder.open` reads).
    save
        Write the Rerun recording to this file instead of showing it (no display needed);
        ``rerun out.rrd`` opens it later.
    keys
        Leaf names to send (default: every leaf).
    spawn
        Without ``save``: start a viewer (True) or connect to one already running (False).
    batch_size
        Steps sent per ``send_columns`` call (default: whole chunks, about 32 MiB).

    Returns
    -------
    dict
        Each leaf sent and how it was shown (``"image"``, ``"depth"``, ``"scalars"``,
        ``"text"``, or None when too wide to plot).

    Raises
    ------
    ImportError
        When rerun-sdk is not installed; the message names the extra.
    """
    rr = _import_rerun()
    with open_episode(path) as episode:
        kinds = plan_entities(episode)
        if keys is not None:
            unknown = [key for key in keys if key not in kinds]
            if unknown:
                raise KeyError(f"{unknown}: not leaves of {episode.path.name}; the leaves are "
                               f"{list(kinds)}")
            kinds = {key: kinds[key] for key in keys}
        recording = rr.RecordingStream(f"h5recorder {episode.path.stem}")
        if save is not None:
            recording.save(os.fspath(save))
        elif spawn:
            recording.spawn()
        else:
            recording.connect_grpc()
        shown = [name for name, kind in kinds.items() if kind is not None]
        for name in shown:
            column = episode.columns[name]
            if kinds[name] == "image":
                recording.log(name, rr.Image.from_fields(format=_format(rr, column)), static=True)
            elif kinds[name] == "depth":
                recording.log(
                    name,
                    rr.DepthImage.from_fields(format=_format(rr, column), meter=DEPTH_METER),
                    static=True,
                )
        for batch in episode.batches(size=batch_size, keys=shown):
            indexes = [("step", "sequence", batch["step"])]
            if "wall_ns" in batch:
                indexes.append(("time", "timestamp", batch["wall_ns"].astype("datetime64[ns]")))
            for name in shown:
                _send(rr, recording, name, kinds[name], batch[name], indexes)
        recording.flush()
        recording.disconnect()
    return kinds


def _send(
    rr: Any, recording: Any, name: str, kind: str | None, values: np.ndarray[Any, Any],
    indexes: list[Any],
) -> None:
    rows = len(values)
    if kind in ("image", "depth"):
        import pyarrow as pa  # a dependency of rerun-sdk

        pixels = np.ascontiguousarray(values).reshape(rows, -1).view(np.uint8)
        archetype = rr.Image if kind == "image" else rr.DepthImage
        descriptor = next(iter(archetype.columns(buffer=pixels[:1]))).descriptor
        blob = pa.list_(pa.field("item", pa.uint8(), nullable=False))
        width = pixels.shape[1]
        step = max(1, IMAGE_CALL_BYTES // max(1, width))
        for first in range(0, rows, step):
            part = pixels[first : first + step]
            offsets = pa.array(np.arange(len(part) + 1, dtype=np.int32) * width)
            buffers = pa.ListArray.from_arrays(offsets, pa.array(part.reshape(-1)), type=blob)
            recording.send_columns(
                name,
                indexes=[_slice(rr, index, first, first + len(part)) for index in indexes],
                columns=[rr.ComponentColumn(descriptor, _Blobs(buffers))],
            )
    elif kind == "scalars":
        scalars = values.reshape(rows, -1).astype(np.float64)
        recording.send_columns(name, indexes=[_slice(rr, index, 0, rows) for index in indexes],
                               columns=rr.Scalars.columns(scalars=scalars))
    elif kind == "text":
        texts = [item if isinstance(item, str) else repr(item) for item in values]
        recording.send_columns(name, indexes=[_slice(rr, index, 0, rows) for index in indexes],
                               columns=rr.TextLog.columns(text=texts))


def _slice(rr: Any, index: tuple[str, str, np.ndarray[Any, Any]], first: int, last: int) -> Any:
    timeline, kind, values = index
    return rr.TimeColumn(timeline, **{kind: values[first:last]})
