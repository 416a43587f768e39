"""Mending a file whose recorder was killed: ``h5recorder recover PATH``.

What a killed recorder leaves (see ``_write.writer``), and what is done about it:

- With ``durability="power"``, a commit that a power cut interrupted while it overwrote the
  file's metadata: its journal (``_write.journal``) is complete, and its bytes are written back,
  which gives the file of the last durable commit.
- The index of a dataset was flushed before the superblock that records the file's new end of
  allocation: HDF5 then refuses to read what lies past the recorded end ("addr overflow").
  The recorded end is raised to the file's length (what ``h5clear --increment`` does); every
  byte past the old end was written by the recorder before the crash.
- Datasets hold more rows than ``size`` (chunks written after the last commit): every row
  below ``size`` is checked to read back, ``size`` is lowered to the longest readable prefix
  if one does not, and every dataset is trimmed to exactly ``size`` rows, as ``close()``
  would have done.

Before any of that, a file that another process records is refused (its recorder's lock, or a
``.live`` sidecar naming a running process), and the file is locked until recover is done.
What the mending would write is first checked through a read-only view of the file as it would
be: a file holding what a crash cannot leave (``_read.untrusted``) is refused and left as it was.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the blosc2 filter for reading

from .._format.attrs import (
    RECOVERED_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    hdf5_errors,
    roots_of,
    walk_datasets,
)
from .._format.head import SIGNATURE, read_journal
from .._format.heap import HeapCheck
from .._format.live import sidecar
from .._read.untrusted import check_recording, check_rows
from ..errors import ReadError, RecoveryError
from .journal import apply_journal

__all__ = ["RecoveryReport", "recover"]


@dataclass(frozen=True)
class RecoveryReport:
    path: Path
    size_before: int
    size_after: int
    trimmed: dict[str, int]
    end_raised: int = 0  # bytes the superblock's end of allocation was raised by
    rolled_back: int = 0  # bytes of an interrupted commit written back from the journal

    def summary(self) -> str:
        lines = [f"{self.path}: {self.size_after} steps readable"]
        if self.rolled_back:
            lines.append(
                f"  interrupted commit undone: {self.rolled_back} bytes written back from the "
                "journal"
            )
        if self.end_raised:
            lines.append(
                f"  end of allocation raised by {self.end_raised} bytes to the file's length"
            )
        if self.size_after != self.size_before:
            lines.append(f"  size lowered from {self.size_before} (unreadable rows after it)")
        for name, rows in sorted(self.trimmed.items()):
            lines.append(f"  {name}: trimmed {rows} rows beyond size")
        return "\n".join(lines)


MASK32 = 0xFFFFFFFF


def _rotate(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & MASK32


def checksum(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` with seed 0: HDF5's metadata checksum."""
    a = b = c = (0xDEADBEEF + len(data)) & MASK32
    rest = len(data)
    position = 0
    while rest > 12:
        x, y, z = struct.unpack_from("<3I", data, position)
        a, b, c = (a + x) & MASK32, (b + y) & MASK32, (c + z) & MASK32
        for first, second, third, bits in _MIX:
            a, b, c = _mix_step((a, b, c), first, second, third, bits)
        rest -= 12
        position += 12
    if rest == 0:
        return c
    x, y, z = struct.unpack("<3I", data[position:] + bytes(12 - rest))
    a, b, c = (a + x) & MASK32, (b + y) & MASK32, (c + z) & MASK32
    for first, second, bits in _FINAL:
        a, b, c = _final_step((a, b, c), first, second, bits)
    return c


# lookup3's mix: registers[first] -= registers[third]; ^= rotate(third, bits); third += second
_MIX = [(0, 1, 2, 4), (1, 2, 0, 6), (2, 0, 1, 8), (0, 1, 2, 16), (1, 2, 0, 19), (2, 0, 1, 4)]
# lookup3's final: registers[second] ^= registers[first]; -= rotate(first, bits)
_FINAL = [(1, 2, 14), (2, 0, 11), (0, 1, 25), (1, 2, 16), (2, 0, 4), (0, 1, 14), (1, 2, 24)]


