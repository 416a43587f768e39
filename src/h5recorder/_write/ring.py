"""Preallocated ring buffers: one array per leaf, ``[capacity, *shape]``, plus a timestamp.

The caller writes slot ``head % capacity`` and then advances ``head``; the writer reads the
slots in ``[tail, head)`` and advances ``tail`` once every consumer has released them. Each
index is written by one thread only, so plain attributes suffice under the GIL.

With hand-over (``Recorder(handover=True)``), the caller stores a reference to each large
value in ``held`` instead of copying it; the writer copies the held values of rows
``[copied, head)`` into their slots (:meth:`Ring.copy_held`) before it reads any row, so every
consumer (the writer, its helpers, the PNG workers) only ever sees rows whose values are in
the ring. A held value keeps its slot reserved until then, so the ring's capacity bounds them.

Columns of saved image keys live in POSIX shared memory (``/dev/shm/h5rec_<pid>_...``) so
that worker processes can read frames in place; segments of dead processes are swept at start.
Faulting in a shared column costs the kernel about 0.7 s per GB (no huge pages there), so a
closed recorder's shared columns are kept for ``SPARE_SECONDS`` (:class:`Spares`): the next
recorder of the process with columns of the same shape takes them as they are, already in
memory, and an episode after episode opens in a few tens of milliseconds.
"""

from __future__ import annotations

import atexit
import mmap
import multiprocessing.util
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .schema import Leaf

__all__ = ["SHM_DIR", "SHM_PREFIX", "Ring", "sweep_stale_segments"]

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "h5rec_"
BYTE_COPY_ELEMENTS = 256  # numpy releases the GIL for copies of more than about 500 elements
HANDOVER_BYTES = 1 << 16  # with hand-over, rows of at least this size are held, not copied
SPARE_SECONDS = 10.0  # how long a closed recorder's shared columns wait for the next recorder
SPARE_BYTES = 1 << 30  # at most this much of them is kept; the rest is freed at close


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_segments() -> list[str]:
    """Remove this user's shared-memory segments left by recorders whose process is gone.

    Anyone can create a file with our prefix: segments of other users are left alone, and one
    that cannot be removed is skipped, so a sweep never stops a recorder from starting.
    """
    removed: list[str] = []
    if not SHM_DIR.is_dir():
        return removed
    uid = os.getuid()
    for entry in SHM_DIR.glob(f"{SHM_PREFIX}*"):
        try:
            pid = int(entry.name[len(SHM_PREFIX) :].split("_", 1)[0])
        except ValueError:
            continue
        if _pid_alive(pid):
            continue
        try:
            if entry.lstat().st_uid != uid:
                continue
            entry.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(entry.name)
    return removed


