"""Readers given a recording damaged at random: each one returns or raises the project's error
within a few seconds, and none hangs or kills the interpreter.

A real recording (a photo-like image, a ``Text`` leaf, a ``Discrete`` action, a float ``Box``,
several chunks per leaf, closed normally) is copied and damaged, reproducibly from a seed: cut
short at a random length, a 4 KiB page zeroed, or a few to a few dozen bytes flipped. Most
damage lands in pages that hold no chunk data (object headers, chunk indexes, heaps, the
journal) or inside a global heap collection, the rest anywhere. Every reader then reads the
copy in a worker process fed over a pipe: open and read every column and step, ``inspect
--check``, ``dataset()`` with its statistics, ``read_live``, and ``recover`` on a copy (then
the recovered file read whole). A reader that runs past :data:`SECONDS`, kills the worker, or
raises anything but a :class:`RecorderError` is a failure, reported with the seed that
rebuilds the case.

The default run damages :data:`QUICK` copies; ``-m slow`` runs :data:`LONG`.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder.workloads import photo_frames

STEPS = 1300  # two chunks of the Text, Discrete and Box leaves, three of the image
PAGE = 4096
SECONDS = 5.0  # a reader past this is stuck
QUICK = 30
LONG = 1500
BATCH = 150  # copies per test of the long run (each well inside faulthandler_timeout)
READERS = ("open", "inspect", "dataset", "read_live", "recover")

WORKER = r"""
import contextlib, io, json, os, shutil, sys, time, traceback
import numpy as np
import h5recorder
from h5recorder import RecorderError
from h5recorder._tools.cli import main
from h5recorder._write.recover import recover

def read_everything(path):
    with h5recorder.open(path) as episode:
        for name in episode.keys():
            np.asarray(episode[name])
        for index in range(len(episode)):
            episode[index]
        for _ in episode:
            pass
        episode.health, episode.stats, episode.frames
        if episode.time is not None:
            episode.time.seconds()

def inspect(path):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(["inspect", "--check", path])

def dataset(path):
    return h5recorder.dataset([path]).to_dict()

def recover_copy(path):
    copy = path + ".recovered.h5"
    shutil.copyfile(path, copy)
    try:
        recover(copy)
        read_everything(copy)
    finally:
        os.unlink(copy)