def _mix_step(
    registers: tuple[int, int, int], first: int, second: int, third: int, bits: int
) -> tuple[int, int, int]:
    values = list(registers)
    values[first] = ((values[first] - values[third]) & MASK32) ^ _rotate(values[third], bits)
    values[third] = (values[third] + values[second]) & MASK32
    return values[0], values[1], values[2]


def _final_step(
    registers: tuple[int, int, int], first: int, second: int, bits: int
) -> tuple[int, int, int]:
    values = list(registers)
    values[second] = ((values[second] ^ values[first]) - _rotate(values[first], bits)) & MASK32
    return values[0], values[1], values[2]


def end_of_allocation(
    read: Callable[[int, int], bytes], length: int
) -> tuple[int, bytes, int] | None:
    """The superblock with its end of allocation raised to ``length``: ``(offset, bytes, by
    how much)``, or None when nothing is to be raised. ``read(offset, count)`` reads the file.

    Only the versions 2 and 3 the recorder writes (offsets of 8 bytes) are mended.
    """
    at = 0
    while at < length:
        if read(at, len(SIGNATURE)) == SIGNATURE:
            break
        at = 512 if at == 0 else at * 2
    else:
        return None
    block = bytearray(read(at, 48))
    if len(block) < 48 or block[8] not in (2, 3) or block[9] != 8:
        return None
    base = int(struct.unpack_from("<Q", block, 12)[0])
    end = int(struct.unpack_from("<Q", block, 28)[0])  # from the file's start, user block too
    if end >= length or base > at:
        return None
    struct.pack_into("<Q", block, 28, length)
    struct.pack_into("<I", block, 44, checksum(bytes(block[:44])))
    return at, bytes(block), length - end


def _readable_rows(dataset: h5py.Dataset, rows: int, heap: HeapCheck, name: str) -> int:
    """The rows below ``rows`` that read back, a chunk at a time (``rows`` was checked against
    the chunks the file stores: the work is bounded by the file's length); text whose heap
    objects are damaged does not (``_format.heap``)."""
    step = dataset.chunks[0] if dataset.chunks else max(1, rows)
    for start in range(0, rows, step):
        try:
            heap.rows(dataset, start, min(rows, start + step), name)
            dataset[start : min(rows, start + step)]
        except (OSError, ValueError, RuntimeError):  # ReadError is an OSError
            return start
    return rows


class _View(io.RawIOBase):
    """The file ``fd`` as it will be once ``writes`` are made and it is cut to ``length``,
    read-only: HDF5 checks what recover would write before anything is written."""

    def __init__(self, fd: int, writes: list[tuple[int, bytes]], length: int) -> None:
        super().__init__()
        self.fd = fd
        self.writes = list(writes)
        self.length = length
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read_at(self, offset: int, count: int) -> bytes:
        count = max(0, min(count, self.length - offset))
        data = bytearray(os.pread(self.fd, count, offset).ljust(count, b"\0"))
        for start, patch in self.writes:
            low, high = max(offset, start), min(offset + count, start + len(patch))
            if low < high:
                data[low - offset : high - offset] = patch[low - start : high - start]
        return bytes(data)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read_at(self.position, len(view))
        view[: len(data)] = data
        self.position += len(data)
        return len(data)


def _lock(fd: int, path: Path) -> None:
    """Hold an exclusive lock on the file until ``fd`` is closed, or say who holds one.

    Linux's open file description locks conflict with the recorder's (``_write.journal``), even one
    in this process, and closing another descriptor of the file (HDF5's) does not drop them.
    """
    setlk = getattr(fcntl, "F_OFD_SETLK", None)
    if setlk is None:  # not Linux: a process lock, dropped when any descriptor is closed
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            raise RecoveryError(f"{path}: it is locked by another process (being "
                                "recorded?); recover it once that process has ended") from error
        return
    request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, setlk, request)
    except OSError as error:
        holder = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_OFD_GETLK, request))[4]
        who = f"process {holder}" if holder > 0 else "another recover"
        raise RecoveryError(f"{path}: {who} holds a lock on it (a recorder writing it, or a "
                            "recover mending it); recover it once that has ended") from error