class SharedColumn:
    """A numpy array over a named shared-memory file, which other processes can map."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.name = name
        self.path = SHM_DIR / name
        self.pid = os.getpid()
        size = max(1, int(np.prod(shape)) * dtype.itemsize)
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.array: np.ndarray[Any, Any] = np.ndarray(shape, dtype, buffer=self._map)

    def close(self) -> None:
        self.array = np.empty(0)
        try:
            self._map.close()
        except BufferError:  # a view is still alive somewhere; the unlink below still frees it
            pass
        self.path.unlink(missing_ok=True)


class Spares:
    """Shared columns of closed recorders, kept a while for the next ring of this process.

    A forked child starts with none (:func:`_forget_in_child`), and a column made by another
    process is never kept. One is taken only for the same shape, dtype and folder. Its
    rows hold the previous recording's values, as a ring's rows do after its first pass: every
    row is written before anything reads it. What is not taken within ``SPARE_SECONDS`` is
    freed, and so is everything left when the process exits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: list[tuple[float, SharedColumn]] = []
        self._timer: threading.Timer | None = None
        self._exiting = False

    def take(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> SharedColumn | None:
        with self._lock:
            for i, (_, column) in enumerate(self._kept):
                if (
                    column.path.parent == SHM_DIR
                    and column.array.shape == shape
                    and column.array.dtype == dtype
                ):
                    del self._kept[i]
                    return column
        return None

    def keep(self, column: SharedColumn) -> None:
        """Keep ``column`` for the next ring; the longest kept make room for it beyond
        ``SPARE_BYTES``, and one larger than that alone is freed now."""
        freed: list[SharedColumn] = []
        with self._lock:
            if self._exiting or column.pid != os.getpid() or column.array.nbytes > SPARE_BYTES:
                freed.append(column)
            else:
                self._kept.append((time.monotonic(), column))
                while sum(c.array.nbytes for _, c in self._kept) > SPARE_BYTES:
                    freed.append(self._kept.pop(0)[1])
                if self._timer is None:
                    self._arm(SPARE_SECONDS)
        for old in freed:
            old.close()

    def _arm(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.name = "h5recorder-spares"
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            now = time.monotonic()
            old = [c for kept, c in self._kept if now - kept >= SPARE_SECONDS]
            self._kept = [(kept, c) for kept, c in self._kept if now - kept < SPARE_SECONDS]
            self._timer = None
            if self._kept:
                self._arm(max(0.0, min(kept for kept, _ in self._kept) + SPARE_SECONDS - now))
        for column in old:
            column.close()

    def at_exit(self) -> None:
        self._exiting = True  # a recorder closed after this frees its columns at once
        self.free()

    def free(self) -> None:
        """Free every column this process kept."""
        with self._lock:
            kept, self._kept = self._kept, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for _, column in kept:
            column.close()


spares = Spares()
atexit.register(spares.at_exit)


def _free_at_multiprocessing_exit(kept: Spares) -> None:
    # a multiprocessing child ends with os._exit after multiprocessing's own exit hooks,
    # never atexit's; its children forget the hooks they inherit, hence again after a fork
    multiprocessing.util.Finalize(None, kept.at_exit, exitpriority=0)


def _forget_in_child() -> None:
    """After a fork: the parent's columns are not the child's, and a lock the parent held
    at the fork would never be released."""
    spares._lock = threading.Lock()
    spares._kept = []
    spares._timer = None


_free_at_multiprocessing_exit(spares)
multiprocessing.util.register_after_fork(spares, _free_at_multiprocessing_exit)
os.register_at_fork(after_in_child=_forget_in_child)


class Ring:
    """The ring buffers of one recording; ``capacity`` slots shared by every leaf."""

    def __init__(
        self,
        leaves: list[Leaf],
        capacity: int,
        shared: set[int] | None = None,
        handover: bool = False,
    ) -> None:
        self.capacity = capacity
        self.head = 0
        self.tail = 0
        self.copied = 0  # rows below this hold no references: their values are in the ring
        self.columns: list[np.ndarray[Any, Any]] = []
        self.shared: dict[int, SharedColumn] = {}
        self.released = threading.Event()
        # Only columns that worker processes read go to shared memory: /dev/shm gets no huge
        # pages here, and copying a frame into it costs a few microseconds more.
        to_share = (shared or set()) if SHM_DIR.is_dir() else set()
        token = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        for leaf in leaves:
            shape = (capacity, *leaf.shape)
            spare = spares.take(shape, leaf.dtype) if leaf.index in to_share else None
            if spare is not None:  # in memory already: every page was touched before
                self.shared[leaf.index] = spare
                self.columns.append(spare.array)
                continue
            if leaf.index in to_share:
                column = SharedColumn(f"{token}_{leaf.index}", shape, leaf.dtype)
                self.shared[leaf.index] = column
                array = column.array
            else:
                array = np.empty(shape, leaf.dtype)
            if array.dtype != object:
                array.fill(0)  # touch every page now, not during the first pass of record()
            else:
                array.fill("")
            self.columns.append(array)
        self.stamps = np.zeros(capacity, np.int64)
        # Large rows are copied as bytes through a memoryview, which keeps the GIL: numpy
        # releases it for big copies, and a caller that releases and retakes the GIL at every
        # step starves the writer thread of it (it may wait seconds for its turn).
        self.byte_rows: list[tuple[memoryview, int] | None] = [
            (column.reshape(-1).data.cast("B"), column[0].nbytes)
            if column.dtype != object and column[0].size > BYTE_COPY_ELEMENTS
            else None
            for column in self.columns
        ]
        # per column: the values handed over for each slot, not copied yet (None: copied)
        self.held: list[list[Any] | None] | None = None
        self._holding: list[tuple[np.ndarray[Any, Any], list[Any]]] = []
        if handover:
            held: list[list[Any] | None] = [
                [None] * capacity
                if column.dtype != object and column[0].nbytes >= HANDOVER_BYTES
                else None
                for column in self.columns
            ]
            self._holding = [
                (column, values)
                for column, values in zip(self.columns, held, strict=True)
                if values is not None
            ]
            if self._holding:
                self.held = held

    def copy_held(self) -> int:
        """Copy the values held for the rows published so far into their slots; return the
        head they reach. Only the thread that reads the rows calls it, before reading them.
        """
        head = self.head
        if self.copied == head or not self._holding:
            self.copied = head
            return head
        capacity = self.capacity
        for row in range(self.copied, head):
            slot = row % capacity
            for column, values in self._holding:
                value = values[slot]
                values[slot] = None
                # numpy releases the GIL for a copy this large: the caller's thread runs on
                column[slot] = value
        self.copied = head
        return head

    @property
    def held_rows(self) -> int:
        """Rows whose large values are still the caller's arrays, not copied yet."""
        return self.head - self.copied if self._holding else 0

    @property
    def pending(self) -> int:
        return self.head - self.tail

    def close(self) -> None:
        self.held = None
        self._holding = []
        for view in self.byte_rows:
            if view is not None:
                view[0].release()
        self.byte_rows = []
        self.columns = []
        for column in self.shared.values():
            spares.keep(column)
        self.shared = {}


def capacity_for(leaves: list[Leaf], budget_bytes: int, minimum: int = 16) -> int:
    """How many slots fit ``budget_bytes`` (never fewer than ``minimum``)."""
    step = sum(leaf.row_bytes if not leaf.is_string else 8 for leaf in leaves) + 8
    return int(max(minimum, min(budget_bytes // step, 1 << 22)))