READERS = {"open": read_everything, "inspect": inspect, "dataset": dataset,
           "read_live": h5recorder.read_live, "recover": recover_copy}
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    start = time.perf_counter()
    try:
        READERS[job["reader"]](job["path"])
        outcome, message = "returned", ""
    except RecorderError as error:
        outcome, message = "refused", f"{type(error).__name__}: {error}"[:300]
    except BaseException as error:
        outcome = "leaked"
        where = traceback.extract_tb(error.__traceback__)[-1]
        message = (f"{type(error).__name__}: {error}"[:300]
                   + f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
    print(json.dumps({"outcome": outcome, "message": message,
                      "seconds": time.perf_counter() - start}), flush=True)
"""


@dataclass(frozen=True)
class Base:
    """The healthy recording and where in it HDF5 keeps its metadata."""

    data: bytes
    metadata_pages: list[int]  # pages holding no chunk data: headers, indexes, heaps, journal
    heap_offsets: list[int]  # where global heap collections start


def _record(folder: Path) -> Path:
    frames = photo_frames(16, 24, 32, seed=3)
    observation = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (24, 32, 3), np.uint8),
            "instruction": spaces.Text(40),
            "joints": spaces.Box(-1, 1, (7,), np.float32),
        }
    )
    rng = np.random.default_rng(3)
    with Recorder(
        "base",
        out_dir=str(folder),
        observation_space=observation,
        action_space=spaces.Discrete(5),
        image_keys_to_save=[],
        durability="power",
    ) as recorder:
        for i in range(STEPS):
            recorder.record(
                observation={
                    "image": frames[i % len(frames)],
                    "instruction": f"pick up the block {i % 37} and place it left",
                    "joints": rng.uniform(-1, 1, 7).astype(np.float32),
                },
                action=i % 5,
            )
    return Path(recorder.filename)


def _chunk_ranges(path: Path) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []

    def visit(_: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset) and node.chunks is not None:
            for index in range(node.id.get_num_chunks()):
                info = node.id.get_chunk_info(index)
                ranges.append((int(info.byte_offset), int(info.byte_offset) + int(info.size)))

    with h5py.File(path, "r") as file:
        file.visititems(visit)
    return ranges


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    path = _record(tmp_path_factory.mktemp("damaged"))
    data = path.read_bytes()
    covered = np.zeros(-(-len(data) // PAGE), np.int64)
    for start, stop in _chunk_ranges(path):
        for page in range(start // PAGE, -(-stop // PAGE)):
            low, high = max(start, page * PAGE), min(stop, (page + 1) * PAGE)
            covered[page] += max(0, high - low)
    metadata = [int(page) for page in np.flatnonzero(covered < PAGE // 2)]
    heaps, at = [], data.find(b"GCOL")
    while at >= 0:
        heaps.append(at)
        at = data.find(b"GCOL", at + 1)
    assert heaps, "the recording holds no global heap: the Text leaf is not exercised"
    return Base(data, metadata, heaps)


def damage(base: Base, seed: int) -> tuple[bytes, str]:
    """A damaged copy of the recording, the same for the same seed, and what was done."""
    rng = random.Random(seed)
    data = bytearray(base.data)
    size = len(data)

    def a_page() -> int:
        roll = rng.random()
        if roll < 0.25 and base.heap_offsets:  # inside a heap collection, after its header
            return (rng.choice(base.heap_offsets) + rng.randrange(16, 2 * PAGE)) // PAGE
        if roll < 0.6:
            return rng.choice(base.metadata_pages)
        return rng.randrange(-(-size // PAGE))

    kind = rng.choice(("truncate", "zero", "flip", "flip"))
    if kind == "truncate":
        length = rng.randrange(size) if rng.random() < 0.5 else a_page() * PAGE + rng.randrange(
            PAGE)
        return bytes(data[: min(length, size - 1)]), f"truncate at {length}"
    if kind == "zero":
        page = a_page()
        data[page * PAGE : (page + 1) * PAGE] = bytes(len(data[page * PAGE : (page + 1) * PAGE]))
        return bytes(data), f"zero page {page} (bytes {page * PAGE}..)"
    count = rng.choice((1, 2, 3, 5, 8, 16, 32, 48))
    local = rng.random() < 0.6
    page = a_page()
    where = []
    for _ in range(count):
        at = page * PAGE + rng.randrange(PAGE) if local else rng.randrange(size)
        at = min(at, size - 1)
        data[at] ^= rng.randrange(1, 256)
        where.append(at)
    return bytes(data), f"flip {count} bytes at {sorted(where)[:6]}{'...' if count > 6 else ''}"


class Worker:
    """A process that imports h5recorder once and runs one reader per line it is sent."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        ready = self._answer(120.0)
        assert ready == {"ready": True}, f"the worker did not start: {ready}"

    def _answer(self, seconds: float) -> dict[str, Any] | None:
        assert self.process is not None and self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], seconds)
        if not readable:
            return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def run(self, reader: str, path: Path) -> dict[str, Any]:
        if self.process is None:
            self.start()
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"reader": reader, "path": str(path)}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        started = time.perf_counter()
        answer = self._answer(SECONDS)
        if answer is not None:
            return answer
        alive = self.process.poll() is None
        self.stop()
        if alive:
            return {"outcome": "hung", "message": f"no answer in {SECONDS} s",
                    "seconds": time.perf_counter() - started}
        return {"outcome": "died", "message": "the worker died", "seconds": 0.0}

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self.process = None


