"""The writer thread: ring slots to compressed chunks, chunks to the file, commits.

While a recording runs, this thread is the only one that calls h5py for the recorder (user
code may still use ``recorder.file`` itself; h5py serializes the two). It

1. moves the rows in ``[tail, head)`` of the ring into one staging chunk per leaf, updating
   the statistics in the same pass (``native.fold_rows``, GIL released);
2. writes each chunk as soon as it is full: blosc2 and deflate chunks are compressed by the
   leaf's encoder (``_format.codecs``; GIL released) on the crew's threads and written with
   ``write_direct_chunk``; lzf goes through HDF5's own pipeline, which also runs without the
   GIL;
3. commits at least every ``commit_interval`` seconds: it writes the partly filled last chunk
   of each leaf, grows the datasets to the rows done, flushes, and only then sets ``size`` and
   the counters and flushes again, so that after a crash ``size`` never covers rows that were
   not flushed.

Nothing is ever written over bytes that the index on disk points at, so a crash at any write
leaves rows below ``size`` intact (``tests/test_crash_replay.py`` checks every write):

- the file is built in memory (layout, attributes, an empty chunk index per dataset) and
  renamed into place whole (:func:`place_file`);
- HDF5 keeps no free-space lists (``fs_strategy="none"``): space it frees is not reused, except
  at the very end of the file, where it shrinks the file and puts the next chunk on the freed
  bytes. So a partly filled chunk is stored raw (every filter marked as skipped), and each
  commit rewrites it in place with the same bytes plus the new rows; once full, it is written
  compressed only if something was allocated after its raw copy (else it stays raw);
- attributes are rewritten in place (``attrs.modify``), never grown: a header that grows gets a
  continuation block that HDF5 writes after the header pointing to it.

What a crash can still leave: a superblock whose end of allocation lags the index (the index is
flushed first), and chunks past ``size``; ``recover`` mends both (``_write.recover``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import queue
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import native
from .._format.attrs import STATUS_ATTRIBUTE, walk_datasets
from .._format.codecs import Encoder
from ..errors import DiskFullError, WriterError
from .crew import Crew, helpers_for_this_machine
from .files import replace_file
from .frames import FrameJob, FramePool, FrameSource, frame_path
from .journal import JournaledFile
from .ring import Ring
from .schema import Leaf, leaf_codec
from .stats import LeafStats

__all__ = [
    "Counters",
    "FramesDone",
    "Status",
    "Writer",
    "WriterSetup",
    "new_file",
    "open_file",
    "place_file",
]

def caller_error(error: BaseException, failed: str) -> WriterError:
    """The error to raise in the caller's thread for ``error``, raised on the writer's.

    A :class:`WriterError` (``DiskFullError``, ``FrameError``, ...) keeps its class, message
    and fields: a copy made as pickle makes one (``__reduce__``; a class whose ``__init__``
    takes other arguments than its ``args`` defines it, as ``FrameError`` does), so that each
    raise gets its own traceback. Anything else, or a copy that fails, becomes a
    ``WriterError`` saying ``failed``. Raise it ``from error``.
    """
    if isinstance(error, WriterError):
        try:
            return copy.copy(error)
        except Exception:  # noqa: BLE001 - a class that cannot be copied is wrapped instead
            pass
    return WriterError(f"{failed}: {error!r}")


RAW_ABOVE = 0.97  # a chunk compressed to more than this share of its size is stored raw
RAW_CHUNKS = 16  # ... and so are the next chunks of that leaf, until one is tried again
HISTOGRAM_BINS = 48 * native.kernels.BINS_PER_OCTAVE


@dataclass(frozen=True)
class Status:
    """Counters and health of a recording, as stored in the file's root attributes."""

    steps: int
    rows_committed: int
    bytes_raw: int
    bytes_written: int
    commits: int
    waits: int
    wait_seconds: float
    drops: int
    missing_values: int
    ring_capacity: int
    ring_pending: int
    frames_written: int
    frames_deferred: int
    frames_missing: int
    frames_pending: int
    frames_close_seconds: float
    steps_per_second: float
    interval_p50_us: float
    interval_p99_us: float
    interval_p999_us: float
    longest_gap_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Counters:
    """Mutable counts shared by the caller (steps, waits, drops) and the writer (the rest)."""

    def __init__(self) -> None:
        self.steps = 0
        self.waits = 0
        self.wait_seconds = 0.0
        self.drops = 0
        self.missing_values = 0
        self.rows_committed = 0
        self.bytes_raw = 0
        self.bytes_written = 0
        self.commits = 0
        self.histogram = np.zeros(HISTOGRAM_BINS, np.int64)
        self.first_stamp = 0
        self.last_stamp = 0
        self.longest_gap_ns = 0
        self.frames_written = 0
        self.frames_deferred = 0
        self.frames_missing = 0
        self.frames_pending = 0  # frames not written yet, deferred ones included
        self.frames_close_seconds = 0.0  # about how long close() would wait for them now

    def percentile_us(self, fraction: float) -> float:
        total = int(self.histogram.sum())
        if total == 0:
            return math.nan
        rank = fraction * total
        bin_index = int(np.searchsorted(np.cumsum(self.histogram), rank))
        bins_per_octave = native.kernels.BINS_PER_OCTAVE
        upper = native.kernels.SMALLEST_NS * 2 ** ((bin_index + 1) / bins_per_octave)
        return float(upper / 1000.0)

    def status(self, ring: Ring | None) -> Status:
        span = (self.last_stamp - self.first_stamp) / 1e9
        intervals = int(self.histogram.sum())
        return Status(
            steps=self.steps,
            rows_committed=self.rows_committed,
            bytes_raw=self.bytes_raw,
            bytes_written=self.bytes_written,
            commits=self.commits,
            waits=self.waits,
            wait_seconds=self.wait_seconds,
            drops=self.drops,
            missing_values=self.missing_values,
            ring_capacity=ring.capacity if ring else 0,
            ring_pending=ring.pending if ring else 0,
            frames_written=self.frames_written,
            frames_deferred=self.frames_deferred,
            frames_missing=self.frames_missing,
            frames_pending=self.frames_pending,
            frames_close_seconds=self.frames_close_seconds,
            steps_per_second=intervals / span if span > 0 else math.nan,
            interval_p50_us=self.percentile_us(0.5),
            interval_p99_us=self.percentile_us(0.99),
            interval_p999_us=self.percentile_us(0.999),
            longest_gap_s=self.longest_gap_ns / 1e9,
        )


