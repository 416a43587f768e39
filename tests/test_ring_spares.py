"""A closed recorder's shared columns (the ring of the PNG frames) are kept a while for the next
recorder of the process: episode after episode opens without faulting in a new ring, and every
episode's files hold its own frames, never a previous episode's."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from PIL import Image

from h5recorder import Recorder
from h5recorder._write import ring as ring_module
from h5recorder.workloads import photo_frames

pytestmark = pytest.mark.skipif(not ring_module.SHM_DIR.is_dir(), reason="needs /dev/shm")

SPACE = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                     "joint": spaces.Box(-1, 1, (3,), np.float32)})
BUFFER = 4 << 20


def record(folder: Path, name: str, frames: np.ndarray, buffer: int = BUFFER) -> list[str]:
    """One episode of ``frames``; the names of the shared columns its ring used."""
    with Recorder(name, out_dir=str(folder), observation_space=SPACE, buffer_bytes=buffer,
                  image_keys_to_save=["image"]) as recorder:
        used = [column.name for column in recorder._ring.shared.values()]
        for i, frame in enumerate(frames):
            recorder.record({"image": frame, "joint": np.float32([i / 1000, 0, 0])})
    return used


def segments() -> set[str]:
    return {p.name for p in ring_module.SHM_DIR.glob(f"{ring_module.SHM_PREFIX}{os.getpid()}_*")}


def check(folder: Path, name: str, frames: np.ndarray) -> None:
    with h5py.File(folder / f"{name}.h5", "r") as file:
        np.testing.assert_array_equal(file["observation/image"][:], frames)
        joints = np.zeros((len(frames), 3), np.float32)
        joints[:, 0] = np.arange(len(frames)) / 1000
        np.testing.assert_array_equal(file["observation/joint"][:], joints)
    pngs = sorted((folder / f"{name}_frames").rglob("*.png"))
    assert len(pngs) == len(frames)
    for path in pngs:
        index = int(path.stem.split("_")[-1]) if "_" in path.stem else int(path.stem)
        np.testing.assert_array_equal(np.asarray(Image.open(path)), frames[index])


def test_the_next_episode_takes_the_ring_of_the_last_and_keeps_only_its_own_frames(
    tmp_path: Path,
) -> None:
    first = photo_frames(300, 48, 64, seed=21)  # several passes of the 4 MiB ring
    second = photo_frames(40, 48, 64, seed=22)  # fewer rows: the rest still holds `first`
    used_first = record(tmp_path, "first", first)
    assert set(used_first) <= segments()  # kept after close, for the next recorder
    used_second = record(tmp_path, "second", second)
    assert used_second == used_first
    check(tmp_path, "first", first)
    check(tmp_path, "second", second)


def test_kept_columns_are_freed_after_a_while_and_a_different_shape_gets_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring_module.spares.free()
    monkeypatch.setattr(ring_module, "SPARE_SECONDS", 0.5)
    frames = photo_frames(20, 48, 64, seed=23)
    used = record(tmp_path, "kept", frames)
    assert set(used) <= segments()
    other = record(tmp_path, "other", frames, buffer=BUFFER // 2)  # other row count
    assert set(other).isdisjoint(used)
    deadline = time.monotonic() + 10
    while segments() & set(used + other) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not segments() & set(used + other)
    check(tmp_path, "kept", frames)
    check(tmp_path, "other", frames)


def test_beyond_spare_bytes_the_longest_kept_make_room_and_a_larger_one_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring_module.spares.free()
    frames = photo_frames(10, 48, 64, seed=24)
    monkeypatch.setattr(ring_module, "SPARE_BYTES", BUFFER // 8)  # less than one image column
    used = record(tmp_path, "big", frames)
    assert not segments() & set(used)  # freed at close
    monkeypatch.setattr(ring_module, "SPARE_BYTES", BUFFER + BUFFER // 4)  # one image column
    first = record(tmp_path, "first", frames)
    assert set(first) <= segments()
    second = record(tmp_path, "second", frames, buffer=BUFFER // 2)  # another shape
    assert set(second) <= segments() and not segments() & set(first)  # the older made room
    check(tmp_path, "first", frames)
    check(tmp_path, "second", frames)


def test_a_forked_child_never_takes_or_frees_the_parents_columns(tmp_path: Path) -> None:
    ring_module.spares.free()
    used = record(tmp_path, "parent", photo_frames(10, 48, 64, seed=25))
    ((_, column),) = ring_module.spares._kept
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: ask for the parent's column, then free what it may
        try:
            os.close(read)
            took = ring_module.spares.take(column.array.shape, column.array.dtype)
            ring_module.spares.free()
            os.write(write, b"took" if took is not None else b"none")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"none"
    assert set(used) <= segments()  # still there for the parent, which takes it next
    assert record(tmp_path, "after", photo_frames(10, 48, 64, seed=26)) == used


def _record_in_child(folder: str, queue: object) -> None:
    record(Path(folder), "child", photo_frames(10, 48, 64, seed=27))
    queue.put(os.getpid())  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_multiprocessing_child_frees_what_it_kept_when_it_ends(
    tmp_path: Path, method: str
) -> None:
    """multiprocessing ends a child with os._exit, which skips atexit: its kept columns are
    freed by multiprocessing's own exit hooks instead, not left in /dev/shm."""
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=_record_in_child, args=(str(tmp_path), queue))
    child.start()
    pid = queue.get(timeout=120)
    child.join(120)
    assert child.exitcode == 0
    assert not list(ring_module.SHM_DIR.glob(f"{ring_module.SHM_PREFIX}{pid}_*"))
    check(tmp_path, "child", photo_frames(10, 48, 64, seed=27))
