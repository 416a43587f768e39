"""Mending a file whose recorder was killed: ``h5recorder recover PATH``.

What a killed recorder leaves (see ``_writer``), and what is done about it:

- With ``durability="power"``, a commit that a power cut interrupted while it overwrote the
  file's metadata: its journal (``_journal``) is complete, and its bytes are written back,
  which gives the file of the last durable commit.
- The index of a dataset was flushed before the superblock that records the file's new end of
  allocation: HDF5 then refuses to read what lies past the recorded end ("addr overflow").
  The recorded end is raised to the file's length (what ``h5clear --increment`` does); every
  byte past the old end was written by the recorder before the crash.
- Datasets hold more rows than ``size`` (chunks written after the last commit): every row
  below ``size`` is checked to read back, ``size`` is lowered to the longest readable prefix
  if one does not, and every dataset is trimmed to exactly ``size`` rows, as ``close()``
  would have done.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the blosc2 filter for reading

from ._format import RECOVERED_ATTRIBUTE, STATUS_ATTRIBUTE
from ._journal import roll_back
from .errors import RecoveryError

__all__ = ["RecoveryReport", "all_datasets", "recover"]


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


SIGNATURE = b"\x89HDF\r\n\x1a\n"
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


def raise_end_of_allocation(path: Path) -> int:
    """Raise the superblock's end of allocation to the file's length; return by how much.

    The superblock is at 0 or, after a user block, at 512, 1024, 2048, ... bytes. Only the
    versions 2 and 3 the recorder writes (offsets of 8 bytes) are mended.
    """
    length = os.path.getsize(path)
    with open(path, "r+b") as file:
        at = 0
        while at < length:
            file.seek(at)
            block = bytearray(file.read(48))
            if block[:8] == SIGNATURE:
                break
            at = 512 if at == 0 else at * 2
        else:
            return 0
        if len(block) < 48 or block[8] not in (2, 3) or block[9] != 8:
            return 0
        base = int(struct.unpack_from("<Q", block, 12)[0])
        end = base + int(struct.unpack_from("<Q", block, 28)[0])
        if end >= length:
            return 0
        struct.pack_into("<Q", block, 28, length - base)
        struct.pack_into("<I", block, 44, checksum(bytes(block[:44])))
        file.seek(at)
        file.write(block)
    return length - end


def all_datasets(file: h5py.File) -> list[h5py.Dataset]:
    """Every dataset in ``file``, those of groups reached by a root attribute's reference
    (the unlinked time group, see ``_schema``) included."""
    found: list[h5py.Dataset] = []

    def take(_: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(obj)

    file.visititems(take)
    for name in file.attrs:
        if h5py.check_ref_dtype(file.attrs.get_id(name).dtype) is None:
            continue  # not read: a string attribute may be cut off by a crash
        value = file.attrs[name]
        if isinstance(value, h5py.Reference) and value:
            target = file[value]
            if isinstance(target, h5py.Group):
                target.visititems(take)
    return found


def _readable_rows(dataset: h5py.Dataset, rows: int) -> int:
    step = dataset.chunks[0] if dataset.chunks else max(1, rows)
    for start in range(0, rows, step):
        try:
            dataset[start : min(rows, start + step)]
        except (OSError, ValueError, RuntimeError):
            return start
    return rows


def recover(path: str | Path) -> RecoveryReport:
    """Make ``path`` consistent after a crash; return what was done.

    Raises :class:`RecoveryError` when the file cannot be opened at all.
    """
    path = Path(path)
    try:
        rolled_back = roll_back(path)
        end_raised = raise_end_of_allocation(path)
        file = h5py.File(path, "r+")
    except OSError as error:
        raise RecoveryError(f"{path}: cannot open the file ({error})") from error
    with file:
        # per-step time included: its group is reached from the root's ``recorder_time``
        datasets = [d for d in all_datasets(file) if d.shape and d.maxshape[0] is None]
        size_before = int(file.attrs.get("size", 0))
        size = size_before
        for dataset in datasets:
            size = min(size, dataset.shape[0])
            size = _readable_rows(dataset, size)
        trimmed: dict[str, int] = {}
        for dataset in datasets:
            if dataset.shape[0] > size:
                trimmed[dataset.name or "?"] = dataset.shape[0] - size
                dataset.resize(size, axis=0)
        file.attrs["size"] = size
        file.attrs[RECOVERED_ATTRIBUTE] = json.dumps(
            {"size_before": size_before, "size_after": size, "trimmed": trimmed}
        )
        if STATUS_ATTRIBUTE in file.attrs:
            try:
                status = json.loads(file.attrs[STATUS_ATTRIBUTE])
            except (OSError, ValueError):
                # rewritten in place by the commit in flight: its text (in HDF5's global
                # heap) was replaced before the attribute pointing to it; counters are lost
                status = {"unreadable_after_crash": True}
            status["rows_committed"] = size
            file.attrs[STATUS_ATTRIBUTE] = json.dumps(status)
    return RecoveryReport(path, size_before, size, trimmed, end_raised, rolled_back)
