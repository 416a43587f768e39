"""The recorder lets go of what it committed: the page cache does not fill with the recording
(``JournaledFile.let_go``), and nothing of the file changes for it."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder.workloads import photo_frames

HEIGHT, WIDTH = 128, 192
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_share(path: Path, offset: int, length: int) -> float:
    """The share of the pages of ``[offset, offset + length)`` in the page cache (mincore)."""
    page = mmap.PAGESIZE
    start = offset // page * page
    pages = (offset + length - start + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, pages * page, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vector = (ctypes.c_ubyte * pages)()
            assert _libc.mincore(address, pages * page, vector) == 0
            return sum(byte & 1 for byte in vector) / pages
        finally:
            _libc.munmap(address, pages * page)
    finally:
        os.close(fd)


def drops_clean_pages(folder: Path) -> bool:
    """Whether this file system drops clean pages when told to (tmpfs keeps them)."""
    probe = folder / "probe"
    probe.write_bytes(os.urandom(1 << 20))
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 1 << 20, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    dropped = resident_share(probe, 0, 1 << 20) < 0.5
    probe.unlink()
    return dropped


def test_committed_chunks_leave_the_page_cache_and_read_back_exact(tmp_path):
    if not hasattr(os, "posix_fadvise") or not drops_clean_pages(tmp_path):
        pytest.skip("this file system keeps clean pages (tmpfs): nothing to let go")
    frames = photo_frames(96, HEIGHT, WIDTH, seed=3)
    space = spaces.Dict({"camera": spaces.Box(0, 255, (HEIGHT, WIDTH, 3), np.uint8)})
    # "power": every commit is fsync'd, so what the commit before left is clean when let go
    recorder = Recorder("cache", out_dir=str(tmp_path), observation_space=space,
                        durability="power", commit_interval=60, image_keys_to_save=[])
    for part in range(3):
        for frame in frames[part * 32 : (part + 1) * 32]:
            recorder.record({"camera": frame})
        recorder.flush()  # a commit: it lets go of what the commit before it left
    dataset = recorder.file["observation/camera"]
    per_chunk = dataset.chunks[0]
    assert 96 // per_chunk >= 4, per_chunk  # chunks of each part, old and new
    first = dataset.id.get_chunk_info_by_coord((0, 0, 0, 0))
    last = dataset.id.get_chunk_info_by_coord(((96 // per_chunk - 1) * per_chunk, 0, 0, 0))
    path = recorder.filename
    assert resident_share(path, first.byte_offset, first.size) < 0.5  # let go of
    assert resident_share(path, last.byte_offset, last.size) > 0.5  # written since: kept
    recorder.close()
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(file["observation/camera"][:], frames)
