"""The public ``Recorder``: mbodied's API over the ring, the writer and the file.

The caller's thread, inside ``record()``, only checks the step (``Plan.collect``), copies it
into the ring and advances the head. Everything that touches h5py while a recording runs
happens on the writer thread (``_write.writer``), except the direct paths the reference API offers
(``record_timestep``, ``recorder.file``), which the user calls knowingly.
"""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np
from gymnasium import spaces

from .._format.attrs import (
    CLOSED_ATTRIBUTE,
    FRAMES_ATTRIBUTE,
    OPTIONS_ATTRIBUTE,
    ROOTS,
    STATUS_ATTRIBUTE,
    TIME_ATTRIBUTE,
    VERSION_ATTRIBUTE,
    frames_payload,
)
from .._version import __version__
from ..errors import ClosedError, RecorderError, SchemaError
from . import live as _live
from .frames import FramePool, FrameSource, check_image, default_workers, frame_dirs
from .journal import JOURNAL_BYTES, JournaledFile, is_locked
from .ring import Ring, capacity_for, sweep_stale_segments
from .schema import (
    Leaf,
    Plan,
    create_layout,
    create_time_layout,
    dataset_options,
    infer_space,
    stored_json,
    time_leaves,
    to_mapping,
    unwrap,
)
from .stats import LeafStats
from .writer import (
    Counters,
    Status,
    Writer,
    WriterSetup,
    caller_error,
    new_file,
    place_file,
    reserve_header_space,
)

__all__ = ["Options", "Recorder", "copy_and_delete_old"]

# A caller that outruns the writer waits once this many bytes of steps are not written yet
# (see Recorder._keep_backlog_small): about a server's last-level cache. benchmarks/
# test_write_path.py::test_backlog measured 16, 32 and 64 MiB against the whole ring.
BACKLOG_BYTES = 32 << 20
OUTRUN_SECONDS = 0.5  # without a wait this long, the caller has the whole ring again


_open_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _close_open_recorders() -> None:
    for recorder in list(_open_recorders):
        try:
            recorder.close()
        except Exception as error:  # noqa: BLE001 - nothing else can report it at exit
            warnings.warn(
                f"h5recorder: closing {recorder.filename} at exit failed: {error!r}", stacklevel=1
            )


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _close_on_sigterm() -> None:
    """Make SIGTERM end the program through ``SystemExit``, so exit hooks close recorders.

    Python's default for SIGTERM ends the process at once, losing what was not committed.
    Only done from the main thread, and only while SIGTERM has its default disposition.
    """
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def copy_and_delete_old(filename: str | Path) -> Path:
    """Move ``filename`` aside to ``<stem><YYYYmmddHHMMSS>.h5`` in the same folder.

    Nothing recorded earlier is overwritten: when that name is taken, ``_1``, ``_2``, ... is
    appended. Returns the new path.
    """
    path = Path(filename)
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    target = path.with_name(f"{path.stem}{stamp}{path.suffix}")
    number = 0
    while target.exists():
        number += 1
        target = path.with_name(f"{path.stem}{stamp}_{number}{path.suffix}")
    shutil.move(path, target)
    return target


