"""Reads while recording: the reader's side of what the writer offers.

In the recording process, any ``h5py.File(path)`` of a file an open recorder is writing first
asks that recorder for a commit (``Recorder.flush``), so the reader sees every step
``record()`` returned for. The reader pays for it (one commit, on the writer thread); the
caller of ``record()`` never does. The hook wraps ``h5py.File.__init__``: for other files it
costs one dictionary lookup while a recorder is open, and nothing more.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
from h5py._objects import phil

from .errors import RecorderError

__all__ = ["register", "unregister"]

# (device, inode) of each file an open recorder of this process writes -> its flush()
_recording: dict[tuple[int, int], Callable[[], None]] = {}
_lock = threading.Lock()


def _identity(path: Any) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


def register(path: Path, flush: Callable[[], None]) -> None:
    """Call ``flush`` (the recorder's) before this process opens ``path`` with h5py."""
    identity = _identity(path)
    if identity is not None:
        with _lock:
            _recording[identity] = flush


def unregister(path: Path) -> None:
    identity = _identity(path)
    with _lock:
        if identity is not None:
            _recording.pop(identity, None)


def flush_before_open(name: Any) -> None:
    """Commit the open recorder writing ``name``, if any, so that opening it sees every step."""
    if not _recording or not isinstance(name, str | bytes | os.PathLike):
        return
    flush = _recording.get(_identity(name))  # type: ignore[arg-type]
    # A thread inside an h5py call (a visititems callback, say) holds h5py's lock, which
    # the writer needs to commit: waiting for it there would never end.
    if flush is None or phil._is_owned():
        return
    try:
        flush()
    except RecorderError:
        pass  # the recorder raises its own failure to its caller; this open goes ahead


def _install() -> None:
    original = h5py.File.__init__
    if getattr(original, "_h5recorder_hook", False):
        return

    @functools.wraps(original)
    def __init__(self: h5py.File, name: Any, *args: Any, **kwargs: Any) -> None:
        if _recording:
            flush_before_open(name)
        original(self, name, *args, **kwargs)

    __init__._h5recorder_hook = True  # type: ignore[attr-defined]
    h5py.File.__init__ = __init__


_install()