def every_reader(path: Path) -> dict[str, dict[str, Any]]:
    """Each reader's result on ``path``, from a worker of its own."""
    worker = Worker()
    try:
        return {reader: worker.run(reader, path) for reader in READERS}
    finally:
        worker.stop()


def fuzz(base: Base, seeds: range, folder: Path) -> tuple[list[str], dict[str, Any]]:
    """Damage a copy for each seed and run every reader on it: the failures, and a count of
    each outcome."""
    failures: list[str] = []
    counts: dict[str, Any] = {}
    slowest = (0.0, "")
    worker = Worker()
    try:
        for seed in seeds:
            data, what = damage(base, seed)
            path = folder / f"damaged-{seed}.h5"
            path.write_bytes(data)
            try:
                for reader in READERS:
                    result = worker.run(reader, path)
                    outcome = result["outcome"]
                    counts[outcome] = counts.get(outcome, 0) + 1
                    slowest = max(slowest, (result["seconds"], f"seed {seed} ({what}), {reader}"))
                    if outcome not in ("returned", "refused"):
                        failures.append(f"seed {seed} ({what}), {reader}: {outcome}: "
                                        f"{result['message']}")
            finally:
                path.unlink()
    finally:
        worker.stop()
    counts["slowest"] = slowest
    return failures, counts


def _check(base: Base, seeds: range, folder: Path) -> None:
    started = time.perf_counter()
    failures, counts = fuzz(base, seeds, folder)
    taken = time.perf_counter() - started
    print(f"{len(seeds)} damaged copies in {taken:.1f} s: {counts}")
    print("\n".join(failures))
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])


def test_damage_is_reproducible(base: Base) -> None:
    assert damage(base, 7) == damage(base, 7)
    assert damage(base, 7) != damage(base, 8)


def test_the_healthy_recording_reads(base: Base, tmp_path: Path) -> None:
    path = tmp_path / "healthy.h5"
    path.write_bytes(base.data)
    results = every_reader(path)
    assert all(result["outcome"] == "returned" for result in results.values()), results


def test_a_zeroed_page_inside_a_heap_collection(base: Base, tmp_path: Path) -> None:
    """The damage a power cut leaves: the page after a collection's header reads zero, so
    HDF5's parser of the collection meets an object of index 0 and size 0."""
    for offset in base.heap_offsets[-2:]:
        data = bytearray(base.data)
        page = (offset + 16 + PAGE - 1) // PAGE
        data[page * PAGE : (page + 1) * PAGE] = bytes(PAGE)
        path = tmp_path / "zeroed.h5"
        path.write_bytes(bytes(data))
        results = every_reader(path)
        stuck = {reader: result for reader, result in results.items()
                 if result["outcome"] not in ("returned", "refused")}
        assert not stuck, f"heap at {offset}, page {page} zeroed: {stuck}"


def test_a_looping_collection_of_attributes_is_named(base: Base, tmp_path: Path) -> None:
    """The collection that holds the root's JSON attributes, its first object made to read
    index 0 and size 0 (HDF5 would loop on it for ever): refused, naming an attribute."""
    heap = next(offset for offset in base.heap_offsets if offset >= 1 << 20)  # after the journal
    data = bytearray(base.data)
    data[heap + 16 : heap + 32] = bytes(16)
    path = tmp_path / "looping.h5"
    path.write_bytes(bytes(data))
    results = every_reader(path)
    assert results["open"]["outcome"] == "refused", results
    assert "global heap collection" in results["open"]["message"], results
    assert "recorder_" in results["open"]["message"], results
    assert all(result["outcome"] in ("returned", "refused") for result in results.values()), (
        results)


def test_damaged_copies(base: Base, tmp_path: Path) -> None:
    _check(base, range(QUICK), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(LONG // BATCH))
def test_damaged_copies_long(base: Base, tmp_path: Path, batch: int) -> None:
    first = QUICK + batch * BATCH
    _check(base, range(first, first + BATCH), tmp_path)
