"""Power-loss durability (``durability="power"``): the file object HDF5 writes through.

A killed process loses nothing the page cache holds; a power cut loses the writes made since
the last fsync, each 4 KiB block kept or not, in any order. HDF5 updates its metadata in place
(chunk indexes, object headers, the superblock), so a cut in the middle of a flush could leave
an index that points nowhere. Through this file object, each commit goes:

1. Writes past the end the last durable commit left (new chunks, new index nodes) go to the
   file at once. Writes over bytes of that commit are held in memory (reads see them), except
   over the partly filled raw chunks the writer names (:meth:`JournaledFile.rewrites`), which
   it rewrites with the same bytes plus new rows.
2. fsync: every new byte is on disk.
3. The bytes the held writes replace are saved in the journal, at the start of the file (the
   HDF5 user block, which HDF5 never reads or writes), with a checksum; fsync.
4. The held writes are applied; fsync.
5. The journal is marked empty; fsync. The commit is durable.

A complete journal is found only after a cut in steps 4-5: :func:`roll_back` writes its bytes
back and cuts the file to the length it had, which gives the last durable commit
(``recover`` does this first).

After each commit while recording, the writer lets go of the bytes the commit before it left
(:meth:`JournaledFile.let_go`): ``posix_fadvise(DONTNEED)`` starts writing them out now and
drops the pages that are already clean, instead of leaving the page cache to fill with the
recording's dirty pages until the kernel throttles every writer on the machine. It changes no
byte of the file: a page still dirty stays in the cache until it is written.
"""

from __future__ import annotations

import fcntl
import io
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .._format.head import ENTRY, HEADER, MAGIC, Journal, read_journal
from ..errors import WriterError
from .crew import Crew

__all__ = [
    "JOURNAL_BYTES",
    "JournaledFile",
    "apply_journal",
    "is_locked",
    "roll_back",
]

JOURNAL_BYTES = 1 << 20  # the user block: HDF5 wants a power of two, at least 512
PAGE_BYTES = 4096  # what let_go advises about: whole pages below the end it is given