@dataclass(frozen=True)
class Options:
    """How a recorder writes; stored in the file as the ``recorder_options`` attribute.

    Parameters
    ----------
    compression
        ``"blosc2"`` (lz4; or ``"blosc2:lz4"``, ``"blosc2:zstd"``): images and rows over 4 KiB
        as blosc2, readable by anyone who imports ``hdf5plugin``; the other leaves (joints,
        actions, flags, time) with shuffle and deflate, readable by any HDF5 reader.
        ``"portable"``: every leaf with shuffle and deflate (ISA-L, fast), readable by any
        HDF5 reader (MATLAB, h5dump, h5py without plugins). ``"gzip"`` (zlib's deflate) and
        ``"lzf"`` (h5py readers only), or ``None`` (raw). See ``h5recorder._format.codecs``.
    compression_level
        Codec level; ``None`` picks 1 (blosc2, portable, gzip); portable takes 0 to 3.
    compression_threads
        Threads blosc2 uses per chunk.
    buffer_bytes
        Byte budget of the ring buffers; when the disk falls behind for longer than this
        covers, ``on_full`` applies.
    on_full
        ``"wait"`` (lossless: ``record()`` waits for ring slots, and the wait is counted;
        a caller that keeps outrunning the writer then waits once ``BACKLOG_BYTES`` are
        pending, so that the writer writes bytes still in the cache) or ``"drop"`` (the
        step is dropped and counted; the whole ring is used).
    commit_interval
        Longest time, in seconds, between two commits while steps arrive.
    chunk_bytes
        Target uncompressed size of one chunk.
    strict
        Unknown keys raise ``StepError`` instead of warning once and being skipped.
    min_free_bytes
        Free disk space the recorder keeps; below it, the writer stops with ``DiskFullError``.
    frames
        ``"all"``: every frame of a saved image key becomes a PNG by the time ``close()``
        returns (frames the encoders could not keep up with are written from the file then).
        ``"best-effort"``: those are skipped and listed in the ``recorder_frames`` attribute.
    frame_workers
        PNG encoder processes; default: the cores minus one, at least one.
    png_compress_level
        zlib level of the PNG files (1: about 4x faster than 6, files a few percent larger).
    durability
        ``"process"``: a file whose recording process is killed keeps every commit (the
        operating system writes it out); no fsync. ``"power"``: also after a power cut,
        through fsync barriers and a rollback journal at each commit (see the README's
        Crash safety for what each costs).
    handover
        ``False`` (default): ``record()`` copies every value into the ring before it returns,
        and the caller may reuse its arrays at once. ``True``: each array leaf of at least
        64 KiB a row (camera frames) is kept by reference and copied into the ring by the
        writer thread, off the caller's thread; smaller leaves are copied as usual. Such an
        array belongs to the recorder from the ``record()`` call on: write to it (or to any
        array sharing its memory) again only after ``flush()``, ``close()`` or ``reset()``,
        called after that ``record()``, has returned (or raised); until then the recorder
        may still read it. Handing a new array at every step (as camera drivers do) needs
        nothing more. A step that ``record()`` rejects or drops is not taken. Held arrays
        stay alive until copied, at most one ring's worth (``buffer_bytes``) of them.
    """

    compression: str | None = "blosc2"
    compression_level: int | None = None
    compression_threads: int = 1
    buffer_bytes: int = 256 << 20
    on_full: Literal["wait", "drop"] = "wait"
    commit_interval: float = 1.0
    chunk_bytes: int = 1 << 20
    strict: bool = False
    min_free_bytes: int = 64 << 20
    frames: Literal["all", "best-effort"] = "all"
    frame_workers: int | None = None
    png_compress_level: int = 1
    durability: Literal["process", "power"] = "process"
    handover: bool = False

    def __post_init__(self) -> None:
        if self.durability not in ("process", "power"):
            raise ValueError(
                f"durability: expected 'process' or 'power', got {self.durability!r}"
            )
        if self.on_full not in ("wait", "drop"):
            raise ValueError(f"on_full: expected 'wait' or 'drop', got {self.on_full!r}")
        if not 0 < self.commit_interval <= 60:
            raise ValueError(
                f"commit_interval: expected 0 < seconds <= 60, got {self.commit_interval}"
            )
        if self.buffer_bytes < 1 << 16:
            raise ValueError(f"buffer_bytes: expected at least 65536, got {self.buffer_bytes}")
        if self.chunk_bytes < 1 << 10:
            raise ValueError(f"chunk_bytes: expected at least 1024, got {self.chunk_bytes}")
        if self.compression_threads < 1:
            raise ValueError(f"compression_threads: expected >= 1, got {self.compression_threads}")
        if self.frames not in ("all", "best-effort"):
            raise ValueError(f"frames: expected 'all' or 'best-effort', got {self.frames!r}")
        if self.frame_workers is not None and self.frame_workers < 1:
            raise ValueError(f"frame_workers: expected >= 1 or None, got {self.frame_workers}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"png_compress_level: expected 0..9, got {self.png_compress_level}")
        if not isinstance(self.handover, bool):
            raise ValueError(f"handover: expected True or False, got {self.handover!r}")
        if self.min_free_bytes < 0:
            raise ValueError(f"min_free_bytes: expected >= 0, got {self.min_free_bytes}")
        from .schema import make_leaf

        for probe in (spaces.Box(0, 1, (1,), np.float32), spaces.Box(0, 255, (2, 2), np.uint8)):
            dataset_options(  # a small leaf and an image: the codecs of both are checked
                make_leaf(("probe",), probe, self.chunk_bytes),
                self.compression,
                self.compression_level,
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    """Records timesteps into an HDF5 file without making the caller wait.

    A drop-in replacement for ``mbodied.data.recording.Recorder``: same arguments, same
    file layout (one root group per space, ``size`` attribute), same methods; added options
    are keyword-only (see :class:`Options`).

    ``record()`` checks the step, copies it into preallocated ring buffers and returns; a
    writer thread compresses full chunks into the file and commits at least every
    ``commit_interval`` seconds (the ``size`` attribute follows each commit). ``close()``
    (also leaving a ``with`` block, and interpreter exit) writes everything accepted.

    Parameters
    ----------
    name
        File name; the file is ``out_dir / Path(name).with_suffix(".h5")``. A file already
        there is moved aside (see :func:`copy_and_delete_old`).
    observation_space, action_space, state_space, supervision_space
        gymnasium spaces; a space not given is inferred from the first ``record()`` call.
    out_dir
        Folder of the file and of the ``<stem>_frames`` folder; created.
    image_keys_to_save
        Image keys whose frames are saved as PNG (default ``["image"]``).
    **options
        Keyword-only settings, see :class:`Options`.

    Examples
    --------
    >>> with Recorder("run", observation_space=space) as recorder:  # doctest: +SKIP
    ...     for step in loop:
    ...         recorder.record(observation=step.observation, action=step.action)
    """

    def __init__(
        self,
        name: str = "dataset.h5",
        observation_space: spaces.Space[Any] | None = None,
        action_space: spaces.Space[Any] | None = None,
        state_space: spaces.Space[Any] | None = None,
        supervision_space: spaces.Space[Any] | None = None,
        out_dir: str = "saved_datasets",
        image_keys_to_save: list[str] | None = None,
        **options: Any,
    ) -> None:
        self.options = Options(**options)
        self.strict = self.options.strict
        self._recording = threading.Lock()
        self.name = name
        self.out_dir = out_dir
        self.image_keys_to_save = (
            ["image"] if image_keys_to_save is None else list(image_keys_to_save)
        )
        self.frames_dir = Path(out_dir) / (Path(name).stem + "_frames")
        self.filename = Path(out_dir) / Path(name).with_suffix(".h5")
        self.observation_space = observation_space
        self.action_space = action_space
        self.state_space = state_space
        self.supervision_space = supervision_space
        self.index = 0
        self.root_keys: list[str] = []
        self.root_spaces: list[spaces.Space[Any]] = []
        self._closed = False
        self._writer: Writer | None = None
        self._live: _live.LiveServer | None = None
        self._ring: Ring | None = None
        self._backlog_rows = 1
        self._outrun_since = 0.0
        self._counters = Counters()
        self._plan = Plan({}, self.options.chunk_bytes)
        self._datasets: dict[int, h5py.Dataset] = {}
        self._frames: FramePool | None = None
        self._journal: JournaledFile | None = None
        self._frame_steps = 0  # steps the PNG pool has seen, over every episode
        self.missing_frames: list[str] = []
        sweep_stale_segments()
        _close_on_sigterm()
        self._open()
        self.configure_root_spaces(
            observation=observation_space,
            action=action_space,
            state=state_space,
            supervision=supervision_space,
        )
        self._place()
        if self.root_keys:
            try:
                self._start()
            except BaseException:
                self._closed = True
                _open_recorders.discard(self)
                _live.unregister(self.filename)
                self._close_file()
                raise
            # Loading the compiled kernels takes about 0.3 s from numba's cache (seconds the
            # first time on a machine); done here, it never competes with record() for the GIL.
            self.wait_ready()

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> None:
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        if self.filename.exists():
            self._move_aside()
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self._file = new_file(self.filename, self._user_block())  # in memory until _place()
        self._file.attrs["size"] = 0
        self._file.attrs[VERSION_ATTRIBUTE] = __version__
        self._file.attrs[OPTIONS_ATTRIBUTE] = json.dumps(self.options.to_dict())
        self._file.attrs[STATUS_ATTRIBUTE] = json.dumps(self._counters.status(None).to_dict())
        self._file.attrs[FRAMES_ATTRIBUTE] = json.dumps(frames_payload([], [], 0, []))
        self._file.attrs[CLOSED_ATTRIBUTE] = False
        leaves = time_leaves(self.options.chunk_bytes)
        datasets = create_time_layout(
            self._file, leaves, self.options.compression, self.options.compression_level
        )
        self._time_columns = (leaves, datasets)
        self._closed = False
        _open_recorders.add(self)

    def _close_file(self) -> None:
        """Close the file; with a journal, make what closing wrote durable too."""
        journal, self._journal = self._journal, None
        try:
            self._file.close()
            if journal is not None:
                journal.commit()
        finally:
            if journal is not None:
                journal.close()

    def _user_block(self) -> int:
        """Bytes kept at the start of the file for the power-loss journal (0: none)."""
        return JOURNAL_BYTES if self.options.durability == "power" else 0

    def _place(self) -> None:
        """Put the new file, with the layout of the spaces given so far, at its path."""
        power = self.options.durability == "power"
        self._file, self._journal = place_file(self._file, self.filename, sync=power)
        self._datasets = {
            leaf.index: self._file["/".join(leaf.path)] for leaf in self._plan.leaves
        }
        leaves, _ = self._time_columns
        clock = self._file[self._file.attrs[TIME_ATTRIBUTE]]
        self._time_columns = (leaves, [clock[leaf.path[-1]] for leaf in leaves])
        _live.register(self.filename, self.flush)  # the file at the path, as placed

    def _move_aside(self) -> None:
        """Move the file (and its frames, if any) aside, keeping them together.

        Refused while another recorder, in this process or another, is writing that file.
        """
        target = self.filename.resolve()
        for other in list(_open_recorders):
            if other is not self and other.filename.resolve() == target:
                raise RecorderError(f"{self.filename} is being recorded by {other!r}; "
                                    "use another name or close that recorder first")
        if is_locked(self.filename):
            raise RecorderError(
                f"{self.filename} is open for writing in another process; "
                "use another name or stop that recorder first"
            )
        moved = copy_and_delete_old(self.filename)
        if self.frames_dir.is_dir() and any(self.frames_dir.iterdir()):
            shutil.move(self.frames_dir, moved.with_name(moved.stem + "_frames"))

    def _saved_leaves(self) -> list[Leaf]:
        """The leaves named by ``image_keys_to_save`` (by key or full path), checked."""
        wanted = set(self.image_keys_to_save)
        saved = [
            leaf for leaf in self._plan.leaves if leaf.name in wanted or leaf.path[-1] in wanted
        ]
        for leaf in saved:
            check_image(leaf.name, leaf.shape, leaf.dtype)
        return saved

    def _start(self) -> None:
        leaves = self._plan.leaves
        options = self.options
        saved = self._saved_leaves()
        self._ring = Ring(
            leaves,
            capacity_for(leaves, options.buffer_bytes),
            {leaf.index for leaf in saved},
            handover=options.handover,
        )
        targets = []
        if saved and not self._ring.shared:
            warnings.warn(
                f"PNG frames of {[leaf.name for leaf in saved]} need POSIX shared memory "
                "(/dev/shm), which this system lacks: no frames are written",
                stacklevel=3,
            )
        elif saved:
            if self._frames is None:
                workers = options.frame_workers
                self._frames = FramePool(
                    workers,
                    options.png_compress_level,
                    # by default one more worker may start when the encoders fall behind
                    max_workers=workers or default_workers() + 1,
                )
            folders = frame_dirs(self.frames_dir, [leaf.name for leaf in saved])
            targets = [
                (leaf, FrameSource.of(self._ring.shared[leaf.index]), folders[leaf.name])
                for leaf in saved
            ]
        self._counters = Counters()
        image_rows = [leaf.chunk_rows for leaf in leaves if leaf.is_image]
        self._wake_at = max(1, min([self._ring.capacity // 4, *image_rows]))
        step_bytes = sum(leaf.row_bytes for leaf in leaves) or 1
        self._backlog_rows = min(
            self._ring.capacity, max(4 * self._wake_at, BACKLOG_BYTES // step_bytes)
        )
        self._outrun_since = 0.0  # when the caller last waited for the writer (0: it does not)
        self._writer = Writer(
            WriterSetup(
                self._file,
                leaves,
                self._datasets,
                self._ring,
                self._counters,
                [LeafStats(leaf) for leaf in leaves],
                compression=options.compression,
                compression_level=options.compression_level,
                compression_threads=options.compression_threads,
                commit_interval=options.commit_interval,
                min_free_bytes=options.min_free_bytes,
                frames=self._frames,
                frame_targets=targets,
                step_base=self._frame_steps,
                time_columns=self._time_columns,
                encode_deferred=options.frames == "all",
                journal=self._journal,
            )
        )
        self._writer.start()
        try:
            self._live = _live.LiveServer(self.filename, self._pause_for_reader, self._ring_fill)
        except OSError as error:  # a temp folder we cannot use, a path too long for a socket
            warnings.warn(
                f"{self.filename}: the live socket did not start, so read_live in other "
                f"processes cannot pause this recording for a snapshot: {error}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _stop(self) -> BaseException | None:
        """Drain, commit and stop the writer; return its error, if any."""
        if self._live is not None:
            self._live.close()
            self._live = None
        writer, self._writer = self._writer, None
        self._plan.forget()  # the last step's values: nothing of the caller's stays referenced
        if writer is None:
            return None
        writer.stop()
        if self._frames is not None and writer.frame_targets:
            self._finish_frames(writer)
            writer.release()
        if writer.error is None:
            try:
                writer.write_attributes()
                writer.store_stats()
                self._file.flush()
                if self._journal is not None:
                    self._journal.commit()
            except Exception as error:  # noqa: BLE001 - reported by close()
                writer.fail(error)
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        return writer.error

    def _finish_frames(self, writer: Writer) -> None:
        """Wait for this episode's frames; write the deferred ones from the file."""
        done = writer.finish_frames(best_effort=self.options.frames == "best-effort")
        self._frame_steps = writer.step_base + writer.done
        self.missing_frames = done.missing
        if writer.error is not None:
            return
        self._file.attrs.modify(
            FRAMES_ATTRIBUTE,
            json.dumps(frames_payload(done.keys, done.folders, done.deferred, done.missing)),
        )

    def close(self) -> None:
        """Write every accepted step, store statistics and close the file.

        A second call does nothing. Raises :class:`WriterError` (cause chained) if the
        writer failed; the file is closed either way.
        """
        if self._closed:
            return
        self._closed = True
        _open_recorders.discard(self)
        _live.unregister(self.filename)
        error = self._stop()
        frames, self._frames = self._frames, None
        try:
            if error is None:
                self._mark_closed()
            self._close_file()
            if frames is not None:
                frames.close()
                if error is None:
                    frames.check()
        finally:
            if error is not None:
                raise caller_error(error, f"writing {self.filename} failed") from error

    def _mark_closed(self) -> None:
        """Say in the file that close() finished it (``h5recorder inspect`` reads this)."""
        self._file.attrs.modify(CLOSED_ATTRIBUTE, True)  # in place: see _write.writer
        self._file.flush()

    def reset(self) -> None:
        """Close this episode's file, move it aside and start a fresh one.

        The new file has the same spaces (declared or inferred), ``index`` is 0 again.
        """
        root_spaces = self._plan.root_spaces()
        if self._closed:
            raise ClosedError(f"reset() after close() of {self.filename}")
        _live.unregister(self.filename)
        error = self._stop()
        if error is None:
            self._mark_closed()
        self._close_file()
        if error is not None:
            self._closed = True
            _open_recorders.discard(self)
            raise caller_error(error, f"writing {self.filename} failed") from error
        if self._frames is not None:
            self._frames.check()
        self._move_aside()
        self.missing_frames = []
        self.index = 0
        self.root_keys, self.root_spaces = [], []
        self._plan = Plan({}, self.options.chunk_bytes)
        self._datasets = {}
        self._open()
        self.configure_root_spaces(**root_spaces)
        self._place()
        if self.root_keys:
            self._start()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- spaces ---------------------------------------------------------------------------

    def configure_root_spaces(
        self, **root_spaces: spaces.Space[Any] | None
    ) -> tuple[list[str], list[spaces.Space[Any]]]:
        """Create the root groups and datasets for the given spaces.

        Returns ``(root_keys, root_spaces)`` of the roots created by this call. Roots can be
        added until the first step is recorded.
        """
        given = {name: space for name, space in root_spaces.items() if space is not None}
        for name, space in given.items():
            if not isinstance(space, spaces.Space):
                raise SchemaError(f"{name}: expected a gymnasium space, got {type(space).__name__}")
            if name in self._plan.roots:
                raise SchemaError(f"{name}: this root is already configured")
        if not given:
            return [], []
        if self.index:
            raise SchemaError(
                f"{', '.join(given)}: roots can only be added before the first step is recorded"
            )
        restart = self._writer is not None
        if restart:
            self._stop()
        for name in given:
            if name in self._file:
                raise SchemaError(f"{name}: the file already holds an object of this name")
        self._plan = Plan({**self._plan.root_spaces(), **given}, self.options.chunk_bytes)
        created = create_layout(
            self._file,
            self._plan,
            list(given),
            self.options.compression,
            self.options.compression_level,
        )
        self._datasets = {
            leaf.index: created.get(leaf.index) or self._file["/".join(leaf.path)]
            for leaf in self._plan.leaves
        }
        for dataset in created.values():
            reserve_header_space(dataset)
        self.root_keys += list(given)
        self.root_spaces += list(given.values())
        self._file.flush()  # a file killed before its first commit still opens
        if restart:
            self._start()
        return list(given), list(given.values())

    # -- recording ------------------------------------------------------------------------

    def record(
        self,
        observation: Any | None = None,
        action: Any | None = None,
        state: Any | None = None,
        supervision: Any | None = None,
    ) -> None:
        """Record one timestep; returns once it is in the ring (microseconds).

        Each argument is a dict (nested for ``Dict`` spaces), an object with ``.dict()`` /
        ``model_dump()``, or, for a non-``Dict`` space, the value itself. A space that was
        not declared is inferred from the first call. The step is checked whole before any
        of it is copied: a bad value raises :class:`StepError` naming the key, what was
        expected and what arrived, and the recorder keeps working. A missing or ``None``
        value records the leaf's fill value (zeros, or ``""``) and is counted.

        The step reaches the file at the next commit (at most ``commit_interval`` seconds
        later) and for certain at ``close()``.

        Every value is copied before this returns, unless the recorder was created with
        ``handover=True``: then arrays of at least 64 KiB (camera frames) are kept by
        reference and belong to the recorder until ``flush()``, ``close()`` or ``reset()``
        returns; do not write to them before (see :class:`Options`).
        """
        with self._recording:  # steps from several threads are taken one at a time
            self._record(observation, action, state, supervision)

    def _record(self, observation: Any, action: Any, state: Any, supervision: Any) -> None:
        writer = self._writer
        if writer is None or self.index == 0:
            writer = self._first_step(observation, action, state, supervision)
        if writer.error is not None:
            writer.raise_error()
        frames = writer.frames
        if frames is not None and frames.has_errors:
            frames.check()
        plan = self._plan
        try:
            missing = plan.collect((observation, action, state, supervision), self.strict)
        except BaseException:
            plan.forget()  # nothing of a rejected step stays referenced
            raise
        ring = self._ring
        assert ring is not None
        head = ring.head
        if head - ring.tail >= ring.capacity:
            if not self._wait_for_ring_slots(ring, writer):
                plan.forget()
                return
            if self.options.on_full == "wait":
                self._outrun_since = time.monotonic()
        elif self._outrun_since:
            self._keep_backlog_small(ring, writer, head)
        slot = head % ring.capacity
        held = ring.held
        if held is None:
            for column, rows, value in zip(ring.columns, ring.byte_rows, plan.values, strict=True):
                if rows is not None and value.dtype is column.dtype and value.flags.c_contiguous:
                    view, size = rows
                    start = slot * size
                    view[start : start + size] = value.data.cast("B")
                else:
                    column[slot] = value
        else:  # hand-over: large values are kept as they are; the writer copies them (copy_held)
            for column, rows, value, values in zip(
                ring.columns, ring.byte_rows, plan.values, held, strict=True
            ):
                if values is not None:
                    values[slot] = value
                elif rows is not None and value.dtype is column.dtype and value.flags.c_contiguous:
                    view, size = rows
                    start = slot * size
                    view[start : start + size] = value.data.cast("B")
                else:
                    column[slot] = value
        ring.stamps[slot] = time.perf_counter_ns()
        ring.head = head = head + 1
        counters = self._counters
        counters.steps += 1
        counters.missing_values += missing
        self.index += 1
        if head - ring.tail >= self._wake_at:
            writer.wake.set()

    def _first_step(self, *values: Any) -> Writer:
        if self._closed:
            raise ClosedError(f"record() after close() of {self.filename}; use a new Recorder")
        inferred = {
            name: infer_space(value, name)
            for name, value in zip(ROOTS, values, strict=True)
            if value is not None and name not in self._plan.roots
        }
        if inferred:
            self.configure_root_spaces(**inferred)
        if self._writer is None:
            if not self._plan.roots:
                raise SchemaError(
                    "record() needs at least one of observation, action, state, supervision"
                )
            self._start()
        assert self._writer is not None
        return self._writer

    def _keep_backlog_small(self, ring: Ring, writer: Writer, head: int) -> None:
        """While the caller outruns the writer (the ring filled up under ``on_full="wait"``),
        wait as soon as ``BACKLOG_BYTES`` of steps are not written yet, not only when the
        ring is full: the writer then writes bytes that are still in the processor's cache.

        A caller that has not had to wait for half a second is no longer outrunning the
        writer, and has the whole ring for its bursts again. Frames the PNG encoders have
        not finished do not count: they are deferred when they fall behind, as ever.
        """
        if head - writer.done < self._backlog_rows:
            if time.monotonic() - self._outrun_since > OUTRUN_SECONDS:
                self._outrun_since = 0.0
            return
        self._wait_for_writer(writer, lambda: ring.head - writer.done < self._backlog_rows)
        self._outrun_since = time.monotonic()

    def _wait_for_ring_slots(self, ring: Ring, writer: Writer) -> bool:
        if self.options.on_full == "drop":
            self._counters.drops += 1
            return False
        self._wait_for_writer(writer, lambda: ring.head - ring.tail < ring.capacity)
        return True

    def _wait_for_writer(self, writer: Writer, done: Callable[[], bool]) -> None:
        """Wait (counted) until ``done()``, woken by the writer at each drain and release."""
        ring = self._ring
        assert ring is not None
        counters = self._counters
        counters.waits += 1
        started = time.perf_counter()
        while not done():
            ring.released.clear()
            if done():
                break
            if writer.error is not None:
                writer.raise_error()
            writer.wake.set()
            ring.released.wait(0.1)
        counters.wait_seconds += time.perf_counter() - started

    @property
    def file(self) -> h5py.File:
        """The open ``h5py.File``, committed up to the last step ``record()`` returned for.

        Each access while recording asks the writer for a commit (see :meth:`flush`), so
        reads through it see every recorded step; writes through it (groups of your own,
        ``record_timestep``) are yours to make, h5py serializes them with the writer's.
        """
        self.flush()
        return self._file

    def flush(self) -> None:
        """Commit every step recorded so far; return once readers of the file see them.

        The h5py convention for "make it visible now". The writer thread drains the ring
        and commits (the rows, then ``size``); this call waits for it, ``record()`` does not.
        Opening the file with h5py in this process (``h5py.File(recorder.filename)``,
        mbodied's ``Replayer``) calls it first. Nothing to do after ``close()``.
        """
        if self._closed or not self._file.id.valid:  # closed, or closed through .file
            return
        writer = self._writer
        if writer is None or not writer.is_alive():
            if writer is not None and writer.error is not None:
                writer.raise_error()
            self._file.flush()
            return
        if threading.current_thread() is writer:
            self._commit_for_readers(writer)
            return
        writer.request(lambda: self._commit_for_readers(writer))

    def _pause_for_reader(self, hold: Callable[[], None]) -> None:
        """Commit, then run ``hold`` on the writer thread: no file writes until it returns."""
        writer = self._writer
        if writer is None:
            raise ClosedError(f"{self.filename} is not being recorded")

        def commit_and_hold() -> None:
            self._commit_for_readers(writer)
            hold()

        writer.request(commit_and_hold)

    def _ring_fill(self) -> float:
        ring = self._ring
        return ring.pending / ring.capacity if ring is not None else 0.0

    @staticmethod
    def _commit_for_readers(writer: Writer) -> None:
        writer.commit()
        writer.refresh_lookups()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the writer's compiled kernels are loaded; return whether they are.

        Never needed for correctness: until then the writer uses slower numpy code. The first
        recorder on a machine compiles the kernels (seconds; later runs load numba's cache),
        so benchmarks and demos call this before they start the clock.
        """
        writer = self._writer
        if writer is None:
            return False
        writer.warmed.wait(timeout)
        return writer.ready.is_set()

    def status(self) -> Status:
        """Counters and health of the current episode, readable while it runs.

        ``frames_pending`` and ``frames_close_seconds`` say early when the PNG encoders fall
        behind: the frames not written yet, and about how long ``close()`` would wait for
        them if called now (from what the workers take per frame lately).
        """
        if self._writer is not None:
            self._writer.note_frames()
        return self._counters.status(self._ring)

    def save_stats(self) -> dict[str, dict[str, Any]]:
        """Store per-dataset statistics as ``stats_*`` attributes and return them.

        For every dataset: ``count``, ``min``, ``max``, ``mean``, ``std`` (per channel for
        images, per element otherwise) and, for ``Discrete``, ``value_counts``. They are kept
        up to date by the writer as rows go by, so this reads nothing back from the file.
        """
        if self._closed:
            raise ClosedError(f"save_stats() after close() of {self.filename}")
        if self._writer is None:
            return {}
        writer = self._writer
        if writer.error is not None:
            writer.raise_error()

        def store() -> dict[str, dict[str, Any]]:
            writer.commit()
            return writer.store_stats()

        return writer.request(store)  # type: ignore[no-any-return]

    def record_timestep(self, group: h5py.Group | h5py.Dataset, sample: Any, index: int) -> None:
        """Write ``sample`` straight into ``group`` (or a dataset) at row ``index``.

        The slow, synchronous path of the reference API, for groups the user created in
        ``recorder.file``: it calls h5py in the caller's thread. Datasets grow to exactly
        ``index + 1`` rows when needed.
        """
        if self._closed:
            raise ClosedError(f"record_timestep() after close() of {self.filename}")
        if isinstance(group, h5py.Dataset):
            if index >= group.shape[0]:
                group.resize(index + 1, axis=0)
            value = unwrap(sample)
            if group.attrs.get("tuple_length") is not None:
                value = json.dumps({"item": [stored_json(item) for item in value]})
            group[index] = value
            return
        mapping = to_mapping(sample)
        if mapping is None:
            raise RecorderError(f"{group.name}: expected a dict, got {type(sample).__name__}")
        for key, value in mapping.items():
            if value is None:
                continue
            if key not in group:
                warnings.warn(f"key {key!r} not in group {group.name}; skipped", stacklevel=2)
                continue
            self.record_timestep(group[key], value, index)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.index} steps"
        return f"<Recorder {str(self.filename)!r} ({state})>"