def _merge_intervals_numpy(
    stamps: np.ndarray[Any, Any],
    start: int,
    count: int,
    previous: int,
    histogram: np.ndarray[Any, Any],
) -> int:
    """numpy twin of ``native.merge_intervals``, used until the kernels are compiled."""
    taken = stamps[(start + np.arange(count)) % stamps.shape[0]]
    if previous > 0:
        taken = np.concatenate([[previous], taken])
    gaps = np.diff(taken).astype(np.float64)
    if gaps.size == 0:
        return 0
    ratio = np.maximum(gaps / native.kernels.SMALLEST_NS, 1.0)
    bins = np.minimum(
        (np.log2(ratio) * native.kernels.BINS_PER_OCTAVE).astype(np.int64), histogram.shape[0] - 1
    )
    np.add.at(histogram, bins, 1)
    return int(gaps.max())


def new_file(path: Path, user_block: int = 0) -> h5py.File:
    """An empty recording file, in memory until :func:`place_file` puts it at ``path``.

    ``fs_strategy="none"``: HDF5 keeps no free-space lists, so space it frees is never reused
    (except at the very end of the file, which the writer guards against). ``user_block``
    bytes at the start are left to the power-loss journal (``_write.journal``). The format of HDF5
    1.8 (object headers v2) stores attributes over 64 KiB, such as the per-element statistics
    of a large ``Box``, in dense storage; the 1.6 format refuses them.
    """
    return h5py.File(
        f"{path}.{id(path):x}.image",
        "w",
        driver="core",
        backing_store=False,
        libver=("v108", "latest"),
        fs_strategy="none",
        userblock_size=user_block,
    )


def place_file(
    image: h5py.File, path: Path, sync: bool = False
) -> tuple[h5py.File, JournaledFile | None]:
    """Write ``image`` to ``path`` in one piece, close it and open the file there for writing.

    The bytes go to a hidden file beside ``path`` that is then renamed, so a crash leaves
    either no file at ``path`` or a complete one, never a file HDF5 half created. With
    ``sync``, the bytes and the rename reach the disk before this returns.
    """
    _create_indexes(image)
    image.flush()
    user_block = image.id.get_create_plist().get_userblock()
    data = bytes(user_block) + image.id.get_file_image()  # the image leaves the block out
    image.close()
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(8)}.creating.h5")
    replace_file(path, data, sync=sync, temporary=str(temporary))
    if sync:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return open_file(path, user_block if sync else 0)


HEADER_RESERVE = "h5recorder_room"  # the attribute's name in files: unchanged, files stay alike
HEADER_RESERVE_BYTES = 16 << 10


def reserve_header_space(dataset: h5py.Dataset) -> None:
    """Reserve space in a new dataset's header for the statistics ``close()`` stores.

    A header that grows gets a continuation block, and HDF5 writes the header that points to
    it before the block itself: a crash between the two leaves a dataset no tool can open.
    The reserve (an attribute, deleted when the statistics are stored) is space the header
    already has on disk; statistics that fit in it are written in place.
    """
    dataset.attrs[HEADER_RESERVE] = np.zeros(HEADER_RESERVE_BYTES, np.uint8)


def _create_indexes(file: h5py.File) -> None:
    """Give every empty chunked dataset its chunk index (a B-tree root) now.

    HDF5 creates it with the first chunk, and writes the dataset header that points to it
    before the index itself: a crash between the two leaves a dataset no one can read or trim.
    Writing one chunk and trimming it away leaves an empty index behind, in the image.
    """
    for _, dataset in walk_datasets(file, referenced=True):
        if dataset.chunks is None or dataset.shape[0]:
            continue
        dataset.resize(dataset.chunks[0], axis=0)
        empty = bytes(math.prod(dataset.chunks) * dataset.id.get_type().get_size())
        mask = (1 << dataset.id.get_create_plist().get_nfilters()) - 1
        dataset.id.write_direct_chunk((0,) * dataset.ndim, empty, mask)
        dataset.resize(0, axis=0)