class JournaledFile(io.FileIO):
    """The recording file as HDF5's ``fileobj`` driver sees it; see the module docstring."""

    def __init__(self, path: Path, user_block: int, journaled: bool = True) -> None:
        super().__init__(path, "r+")
        # HDF5 locks the files it opens itself; this one it does not open. A POSIX lock (by
        # process: readers in this process may still open the file) lets ``is_locked`` in
        # another process see that the file is being written.
        fcntl.lockf(self.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = path
        self.user_block = user_block  # the journal's space; where the superblock starts
        self.journaled = journaled
        self.durable_length = os.fstat(self.fileno()).st_size
        self.length = self.durable_length  # as HDF5 sees it (it cuts the file at flushes)
        self.held: list[tuple[int, bytes]] = []
        self.passing: dict[int, tuple[int, int]] = {}  # key -> raw chunk (offset, end)
        self.syncs = 0
        # Whole chunks lent by the writer (:meth:`lend`) are written by the crew's threads,
        # several at once; anything that reads the file or orders writes waits for them.
        self.crew: Crew | None = None
        self._lent: tuple[int, int, np.ndarray[Any, Any]] | None = None
        self._deferred = 0
        self._let_go_below = 0

    def lend(self, chunk: np.ndarray[Any, Any] | bytes | None) -> None:
        """The next write of exactly ``chunk``'s bytes, from its memory (HDF5 passes the
        buffer of a direct chunk write through), may be made by the crew after the call
        returns. The writer keeps ``chunk`` unchanged until :meth:`settle` returns; ``None``
        withdraws the offer."""
        if chunk is None or self.crew is None:
            self._lent = None
            return
        array = np.frombuffer(chunk, np.uint8) if isinstance(chunk, bytes) else chunk
        flat = array.reshape(-1).view(np.uint8)
        self._lent = (flat.ctypes.data, flat.nbytes, flat)

    def settle(self) -> None:
        """Wait for the lent chunks' writes; raise the first error one of them met."""
        if self._deferred and self.crew is not None:
            self._deferred = 0
            self.crew.wait()

    def close(self) -> None:
        if not self.closed:
            self.settle()
        super().close()

    def __repr__(self) -> str:  # h5py names the file after this
        return str(self.path)

    # -- what HDF5 calls -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        offset = self.tell()
        # HDF5's buffer, valid during this call: written from where it lies; only writes
        # held until the commit are copied
        block = memoryview(data).cast("B")
        end = offset + len(block)
        split = min(end, self.durable_length)
        if offset < split and not self._passes(offset, split):
            self.held.append((offset, bytes(block[: split - offset])))
            if end > split:
                self._put(split, block[split - offset :])
        elif self._lent is not None and self._is_lent(block):
            assert self.crew is not None
            self._deferred += 1
            self.crew.submit(self._put, offset, self._lent[2].data)
            self._lent = None
        else:
            self._put(offset, block)
        self.length = max(self.length, end)
        self.seek(end)
        return len(block)

    def _is_lent(self, block: memoryview) -> bool:
        assert self._lent is not None
        address, size, _ = self._lent
        return len(block) == size and np.frombuffer(block, np.uint8).ctypes.data == address

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self.settle()
        offset = self.tell()
        count = super().readinto(buffer) or 0
        view = memoryview(buffer).cast("B")
        for start, data in self.held:
            low, high = max(offset, start), min(offset + count, start + len(data))
            if low < high:
                view[low - offset : high - offset] = data[low - start : high - start]
        return count

    def truncate(self, size: int | None = None) -> int:
        self.settle()
        size = self.tell() if size is None else size
        self.length = size
        if size >= self.durable_length:
            super().truncate(size)
        return size  # a cut into the durable bytes waits for the commit (journaled)

    # -- the writer's side ---------------------------------------------------------------

    def rewrites(self, key: int, offset: int, size: int) -> None:
        """Writes inside ``[offset, offset + size)`` (a raw partly filled chunk) go straight."""
        self.passing[key] = (offset, offset + size)

    def commit(self) -> None:
        """Apply the held writes: steps 2-5 of the module docstring with a journal; without
        one (``durability="process"``), the same order without fsync or journal."""
        self.settle()  # every chunk's bytes are written before anything points at them
        held, self.held = self.held, []
        # the superblock first: its end of allocation then covers every new byte the
        # index nodes and headers written after it point to
        held.sort(key=lambda write: write[0] != self.user_block)
        physical = os.fstat(self.fileno()).st_size
        cut = self.length if self.length < physical else None
        entries = []
        if self.journaled:
            self._sync()
            for offset, data in held:
                old = os.pread(self.fileno(), len(data), offset)
                if old != data:
                    entries.append(ENTRY.pack(offset, len(old)) + old)
            if cut is not None and cut < self.durable_length:
                old = os.pread(self.fileno(), self.durable_length - cut, cut)
                entries.append(ENTRY.pack(cut, len(old)) + old)
        if entries:
            payload = b"".join(entries)
            header = HEADER.pack(MAGIC, self.durable_length, len(payload), zlib.crc32(payload))
            if len(header) + len(payload) > self.user_block:
                raise WriterError(
                    f"{self.path}: a commit overwrites {len(payload)} bytes, more than the "
                    f"{self.user_block}-byte journal holds; commit more often"
                )
            self._put(0, header + payload)
            self._sync()
        for offset, data in held:
            self._put(offset, data)
        if cut is not None:
            self._cut(cut)
        if entries:
            self._sync()
            self._put(0, bytes(HEADER.size))
        if self.journaled:
            self._sync()
        self.durable_length = os.fstat(self.fileno()).st_size

    def let_go(self, end: int) -> None:
        """Start writing out the bytes below ``end`` (what the commit before this one left)
        and drop their pages from the page cache once clean; each page is let go of once.

        Recording flat out to a disk on 2 cores, this gave 1.6x (hd) and 2.4x (seed) the
        steps/s of keeping the pages (``benchmarks/test_write_path.py::test_let_go``). On
        tmpfs it does nothing.
        """
        end -= end % PAGE_BYTES
        if end <= self._let_go_below or not hasattr(os, "posix_fadvise"):
            return
        try:
            os.posix_fadvise(
                self.fileno(), self._let_go_below, end - self._let_go_below,
                os.POSIX_FADV_DONTNEED,
            )  # fmt: skip
        except OSError:  # advice only: a file system that takes none loses nothing
            pass
        self._let_go_below = end

    def _passes(self, offset: int, end: int) -> bool:
        return any(low <= offset and end <= high for low, high in self.passing.values())

    # -- the disk (the crash-replay tests log these three) --------------------------------

    def _put(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fileno(), view, offset)
            view, offset = view[written:], offset + written

    def _sync(self) -> None:
        os.fsync(self.fileno())
        self.syncs += 1

    def _cut(self, size: int) -> None:
        os.ftruncate(self.fileno(), size)


def is_locked(path: Path) -> bool:
    """Whether another process writes ``path`` through a :class:`JournaledFile`."""
    with open(path, "rb") as file:
        try:
            fcntl.lockf(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(file.fileno(), fcntl.LOCK_UN)
    return False


def apply_journal(fd: int, journal: Journal) -> None:
    """Write ``journal``'s bytes back, cut the file to its length, then mark it empty."""
    for offset, data in journal.writes:
        os.pwrite(fd, data, offset)
    os.ftruncate(fd, journal.length)
    os.fsync(fd)
    os.pwrite(fd, bytes(HEADER.size), 0)
    os.fsync(fd)


def roll_back(path: Path) -> int:
    """Undo a commit that a power cut interrupted; return the bytes written back (0: none).

    See :func:`read_journal` for what is applied and what is refused.
    """
    with open(path, "r+b") as file:
        journal = read_journal(file.fileno())
        if journal is None:
            return 0
        apply_journal(file.fileno(), journal)
    return journal.restored
