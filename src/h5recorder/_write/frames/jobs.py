"""What a frame job is and where its file goes: names shared by the pool and its workers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import SchemaError, WriterError

__all__ = [
    "FrameCounters",
    "FrameError",
    "FrameJob",
    "FrameSource",
    "Task",
    "frame_dirs",
    "frame_path",
]


class FrameError(WriterError):
    """A frame could not be written as PNG; the worker's exception is the ``__cause__``.

    ``path`` is the PNG file that is missing, ``step`` the step it belongs to (``None`` for a
    frame given with :meth:`FramePool.encode_from_array`).
    """

    def __init__(self, path: str, step: int | None, reason: str) -> None:
        self.path = path
        self.step = step
        self.reason = reason
        at = "" if step is None else f" (step {step})"
        super().__init__(f"PNG frame {path}{at} was not written: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.step, self.reason))


def frame_dirs(
    frames_dir: str | os.PathLike[str], names: Sequence[str], create: bool = True
) -> dict[str, Path]:
    """The folder of each saved leaf's PNG files (created unless ``create`` is false).

    One leaf: ``frames_dir`` itself. Several: ``frames_dir/<name>``, where a name such as
    ``observation/image`` is a path of folders.
    """
    root = Path(frames_dir)
    folders: dict[str, Path] = {}
    for name in names:
        parts = name.split("/")
        if any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts):
            raise SchemaError(f"{name!r}: cannot name a folder of PNG frames")
        folders[name] = root if len(names) == 1 else root.joinpath(*parts)
    if create:
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
    return folders


def frame_path(folder: str | os.PathLike[str], index: int) -> str:
    """``<folder>/<index>.png``."""
    return os.path.join(os.fspath(folder), f"{index}.png")


class FrameSource(NamedTuple):
    """Where a leaf's frames lie: a segment in ``/dev/shm`` holding ``[capacity, *frame]``.

    ``dtype`` is numpy's string for the dtype (``"|u1"``, ``"<u2"``).
    """

    segment: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, column: Any) -> FrameSource:
        """The source of a :class:`h5recorder._write.ring.SharedColumn`."""
        array = column.array
        return cls(str(column.name), tuple(int(n) for n in array.shape), array.dtype.str)


class FrameJob(NamedTuple):
    """One frame to write: step ``step``, read from ``slot`` of ``source``, to ``path``."""

    step: int
    source: FrameSource
    slot: int
    path: str


@dataclass(frozen=True)
class FrameCounters:
    """What a pool has done so far.

    ``submitted`` jobs given to :meth:`FramePool.submit`; ``written`` PNG files written (from
    the ring or from arrays); ``failed`` frames reported as :class:`FrameError`; ``deferred``
    jobs taken back with :meth:`FramePool.withdraw`; ``from_array`` frames given with
    :meth:`FramePool.encode_from_array`; ``retried`` jobs handed to another worker after
    theirs died; ``restarts`` workers replaced; ``added`` workers started because the
    encoders fell behind (see ``max_workers``).
    """

    submitted: int = 0
    written: int = 0
    failed: int = 0
    deferred: int = 0
    from_array: int = 0
    retried: int = 0
    restarts: int = 0
    added: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# What travels to a worker per frame: (job id, segment file, column shape, dtype, slot, path,
# transient). A transient segment is a plain file holding one frame, read once.
Task = tuple[int, str, tuple[int, ...], str, int, str, bool]