def open_file(path: Path, user_block: int = 0) -> tuple[h5py.File, JournaledFile | None]:
    """Open a placed file for writing, through a :class:`JournaledFile`: with a journal in
    the ``user_block`` first bytes (``durability="power"``), or, with none, only holding
    HDF5's writes over committed bytes until the commit ends (so a killed process leaves
    every header and index pointing at bytes already written).

    The crash-replay tests replace this to log every write.
    """
    journal = JournaledFile(path, user_block, journaled=user_block > 0)
    return h5py.File(journal, "r+"), journal


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _show_progress(frames: FramePool, label: str) -> None:
    """Wait for the pool, with a progress bar on a terminal and a log line otherwise."""
    total = frames.pending
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=label, unit="frame", leave=False) as bar:
            while not frames.wait(timeout=0.2):
                bar.update(total - frames.pending - bar.n)
    else:
        logging.getLogger("h5recorder").info("%s ...", label)
        frames.wait()


class _Staging:
    """The chunk a leaf is filling: a buffer, how many rows it holds, which chunk it is."""

    def __init__(self, leaf: Leaf) -> None:
        dtype = leaf.dtype
        self.buffer: np.ndarray[Any, Any] = np.zeros((leaf.chunk_rows, *leaf.shape), dtype)
        if leaf.is_string:
            self.buffer.fill("")
        self.rows = 0
        self.chunk = 0
        self.dirty = False
        self.extent = 0  # rows of the dataset, as this writer last set them
        self.raw_left = 0  # chunks to store uncompressed before trying to compress again
        self.written = 0  # rows of this chunk handed to HDF5 (datasets without filters)
        self.copy = 0  # for filtered datasets: allocation number of this chunk's raw copy
        self.compresses = True  # whether the last chunk the crew compressed got smaller
        self.on_trial = False  # a chunk is being compressed to see whether they do again

    def next_chunk(self) -> None:
        self.chunk += 1
        self.rows = 0
        self.dirty = False
        self.written = 0
        self.copy = 0


