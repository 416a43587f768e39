"""The head of a recording file: HDF5's superblock, and the journal the recorder keeps in the
user block before it (``durability="power"``; the writer's side is ``_write.journal``).

The journal: ``HEADER`` (magic, the length the file had at the last durable commit, the bytes
of entries, their crc32), then entries: ``ENTRY`` (offset, length) and the bytes that were
there before the commit in flight overwrote them. It is complete (its checksum holds) only
while a commit is being applied; marked empty (zeros) once it is durable. A complete journal
found at rest means a commit was interrupted: ``recover`` writes the old bytes back.

Readers look here before HDF5 reads anything (``_read.untrusted.check_at_rest``): a file with
a complete journal, or shorter than its superblock says, is not read as it is.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from ..errors import RecoveryError

__all__ = [
    "ENTRY",
    "HEADER",
    "MAGIC",
    "SIGNATURE",
    "Journal",
    "end_of_file",
    "find_superblock",
    "read_journal",
]

MAGIC = b"h5rjrnl1"
HEADER = struct.Struct("<8sQQI")  # magic, length of the durable file, entry bytes, crc32
ENTRY = struct.Struct("<QQ")  # offset, length; the old bytes follow


SIGNATURE = b"\x89HDF\r\n\x1a\n"


def find_superblock(fd: int, length: int) -> int | None:
    """Where HDF5's superblock starts: 0 or, after a user block, 512, 1024, 2048, ..."""
    at = 0
    while at < length:
        if os.pread(fd, len(SIGNATURE), at) == SIGNATURE:
            return at
        at = 512 if at == 0 else at * 2
    return None


@dataclass(frozen=True)
class Journal:
    """A complete journal: the old bytes to write back, and the length to cut the file to."""

    writes: list[tuple[int, bytes]]
    length: int

    @property
    def restored(self) -> int:
        return sum(len(data) for _, data in self.writes)


def read_journal(fd: int) -> Journal | None:
    """The complete journal at the start of the file ``fd``, checked; None when there is none.

    Only a complete journal (its checksum matches) counts: one cut short was never followed
    by the writes it protects against. One whose checksum holds but whose offsets or length
    the file cannot have (a file crafted, not one a crash left) raises ``RecoveryError``.
    """
    header = os.pread(fd, HEADER.size, 0)
    if len(header) < HEADER.size:
        return None
    magic, length, size, checksum = HEADER.unpack(header)
    if magic != MAGIC:
        return None
    file_length = os.fstat(fd).st_size
    base = find_superblock(fd, file_length)
    space = (base or 0) - HEADER.size  # the journal lies in the user block, before the superblock
    if size > max(0, space):
        return None  # not ours to read: it could not have been written there
    payload = os.pread(fd, size, HEADER.size)
    if len(payload) != size or zlib.crc32(payload) != checksum:
        return None
    assert base is not None
    writes: list[tuple[int, bytes]] = []
    at = 0
    while at < size:
        if at + ENTRY.size > size:
            raise RecoveryError(f"journal: an entry header at byte {at} runs past its {size} "
                                "bytes")
        offset, count = ENTRY.unpack_from(payload, at)
        at += ENTRY.size
        if offset < base or at + count > size:
            raise RecoveryError(
                f"journal: an entry of {count} bytes at offset {offset}; expected one at or "
                f"after the superblock ({base}) and within the journal's {size} bytes"
            )
        writes.append((offset, payload[at : at + count]))
        at += count
    ends = max([file_length, *(offset + len(data) for offset, data in writes)])
    if not base < length <= ends or any(offset + len(d) > length for offset, d in writes):
        raise RecoveryError(
            f"journal: restores the file to {length} bytes; expected more than the superblock's "
            f"offset ({base}), at most {ends} (the file's length, or the end of the bytes it "
            "restores), and covering every entry"
        )
    return Journal(writes, length)


def end_of_file(fd: int, length: int) -> int | None:
    """Where the superblock says the file ends (its end-of-file address), for superblock
    versions 0 to 3; None when there is no superblock to read."""
    at = find_superblock(fd, length)
    if at is None:
        return None
    block = os.pread(fd, 64, at)
    if len(block) < 16:
        return None
    version = block[8]
    if version in (2, 3):
        offsets, start = block[9], 12
    elif version in (0, 1):
        offsets, start = block[13], 24 + (4 if version == 1 else 0)
    else:
        return None
    if offsets not in (4, 8):
        return None
    code = "<I" if offsets == 4 else "<Q"
    if len(block) < start + 3 * offsets:
        return None
    # the end-of-file address counts from the start of the file, user block included (what
    # HDF5 writes, and checks against the file's length, whatever the base address)
    return int(struct.unpack_from(code, block, start + 2 * offsets)[0])