def _refuse_live(path: Path) -> None:
    """Refuse a file whose live sidecar names a process that is running."""
    try:
        text = sidecar(path).read_text()[:4096]
        pid = int(json.loads(text)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no sidecar, or one that names no process
    if pid <= 0:
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # its recorder is gone (a crash): the file is at rest
    except PermissionError:
        pass  # running, as another user
    raise RecoveryError(f"{path}: process {pid} is recording it ({sidecar(path).name} names it); "
                        "recover it once that process has ended")


@dataclass(frozen=True)
class _Plan:
    size_before: int
    size: int
    trims: dict[str, int]
    status: dict[str, Any] | None  # the status to store, None: no status attribute


def _plan(file: h5py.File, heap: HeapCheck) -> _Plan:
    """Check ``file`` as the reader does and decide what to trim; write nothing."""
    checked = check_recording(file, roots_of(file), heap)
    # the time group's datasets have no name: the walk's path names them
    datasets = [(dataset.name or path, dataset)
                for path, dataset in walk_datasets(file, referenced=True)
                if dataset.shape and dataset.maxshape[0] is None]
    size_before = checked.size or 0
    size = size_before
    for _, dataset in datasets:
        size = min(size, dataset.shape[0])
    for name, dataset in datasets:
        check_rows(dataset, name, size)
    for name, dataset in datasets:
        size = _readable_rows(dataset, size, heap, name)
    trims = {name: d.shape[0] - size for name, d in datasets if d.shape[0] > size}
    status = None
    if STATUS_ATTRIBUTE in file.attrs:
        # None when rewritten in place by the commit in flight: its text (in HDF5's global
        # heap) was replaced before the attribute pointing to it; counters are lost
        status = dict(checked.status or {"unreadable_after_crash": True})
        status["rows_committed"] = size
    return _Plan(size_before, size, trims, status)


def recover(path: str | Path) -> RecoveryReport:
    """Make ``path`` consistent after a crash; return what was done.

    The file is locked while it is mended. Everything is checked before anything is written:
    a file refused is left as it was.

    Raises :class:`RecoveryError` when the file cannot be opened, is being recorded (another
    process holds its lock, or its live sidecar names a running process), or holds what a
    crash cannot leave (see ``_read.untrusted``); the message says which.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as error:
        raise RecoveryError(f"{path}: cannot open the file ({error})") from error
    try:
        _lock(fd, path)
        _refuse_live(path)
        try:
            journal = read_journal(fd)
        except RecoveryError as error:
            raise RecoveryError(f"{path}: {error}; refused, nothing was written") from error
        length = os.fstat(fd).st_size
        view = _View(fd, *((journal.writes, journal.length) if journal else ([], length)))
        superblock = end_of_allocation(view.read_at, view.length)
        if superblock is not None:
            view.writes.append(superblock[:2])
        try:
            with h5py.File(view, "r") as file, hdf5_errors("the file"):
                plan = _plan(file, HeapCheck(file, view.read_at, view.length))
        except ReadError as error:
            raise RecoveryError(f"{path}: {error}; refused, nothing was written") from error
        except OSError as error:
            raise RecoveryError(f"{path}: cannot open the file ({error})") from error
        # every check passed: the writes
        if journal is not None:
            apply_journal(fd, journal)
        if superblock is not None:
            os.pwrite(fd, superblock[1], superblock[0])
        try:
            with h5py.File(path, "r+") as file, hdf5_errors("mending it"):
                for _, dataset in walk_datasets(file, referenced=True):  # as checked
                    if (dataset.shape and dataset.maxshape[0] is None
                            and dataset.shape[0] > plan.size):
                        dataset.resize(plan.size, axis=0)
                file.attrs["size"] = plan.size
                file.attrs[RECOVERED_ATTRIBUTE] = json.dumps(
                    {"size_before": plan.size_before, "size_after": plan.size,
                     "trimmed": plan.trims}
                )
                if plan.status is not None:
                    file.attrs[STATUS_ATTRIBUTE] = json.dumps(plan.status)
        except OSError as error:  # a ReadError from hdf5_errors too
            raise RecoveryError(f"{path}: {error}") from error
    finally:
        os.close(fd)
    return RecoveryReport(
        path,
        plan.size_before,
        plan.size,
        plan.trims,
        superblock[2] if superblock else 0,
        journal.restored if journal else 0,
    )
