"""The worker process: maps ring segments, encodes the frames it is sent, reports back.

A worker is a fresh interpreter started by :class:`~h5recorder._write.frames.pool.FramePool` with
:data:`BOOTSTRAP`. It imports this package, numpy and the chosen encoders, nothing else. It
reads each frame in place from the shared-memory ring (a transient file for frames given as
arrays), writes the PNG through ``<path>.<random>.part`` and a rename, answers each batch with one
message: per job, ``None`` or the exception (pickled, or a stand-in) and its traceback, and
the seconds the batch took.
"""

from __future__ import annotations

import math
import mmap
import os
import pickle
import signal
import time
import traceback
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .encoders import load_encoders, write_png
from .jobs import Task

__all__ = ["BOOTSTRAP", "serve"]

_CACHED_SEGMENTS = 32


class _Columns:
    """The ring segments a worker has mapped, by file; dropped once their file is unlinked."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, tuple[int, mmap.mmap, np.ndarray[Any, Any]]] = OrderedDict()

    def frame(self, task: Task) -> np.ndarray[Any, Any]:
        _, file, shape, dtype, slot, _, transient = task
        if transient:
            return np.fromfile(file, np.dtype(dtype)).reshape(shape[1:])
        entry = self._open.get(file)
        if entry is None or entry[2].shape != shape or entry[2].dtype.str != dtype:
            self._drop(file)
            entry = self._map(file, shape, np.dtype(dtype))
            self._open[file] = entry
            while len(self._open) > _CACHED_SEGMENTS:
                self._drop(next(iter(self._open)))
        self._open.move_to_end(file)
        if not 0 <= slot < shape[0]:
            raise IndexError(f"slot {slot} outside the {shape[0]} slots of {file}")
        frame: np.ndarray[Any, Any] = entry[2][slot]
        return frame

    def forget_unlinked(self) -> None:
        """Unmaps segments of rings that were closed, so their memory is freed."""
        for file, (fd, _, _) in list(self._open.items()):
            if os.fstat(fd).st_nlink == 0:
                self._drop(file)

    @staticmethod
    def _map(
        file: str, shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> tuple[int, mmap.mmap, np.ndarray[Any, Any]]:
        fd = os.open(file, os.O_RDONLY)
        try:
            need = math.prod(shape) * dtype.itemsize
            have = os.fstat(fd).st_size
            if have < need:
                raise ValueError(f"{file} holds {have} bytes, {shape} {dtype} needs {need}")
            view = mmap.mmap(fd, need, prot=mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            raise
        return fd, view, np.ndarray(shape, dtype, buffer=view)

    def _drop(self, file: str) -> None:
        entry = self._open.pop(file, None)
        if entry is not None:
            fd, view, _ = entry
            del entry  # the array over the map goes first, or the map cannot close
            try:
                view.close()
            except BufferError:  # a frame view is still referenced; the GC unmaps it later
                pass
            os.close(fd)


def _portable(error: Exception) -> tuple[BaseException, str]:
    """The exception, or a stand-in when it cannot be pickled, and its traceback."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))[-2000:]
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send a stand-in
        return RuntimeError(f"{type(error).__name__}: {error}"), text
    error.__traceback__ = None
    return error, text


def serve(fd: int, compress_level: int, chosen: dict[str, str]) -> None:
    """A worker's life: encode the batches that arrive on ``fd`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn = Connection(fd)
    try:
        load_encoders(chosen)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the pool
        conn.send(("failed", f"{type(error).__name__}: {error}"))
        return
    conn.send(("ready", os.getpid()))
    columns = _Columns()
    while True:
        try:
            batch: list[Task] | None = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if batch is None:
            return
        columns.forget_unlinked()
        results: list[tuple[int, tuple[BaseException, str] | None]] = []
        began = time.perf_counter()
        for task in batch:
            try:
                write_png(columns.frame(task), task[5], compress_level, chosen)
            except Exception as error:  # noqa: BLE001 - every failure goes back with its path
                results.append((task[0], _portable(error)))
            else:
                results.append((task[0], None))
        try:
            conn.send(("done", (results, time.perf_counter() - began)))
        except OSError:
            return


# The worker's command line: it imports this module under a bare stand-in for the package, so
# that ``h5recorder/__init__`` (h5py, numba, ...) never runs. It runs isolated (``-I``), so its
# first imports come from the standard library, never from the current folder; the path it
# imports the rest from is the parent's, passed explicitly.
BOOTSTRAP = """\
import json, sys, types
sys.path[:] = json.loads(sys.argv[5])
package = types.ModuleType("h5recorder")
package.__path__ = [sys.argv[4]]
sys.modules["h5recorder"] = package
from h5recorder._write.frames.worker import serve
serve(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))
import os
os._exit(0)  # every file it wrote is renamed into place: tearing the interpreter down is waste
"""