class _Compressed:
    """A chunk compressed by the crew: ``data`` once ``done`` is set (None if it failed)."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.done = threading.Event()

    def make(self, encode: Encoder, rows: np.ndarray[Any, Any]) -> None:
        try:
            self.data = encode(rows)
        finally:
            self.done.set()


@dataclass(frozen=True)
class WriterSetup:
    """Everything a :class:`Writer` is built from: what it writes (the file, its leaves and
    datasets), where rows come from (the ring), what it shares with the recorder (counters,
    statistics, the PNG pool) and how (the recorder's options)."""

    file: h5py.File
    leaves: list[Leaf]
    datasets: dict[int, h5py.Dataset]
    ring: Ring
    counters: Counters
    stats: list[LeafStats]
    compression: str | None
    compression_level: int | None
    compression_threads: int
    commit_interval: float
    min_free_bytes: int
    frames: FramePool | None = None
    frame_targets: list[tuple[Leaf, FrameSource, Path]] | None = None
    step_base: int = 0  # the PNG pool's step numbers keep growing across episodes
    time_columns: tuple[list[Leaf], list[h5py.Dataset]] | None = None
    encode_deferred: bool = True  # deferred frames are written at close()
    journal: JournaledFile | None = None


@dataclass(frozen=True)
class FramesDone:
    """What :meth:`Writer.finish_frames` did with an episode's frames, for the file."""

    keys: list[str]
    folders: list[str]
    deferred: int
    missing: list[str]


class Writer(threading.Thread):
    """Drains the ring into ``datasets`` and commits; see the module docstring.

    The recorder talks to it through :meth:`request`, :meth:`stop`, :meth:`finish_frames`,
    :meth:`fail` and :meth:`raise_error`; the rest is this thread's own.
    """

    def __init__(self, setup: WriterSetup) -> None:
        super().__init__(name="h5recorder-writer", daemon=True)
        file, leaves, datasets = setup.file, setup.leaves, setup.datasets
        ring, counters, stats = setup.ring, setup.counters, setup.stats
        frames, frame_targets, journal = setup.frames, setup.frame_targets, setup.journal
        time_columns = setup.time_columns
        self.file = file
        self.leaves = leaves
        self.datasets = dict(datasets)
        # per-step time (monotonic and wall clock), from the ring's stamps; see _write.schema
        self.time_leaves: list[Leaf] = []
        if time_columns is not None:
            for number, (leaf, dataset) in enumerate(zip(*time_columns, strict=True)):
                leaf.index = len(leaves) + number
                self.datasets[leaf.index] = dataset
                self.time_leaves.append(leaf)
        self.time_staging = [_Staging(leaf) for leaf in self.time_leaves]
        self.ring = ring
        self.counters = counters
        self.stats = stats
        self.commit_interval = setup.commit_interval
        self.min_free_bytes = setup.min_free_bytes
        self.staging = [_Staging(leaf) for leaf in leaves]
        self._no_rows: dict[np.dtype[Any], np.ndarray[Any, Any]] = {
            np.dtype(self._kernel_dtype(leaf)): np.empty(
                (0, max(1, math.prod(leaf.shape))), self._kernel_dtype(leaf)
            )
            for leaf in leaves if not leaf.is_string
        }
        # a commit may write the partly filled chunk of every leaf again
        self._tail_bytes = sum(leaf.chunk_rows * leaf.row_bytes for leaf in leaves)
        self.frames = frames
        self.frame_targets = frame_targets or []
        self.step_base = setup.step_base
        self.done = 0  # rows drained; the ring's tail follows once the PNG pool is done too
        self.deferred: list[tuple[int, Leaf, str]] = []
        self.encode_deferred = setup.encode_deferred
        self._frames_before = frames.counters.written if frames is not None else 0
        # each leaf's encoder of whole chunks; None: stored raw, or (LZF) by HDF5's pipeline
        self._encoders: dict[int, Encoder | None] = {}
        for leaf in [*leaves, *self.time_leaves]:
            codec = leaf_codec(leaf, setup.compression, setup.compression_level)
            encoder = None if codec is None else codec.encoder(setup.compression_threads)
            self._encoders[leaf.index] = encoder
        self.wake = threading.Event()
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.warmed = threading.Event()
        self.compile_error: Exception | None = None
        self._stopping = False
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._last_commit = time.monotonic()
        self._directory = Path(file.filename).parent
        self._stamp_before = 0
        self._allocations = 0  # chunks given new file space so far
        self.journal = journal  # durability="power": commits go through its fsync barriers
        self._skip_filters = {  # filter mask that marks every filter of a leaf as skipped
            index: (1 << dataset.id.get_create_plist().get_nfilters()) - 1
            for index, dataset in self.datasets.items()
        }
        # Whole chunks taken straight from the ring are counted, compressed and written by
        # the crew's threads while this one goes on (the kernels, blosc2 and pwrite run
        # without the GIL). Each crew thread counts into a lane of histogram tables of its
        # own (``LeafStats.count_in_lane``); nothing the crew does outlives the drain that
        # gave it (``_settle``), so ring slots go back only once it is done with them.
        self._helpers = helpers_for_this_machine()
        self._crew: Crew | None = None
        self._disk: Crew | None = None  # one thread writes lent chunks: see ``run``
        self._lanes: queue.SimpleQueue[int] = queue.SimpleQueue()
        for lane in range(1, self._helpers + 1):
            self._lanes.put(lane)
        for leaf_stats in stats:
            leaf_stats.add_lanes(self._helpers)
        # whole chunks being compressed by the crew, written in this order by ``_settle``
        self._compressing: list[
            tuple[Leaf, _Staging, int, np.ndarray[Any, Any], _Compressed]
        ] = []

    # -- the caller's side ----------------------------------------------------------------

    def request(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on this thread after the ring is drained; return its result."""
        future: Future[Any] = Future()
        self._requests.put((function, future))
        self.wake.set()
        while not future.done():
            if not self.is_alive():
                self.raise_error()
                raise WriterError("the writer thread stopped")
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                continue
        return future.result()

    def fail(self, error: BaseException) -> None:
        """Record an error met outside this thread (closing the file), raised by
        :meth:`raise_error` like the thread's own; the first one is kept."""
        if self.error is None:
            self.error = error

    def finish_frames(self, best_effort: bool) -> FramesDone:
        """After :meth:`stop`: wait for this episode's frames and write the deferred ones
        from the file (or, with ``best_effort`` or a failed writer, list them as missing)."""
        frames = self.frames
        assert frames is not None
        end = self.step_base + self.done
        frames.wait(end)  # the ring's frames first: the ring is released after this
        frames.advance(end)
        missing: list[str] = []
        if self.deferred and (best_effort or self.error):
            # skipped by choice, or unreadable from a file whose writer failed: listed
            missing = [path for _, _, path in self.deferred]
            self.counters.frames_missing = len(missing)
        elif self.deferred:
            self.refresh_lookups()
            for row, leaf, path in self.deferred:
                frames.encode_from_array(self.datasets[leaf.index][row], path)
        if frames.pending:
            name = Path(self.file.filename).name
            _show_progress(frames, f"writing {frames.pending} PNG frames of {name}")
        self.encode_deferred = False  # written or listed as missing by now
        self.note_frames()
        return FramesDone(
            [leaf.name for leaf, _, _ in self.frame_targets],
            [str(folder) for _, _, folder in self.frame_targets],
            len(self.deferred),
            missing,
        )

    def stop(self) -> None:
        """Drain everything, commit, and end the thread."""
        self._stopping = True
        self.wake.set()
        self.join()

    def raise_error(self) -> None:
        if self.error is not None:
            raise caller_error(self.error, "the writer failed") from self.error

    # -- this thread ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._crew = Crew(self._helpers)
            if self.journal is not None:
                # The kernel takes a file's writes one at a time (its inode lock), and a
                # second writer waiting there spins on a core the others need: one thread
                # writes the lent chunks, in the order they were lent.
                self._disk = Crew(1, name="h5recorder-disk")
                self.journal.crew = self._disk
            threading.Thread(target=self._warm_up, name="h5recorder-compile", daemon=True).start()
            while True:
                self.wake.wait(self.commit_interval / 4)
                self.wake.clear()
                self.drain()
                self.release()
                while not self._requests.empty():
                    function, future = self._requests.get()
                    self.drain()
                    try:
                        future.set_result(function())
                    except BaseException as error:  # noqa: BLE001 - handed back to the caller
                        future.set_exception(error)
                if self._stopping and self.done == self.ring.head:
                    self.commit()
                    return
                if time.monotonic() - self._last_commit >= self.commit_interval:
                    self.commit()
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
            self.error = error
        finally:
            for crew in (self._crew, self._disk):
                if crew is not None:
                    crew.close()  # finishes what was handed over: nothing is half written
            if self.journal is not None:
                self.journal.crew = None
            self.ring.released.set()
            while not self._requests.empty():
                _, future = self._requests.get()
                future.set_exception(WriterError(f"the writer stopped: {self.error!r}"))

    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels for this plan's dtypes.

        Until this is done the writer uses numpy, so nothing waits on the compiler.
        """
        dtypes = {self._kernel_dtype(leaf) for leaf in self.leaves if not leaf.is_string}
        if np.dtype(np.float16) in dtypes:  # no float16 in numba: sketched as float32
            dtypes.discard(np.dtype(np.float16))
            dtypes.add(np.dtype(np.float32))
        try:
            native.warm_up(sorted(dtypes, key=str))
        except Exception as error:  # noqa: BLE001 - the numpy path stays; nothing is lost
            self.compile_error = error
        else:
            self.ready.set()
        finally:
            self.warmed.set()

    @staticmethod
    def _kernel_dtype(leaf: Leaf) -> np.dtype[Any]:
        return np.dtype(np.uint8) if leaf.dtype.kind == "b" else leaf.dtype

    def drain(self) -> None:
        """Move every published row out of the ring, writing the chunks that fill."""
        ring = self.ring
        # rows published after this are the next drain's: commits must not wait; values handed
        # over (Recorder(handover=True)) are copied into the ring first, so no reader sees them
        head = ring.copy_held()
        while self.done < head:
            start = self.done
            count = min(head - start, max(1, ring.capacity // 4))
            self._check_space(count)
            slot = start % ring.capacity
            self._grow(self.leaves, self.staging, start + count)
            for leaf, staging, stats in zip(self.leaves, self.staging, self.stats, strict=True):
                self._take(leaf, staging, stats, ring.columns[leaf.index], slot, count)
            counters = self.counters
            if counters.first_stamp == 0:
                counters.first_stamp = int(ring.stamps[slot])
            if self.ready.is_set():
                longest = native.merge_intervals(
                    ring.stamps, slot, count, self._stamp_before, counters.histogram
                )
            else:
                longest = _merge_intervals_numpy(
                    ring.stamps, slot, count, self._stamp_before, counters.histogram
                )
            counters.longest_gap_ns = max(counters.longest_gap_ns, int(longest))
            if self.time_leaves:
                self._take_time(slot, count)
            self._settle()
            self._stamp_before = int(ring.stamps[(slot + count - 1) % ring.capacity])
            counters.last_stamp = self._stamp_before
            self.done = start + count
            if self.frames is not None and self.frame_targets:
                self._submit_frames(start, count)
            self.release()
            ring.released.set()  # a caller keeping the backlog small waits for ``done``

    def _grow(self, leaves: list[Leaf], stagings: list[_Staging], rows: int) -> None:
        """Grow each dataset, once, over every whole chunk that ``rows`` rows complete: one
        resize per leaf and drain rather than one per chunk (each is an HDF5 call)."""
        for leaf, staging in zip(leaves, stagings, strict=True):
            whole = rows // leaf.chunk_rows * leaf.chunk_rows
            if staging.extent < whole:
                self.datasets[leaf.index].resize(whole, axis=0)
                staging.extent = whole

    def _settle(self) -> None:
        """Write the chunks the crew compressed, in the order they were taken, then wait
        for everything handed to the crew: counts, compression, lent writes. Until this
        returns, the ring slots of this drain must not be released."""
        compressing, self._compressing = self._compressing, []
        for leaf, staging, chunk, rows, compressed in compressing:
            compressed.done.wait()
            if compressed.data is None:  # it failed: the crew's wait below raises why
                break
            self._write_whole(leaf, staging, chunk, rows, compressed.data)
        if self._crew is not None:
            self._crew.wait()
            if self.journal is not None:
                self.journal.settle()

    def _write_whole(
        self,
        leaf: Leaf,
        staging: _Staging,
        chunk: int,
        rows: np.ndarray[Any, Any],
        encoded: bytes,
    ) -> None:
        """Write a whole chunk the crew compressed, or its rows as they are when they did
        not compress (and the next chunks of that leaf, ``RAW_CHUNKS``)."""
        dataset = self.datasets[leaf.index]
        offset = (chunk * leaf.chunk_rows,) + (0,) * len(leaf.shape)
        self.counters.bytes_raw += rows.nbytes
        self._allocations += 1
        data = rows.view(np.uint8) if leaf.dtype.kind == "b" else rows
        staging.on_trial = False
        if len(encoded) < RAW_ABOVE * data.nbytes:
            staging.compresses = True
            self._lent_write(dataset, offset, encoded, 0)
            self.counters.bytes_written += len(encoded)
            return
        staging.raw_left = RAW_CHUNKS
        staging.compresses = staging.on_trial = False
        self._lent_write(
            dataset, offset, data.reshape(-1).view(np.uint8), self._skip_filters[leaf.index]
        )
        self.counters.bytes_written += data.nbytes

    def _lent_write(
        self, dataset: h5py.Dataset, offset: tuple[int, ...], data: Any, mask: int
    ) -> None:
        """A direct chunk write whose bytes the crew may write (``JournaledFile.lend``)."""
        journal = self.journal
        if journal is None:
            dataset.id.write_direct_chunk(offset, data, mask)
            return
        journal.lend(data)
        try:
            dataset.id.write_direct_chunk(offset, data, mask)
        finally:
            journal.lend(None)

    def _count_whole(
        self, stats: LeafStats, ring2d: np.ndarray[Any, Any], slot: int, rows: int
    ) -> None:
        lane = self._lanes.get()
        try:
            stats.count_in_lane(ring2d, slot, rows, lane)
        finally:
            self._lanes.put(lane)

    def _take_time(self, slot: int, count: int) -> None:
        """Stage the monotonic stamps of ``count`` rows and their wall-clock times."""
        stamps = self.ring.stamps[(slot + np.arange(count)) % self.ring.capacity]
        self._grow(self.time_leaves, self.time_staging, self.done + count)
        before = time.perf_counter_ns()
        wall = time.time_ns()
        offset = wall - (before + time.perf_counter_ns()) // 2
        for leaf, staging, rows in zip(
            self.time_leaves, self.time_staging, (stamps, stamps + offset), strict=True
        ):
            while len(rows):
                take = min(leaf.chunk_rows - staging.rows, len(rows))
                staging.buffer[staging.rows : staging.rows + take] = rows[:take]
                staging.rows += take
                staging.dirty = True
                rows = rows[take:]
                if staging.rows == leaf.chunk_rows:
                    self._write_chunk(leaf, staging)
                    staging.next_chunk()

    def _submit_frames(self, start: int, count: int) -> None:
        assert self.frames is not None
        capacity = self.ring.capacity
        self.frames.submit(
            FrameJob(self.step_base + row, source, row % capacity, frame_path(folder, row))
            for row in range(start, start + count)
            for _, source, folder in self.frame_targets
        )

    def release(self) -> None:
        """Hand back the slots that the writer and the PNG pool are both done with.

        When the encoders fall behind and the ring is three quarters full, frames not yet
        started are deferred (written from the file at ``close()``) instead of making the
        caller wait for them.
        """
        ring = self.ring
        tail = self.done
        if self.frames is not None and self.frame_targets:
            tail = min(tail, self.frames.done_below - self.step_base)
            if ring.head - tail >= ring.capacity * 3 // 4:
                below = self.step_base + self.done
                by_path = {str(folder): leaf for leaf, _, folder in self.frame_targets}
                for job in self.frames.withdraw(below):
                    row = job.step - self.step_base
                    self.deferred.append((row, by_path[os.path.dirname(job.path)], job.path))
                    self.counters.frames_deferred += 1
                self.frames.wait(below, timeout=30)
                tail = min(self.done, self.frames.done_below - self.step_base)
        if tail > ring.tail:
            ring.tail = tail
            ring.released.set()

    def _take(
        self,
        leaf: Leaf,
        staging: _Staging,
        stats: LeafStats,
        column: np.ndarray[Any, Any],
        slot: int,
        count: int,
    ) -> None:
        capacity = self.ring.capacity
        stats.rows += count
        rows_per_chunk = leaf.chunk_rows
        compiled = self.ready.is_set()
        ring2d = None if leaf.is_string else column.reshape(capacity, -1)
        if ring2d is not None and leaf.dtype.kind == "b":
            ring2d = ring2d.view(np.uint8)
        while count:
            if (
                ring2d is not None
                and staging.rows == 0
                and count >= rows_per_chunk
                and slot + rows_per_chunk <= capacity
            ):
                # A whole chunk lies in the ring in one piece: statistics and write straight
                # from there, without copying it into the staging buffer first. Histograms
                # are counted and blosc2/gzip chunks compressed by the crew meanwhile.
                crew = self._crew
                if compiled and stats.has_lanes and crew is not None:
                    crew.submit(self._count_whole, stats, ring2d, slot, rows_per_chunk)
                else:
                    no_rows = self._no_rows[ring2d.dtype]
                    stats.fold(ring2d, slot, rows_per_chunk, no_rows, 0, compiled)
                self._count_values(leaf, stats, column, slot, rows_per_chunk, compiled)
                rows = column[slot : slot + rows_per_chunk]
                encode = self._encoders[leaf.index]
                trying = encode is not None and not staging.raw_left
                if trying and crew is not None and not staging.on_trial:
                    # leaves that stopped compressing send one chunk at a time to find out
                    # whether they do again; the others are stored raw meanwhile
                    staging.on_trial = not staging.compresses
                    compressed = _Compressed()
                    data = rows.view(np.uint8) if leaf.dtype.kind == "b" else rows
                    crew.submit(compressed.make, encode, data)
                    self._compressing.append((leaf, staging, staging.chunk, rows, compressed))
                else:
                    self._write_chunk(leaf, staging, rows, raw=trying)
                staging.next_chunk()
                slot = (slot + rows_per_chunk) % capacity
                count -= rows_per_chunk
                continue
            take = min(rows_per_chunk - staging.rows, count)
            if ring2d is None:
                index = (slot + np.arange(take)) % capacity
                staging.buffer[staging.rows : staging.rows + take] = column[index]
            else:
                out2d = staging.buffer.reshape(rows_per_chunk, -1)
                if leaf.dtype.kind == "b":
                    out2d = out2d.view(np.uint8)
                stats.fold(ring2d, slot, take, out2d, staging.rows, compiled)
                self._count_values(leaf, stats, column, slot, take, compiled)
            staging.rows += take
            staging.dirty = True
            slot = (slot + take) % capacity
            count -= take
            if staging.rows == rows_per_chunk:
                self._write_chunk(leaf, staging)
                staging.next_chunk()

    def _count_values(
        self,
        leaf: Leaf,
        stats: LeafStats,
        column: np.ndarray[Any, Any],
        slot: int,
        count: int,
        compiled: bool,
    ) -> None:
        """Per-value counts of a ``Discrete`` leaf."""
        if stats.counts is None:
            return
        capacity = self.ring.capacity
        if compiled and leaf.dtype.itemsize == 8:
            bad = int(native.count_values(column, slot, count, stats.offset, stats.counts))
        else:
            values = column[(slot + np.arange(count)) % capacity]
            outside = (values < stats.offset) | (values >= stats.offset + len(stats.counts))
            bad = int(np.argmax(outside)) if outside.any() else -1
            if bad == -1:
                stats.counts += np.bincount(values - stats.offset, minlength=len(stats.counts))
        if bad != -1:
            value = column[(slot + bad) % capacity]
            raise WriterError(
                f"{leaf.name}: {value} is outside the values of its Discrete space"
            )

    def _write_chunk(
        self,
        leaf: Leaf,
        staging: _Staging,
        rows_from_ring: np.ndarray[Any, Any] | None = None,
        raw: bool = False,
    ) -> None:
        """Write the chunk ``staging`` is filling, whole or (at a commit) partly filled;
        ``raw``: stored as it is, not compressed.

        Never over bytes that the index on disk points at (see the module docstring): rows
        already written are written again only as the same bytes, in the same place.
        """
        rows = staging.rows if rows_from_ring is None else len(rows_from_ring)
        first = staging.chunk * leaf.chunk_rows
        dataset = self.datasets[leaf.index]
        full = rows == leaf.chunk_rows
        end = first + (leaf.chunk_rows if full else rows)
        if staging.extent < end:
            dataset.resize(end, axis=0)
            staging.extent = end
        buffer = staging.buffer if rows_from_ring is None else rows_from_ring
        self.counters.bytes_raw += (rows - staging.written) * leaf.row_bytes
        mask = self._skip_filters[leaf.index]
        if not mask and full and not staging.written and not leaf.is_string:
            # no filter, a whole chunk never written: one direct write, without HDF5's
            # selection and type machinery
            data = buffer.view(np.uint8) if leaf.dtype.kind == "b" else buffer
            offset = (first,) + (0,) * len(leaf.shape)
            flat = data.reshape(-1).view(np.uint8)
            if rows_from_ring is None:  # the staging buffer: refilled at once, written now
                dataset.id.write_direct_chunk(offset, flat, 0)
            else:
                self._lent_write(dataset, offset, flat, 0)
            self._allocations += 1
            self.counters.bytes_written += rows * leaf.row_bytes
            staging.written = rows
            return
        if not mask:
            # no filter: HDF5 keeps the chunk in place; only the rows not yet written go
            # (variable-length strings written again would get new heap entries)
            dataset[first + staging.written : first + rows] = buffer[staging.written : rows]
            self.counters.bytes_written += (rows - staging.written) * leaf.row_bytes
            staging.written = rows
            return
        if not full:
            buffer[rows:] = 0
        data = buffer.view(np.uint8) if leaf.dtype.kind == "b" else buffer
        offset = (first,) + (0,) * len(leaf.shape)
        # A chunk with a raw copy in the file stays raw when that copy is the file's last
        # allocation: HDF5 would free it, shrink the file and put the new chunk on its bytes.
        stays_raw = raw or not full or (staging.copy != 0 and staging.copy == self._allocations)
        if not stays_raw and not staging.raw_left:
            encode = self._encoders[leaf.index]
            if encode is not None:
                encoded = encode(data)
                if len(encoded) < RAW_ABOVE * data.nbytes:
                    dataset.id.write_direct_chunk(offset, encoded, 0)
                    self._allocations += 1
                    self.counters.bytes_written += len(encoded)
                    staging.written = rows
                    return
                staging.raw_left = RAW_CHUNKS
            else:  # lzf: HDF5's own pipeline, flushed so that the chunk is placed now
                dataset[first : first + rows] = buffer[:rows]
                dataset.flush()
                self._allocations += 1
                self.counters.bytes_written += rows * leaf.row_bytes
                staging.written = rows
                return
        # Stored as it is, with every filter marked as skipped: partly filled chunks (so the
        # next commit rewrites them in place), and noisy camera frames that hardly compress
        # (compression is tried again now and then).
        if full and staging.raw_left and not raw:
            staging.raw_left -= 1
        if rows_from_ring is None:  # the staging buffer: refilled at once, written now
            dataset.id.write_direct_chunk(offset, data.reshape(-1).view(np.uint8), mask)
        else:
            self._lent_write(dataset, offset, data.reshape(-1).view(np.uint8), mask)
        if not staging.copy:
            self._allocations += 1
            staging.copy = self._allocations
            if self.journal is not None and not full:
                info = dataset.id.get_chunk_info_by_coord(offset)
                self.journal.rewrites(leaf.index, info.byte_offset, info.size)
        self.counters.bytes_written += data.nbytes
        staging.written = rows

    def refresh_lookups(self) -> None:
        """Let this process read back the chunks last written raw.

        HDF5 2.0 remembers the last chunk written with ``write_direct_chunk`` with its filter
        mask lost, so reading that chunk in this process fails ("filter returned failure")
        until another chunk is looked up; readers in other processes are not affected. Looking
        up an unallocated chunk past the end (grow, read one row, shrink back) resets it.
        Call this on the writer thread before reading recorded rows back in this process.
        """
        for index in sorted(index for index, mask in self._skip_filters.items() if mask):
            dataset = self.datasets[index]
            rows = dataset.shape[0]
            per_chunk = dataset.chunks[0]
            past = -(-rows // per_chunk) * per_chunk + per_chunk
            dataset.resize(past, axis=0)
            dataset[past - 1]
            dataset.resize(rows, axis=0)

    def _check_space(self, rows: int) -> None:
        """Refuse to write when the disk (or the process's file-size limit) is nearly full.

        HDF5 hitting ENOSPC or EFBIG mid-write leaves metadata that ``close()`` would save
        pointing at data that is not there; stopping before keeps every commit readable.
        """
        free = shutil.disk_usage(self._directory).free
        where = f"free in {self._directory}"
        limit = _file_size_limit()
        if limit is not None:
            left = limit - self.file.id.get_filesize()
            if left < free:
                free, where = left, "left under this process's file-size limit (RLIMIT_FSIZE)"
        needed = self.min_free_bytes + self._tail_bytes
        needed += rows * sum(leaf.row_bytes for leaf in self.leaves)
        if free < needed:
            raise DiskFullError(
                f"only {free / 2**20:.1f} MiB {where}; the recorder keeps "
                f"{self.min_free_bytes / 2**20:.1f} MiB free and needs "
                f"{(needed - self.min_free_bytes) / 2**20:.1f} MiB more for the next rows. "
                f"{self.counters.rows_committed} steps were committed and stay readable"
            )

    def commit(self) -> None:
        """Make every row drained so far durable, then publish ``size``."""
        rows = self.done
        self._last_commit = time.monotonic()
        if rows == self.counters.rows_committed and self.counters.commits:
            return
        columns = list(
            zip(self.leaves + self.time_leaves, self.staging + self.time_staging, strict=True)
        )
        for leaf, staging in columns:
            if staging.dirty and staging.rows:
                self._write_chunk(leaf, staging)
                staging.dirty = False
        for leaf, staging in columns:
            if staging.extent < rows:
                self.datasets[leaf.index].resize(rows, axis=0)
                staging.extent = rows
        self.file.flush()
        self.counters.rows_committed = rows
        self.counters.commits += 1
        self.write_attributes()
        self.file.flush()
        if self.journal is not None:
            before = self.journal.durable_length
            self.journal.commit()
            if not self._stopping:  # close() leaves the last bytes to the kernel: no wait
                self.journal.let_go(before)

    def note_frames(self) -> None:
        """Bring the frame counters up to date: written, pending, the expected close() wait."""
        frames = self.frames
        if frames is None:
            return
        later = len(self.deferred) if self.encode_deferred else 0
        counters = self.counters
        counters.frames_written = frames.counters.written - self._frames_before
        counters.frames_pending = frames.pending + later
        counters.frames_close_seconds = round(frames.drain_seconds(later), 3)

    def write_attributes(self) -> None:
        self.note_frames()
        attrs = self.file.attrs
        # one attribute for all counters: every h5py call waits for the GIL, and a caller
        # spinning in a busy-wait loop hands it over only every switch interval (5 ms)
        # written in place (``modify``): a header that grew would get a continuation block,
        # written after the header that points to it
        attrs.modify(STATUS_ATTRIBUTE, json.dumps(self.counters.status(self.ring).to_dict()))
        attrs.modify("size", self.counters.rows_committed)

    def store_stats(self) -> dict[str, dict[str, Any]]:
        """Write every leaf's statistics as dataset attributes; return them by leaf name.

        They take the place of the reserve each dataset's header was created with (see
        :func:`reserve_header_space`).
        """
        stored = {}
        for leaf, stats in zip(self.leaves, self.stats, strict=True):
            dataset = self.datasets[leaf.index]
            if HEADER_RESERVE in dataset.attrs:
                del dataset.attrs[HEADER_RESERVE]
            stored[leaf.name] = stats.store(dataset)
        return stored
