"""The frame pool: worker processes, and the dispatcher thread that keeps them busy.

Contract
--------
- :class:`FramePool` starts ``workers`` processes once and reuses them until :meth:`close`.
  Each is a fresh interpreter (never a ``fork`` of this process: h5py takes its global lock
  before every fork) that imports this package, numpy and the PNG encoders, and nothing else:
  neither the rest of the package (h5py and numba would cost each worker a second and about
  100 MB) nor the user's main module (``multiprocessing``'s spawn re-runs an unguarded script
  in every child).
- A :class:`FrameJob` names a frame by where it lies, never by its pixels: a shared-memory
  segment of the ring (:class:`FrameSource`) and a slot. Workers map the segment and read the
  slot in place, so **the slot must not be written again until the job is finished**: every
  job of a step below :attr:`FramePool.done_below` is finished (written, failed, or taken
  back with :meth:`FramePool.withdraw`).
- Jobs are submitted in nondecreasing step order; queued jobs go to idle workers in batches
  (one message per batch, a few per worker in flight, so no worker waits for the next).
- A worker that dies (killed, out of memory) is replaced and its unfinished jobs go to the
  next free worker; a job whose worker died ``max_attempts`` times fails, so one frame that
  crashes the encoder cannot stall the rest. Workers that die before they are ready, again
  and again, fail every job and the pool: nothing waits forever.
- A frame that cannot be written (a folder that is not writable, a segment that is gone)
  becomes a :class:`FrameError` naming its path; :meth:`FramePool.check` raises it in the
  caller's thread. Nothing is swallowed.
- Each file is written to a new ``<path>.<random>.part`` and renamed, so a reader never sees
  half a PNG and nothing planted at either name is written through.
- Threads: one dispatcher thread per pool talks to the workers; every public method may be
  called from any thread.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import subprocess
import sys
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterable
from glob import escape as glob_escape
from multiprocessing.connection import Connection, Pipe
from multiprocessing.connection import wait as wait_readable
from pathlib import Path
from typing import Any, cast

import numpy as np

from .encoders import check_image, choose_encoders
from .jobs import FrameCounters, FrameError, FrameJob, FrameSource, Task
from .worker import BOOTSTRAP

__all__ = ["EXPECTED_SECONDS_PER_FRAME", "FramePool", "default_workers"]

_PREFETCH = 2  # batches in flight per worker: the next is queued before the last is done
_MAX_BATCH_PATH_CHARS = 16_000  # keeps messages to a worker below a pipe's buffer
_START_FAILURES = 3  # workers in a row that die before they are ready: the pool gives up
_GROW_AFTER_SECONDS = 0.5  # queued work per worker beyond which the pool starts another
_SMOOTHING = 0.1  # weight of the newest batch in the running mean of seconds per frame
EXPECTED_SECONDS_PER_FRAME = 0.002  # a 640x480 frame, until the workers have measured theirs


def default_workers() -> int:
    """Cores this process may run on, minus one for the caller; at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _remove_partial_files(path: str) -> None:
    """Remove ``<path>.<random>.part`` files a killed worker left behind (its own name for
    the frame it was writing, which only it knew)."""
    target = Path(path)
    for part in target.parent.glob(f"{glob_escape(target.name)}.*.part"):
        try:
            part.unlink()
        except OSError:  # gone already, or not ours to remove
            pass


class _Job:
    __slots__ = ("attempts", "path", "step", "task")

    def __init__(self, step: int | None, path: str, task: Task) -> None:
        self.step = step
        self.path = path
        self.task = task
        self.attempts = 0


def _worker_path() -> list[str]:
    """This process's import path for a worker, absolute, without the current folder.

    An empty entry means "the current folder": a worker never imports from there (a ``json.py``
    left in it would run inside every worker).
    """
    return [os.path.abspath(entry) for entry in map(os.fspath, sys.path) if entry]


class _Worker:
    __slots__ = ("conn", "inflight", "process", "ready")

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.inflight: deque[list[int]] = deque()
        self.ready = False


_open_pools: weakref.WeakSet[FramePool] = weakref.WeakSet()


@atexit.register
def _close_open_pools() -> None:
    for pool in list(_open_pools):
        pool.close()


class FramePool:
    """Worker processes that write frames from the shared-memory ring as PNG files.

    Parameters
    ----------
    workers
        Worker processes; default :func:`default_workers` (cores minus one, at least one).
    compress_level
        zlib level, 0 (stored) to 9. With the run-length strategy used here, levels above 1
        take longer and gain little on camera frames.
    encoder
        One of :data:`~h5recorder._write.frames.encoders.ENCODERS`; ``"auto"`` takes the fastest
        installed for each kind of frame. :attr:`encoders` says which writes which kind.
    batch_size
        Most frames sent to a worker in one message. Smaller batches are sent when the queue
        is short, so a lone frame is not held back. Small batches also keep short the wait
        for frames already with a worker when the recorder takes the queued ones back.
    max_workers
        When the frames queued would take one worker more than half a second each (the
        encoders fall behind: a faster rig, or other programs taking the cores), the pool
        starts one more worker at a time, up to this many; default ``workers``, no growth.
    max_attempts
        Workers that may die while holding one frame before it is reported as failed.

    Notes
    -----
    The caller must keep a ring slot unchanged until its job is finished, that is until the
    job's step is below :attr:`done_below`. :meth:`close` waits for every frame, then stops
    the workers; errors are raised by :meth:`check`, never by the methods that run the pool.
    """

    def __init__(
        self,
        workers: int | None = None,
        compress_level: int = 1,
        *,
        encoder: str = "auto",
        batch_size: int = 4,
        max_attempts: int = 3,
        max_workers: int | None = None,
    ) -> None:
        if workers is None:
            workers = default_workers()
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
        if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level: expected an int 0-9, got {compress_level!r}")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= 256:
            raise ValueError(f"batch_size: expected an int 1-256, got {batch_size!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts: expected an int >= 1, got {max_attempts!r}")
        if max_workers is None:
            max_workers = workers
        if not isinstance(max_workers, int) or max_workers < workers:
            raise ValueError(f"max_workers: expected an int >= workers, got {max_workers!r}")
        self.max_workers = max_workers
        self.workers = workers
        self.compress_level = compress_level
        self.encoders = choose_encoders(encoder, compress_level)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        from ..ring import SHM_DIR, SHM_PREFIX  # not at the top: workers never need the ring

        self._shm_dir = SHM_DIR
        self._transient_dir = (
            SHM_DIR if SHM_DIR.is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
        )
        self._transient_prefix = f"{SHM_PREFIX}{os.getpid()}_png{secrets.token_hex(4)}_"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ids = 0
        self._jobs: dict[int, _Job] = {}
        self._queue: deque[int] = deque()  # ring jobs: their slots hold the ring back
        self._later: deque[int] = deque()  # frames from arrays
        self._open_steps: OrderedDict[int, int] = OrderedDict()  # step -> jobs unfinished
        self._sources: set[FrameSource] = set()
        self._last_step = -1
        self._done_below = 0
        self._errors: deque[FrameError] = deque()
        self._counts = dict.fromkeys(FrameCounters.__dataclass_fields__, 0)
        self._start_failures = 0
        self._seconds_per_frame = EXPECTED_SECONDS_PER_FRAME
        self._measured = False
        self._broken: str | None = None
        self._stopping = False
        self._closed = False
        self._pool: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        try:
            for _ in range(workers):
                self._pool.append(self._start_worker())
        except BaseException:
            self._stop_workers(timeout=1.0)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = -1
            raise
        self._thread = threading.Thread(
            target=self._dispatch, name="h5recorder-frames", daemon=True
        )
        self._thread.start()
        _open_pools.add(self)

    # ---- what the recorder calls --------------------------------------------------------

    def submit(self, jobs: Iterable[FrameJob]) -> int:
        """Queue frames to write; return how many. Steps must not go down between calls.

        Raises ``ValueError`` for a step lower than one submitted before or a slot outside
        its source, :class:`~h5recorder.errors.SchemaError` for a source that is not an image
        column, :class:`FrameError` if the pool has failed, ``RuntimeError`` once closed;
        then nothing of ``jobs`` was queued.
        """
        batch: list[tuple[int, str, FrameSource, int]] = []
        for step, given, slot, path in jobs:
            source = FrameSource(
                str(given.segment), tuple(int(n) for n in given.shape), np.dtype(given.dtype).str
            )
            if source not in self._sources:
                check_image(source.segment, source.shape[1:], source.dtype)
                if "/" in source.segment or source.segment in ("", ".", ".."):
                    raise ValueError(f"{source.segment!r} is not a segment name")
                self._sources.add(source)
            if not 0 <= slot < source.shape[0]:
                raise ValueError(
                    f"{path}: slot {slot} outside the {source.shape[0]} slots of {source.segment}"
                )
            batch.append((int(step), os.fspath(path), source, int(slot)))
        if not batch:
            return 0
        with self._lock:
            self._check_open()
            last = self._last_step
            for step, _, _, _ in batch:
                if step < last:
                    raise ValueError(
                        f"step {step} submitted after step {last}: steps must not go down"
                    )
                last = step
            for step, path, source, slot in batch:
                self._ids += 1
                task: Task = (
                    self._ids,
                    os.fspath(self._shm_dir / source.segment),
                    source.shape,
                    source.dtype,
                    slot,
                    path,
                    False,
                )
                self._jobs[self._ids] = _Job(step, path, task)
                self._queue.append(self._ids)
                self._open_steps[step] = self._open_steps.get(step, 0) + 1
            self._last_step = last
            self._counts["submitted"] += len(batch)
            self._wake()
        return len(batch)

    def advance(self, below: int) -> None:
        """Declare that no job of a step lower than ``below`` will come (steps without a
        frame), so that :attr:`done_below` may reach ``below``."""
        with self._changed:
            if below - 1 > self._last_step:
                self._last_step = below - 1
                if not self._open_steps:
                    self._done_below = max(self._done_below, below)
                    self._changed.notify_all()

    @property
    def done_below(self) -> int:
        """Every job of a step lower than this is finished: its ring slot may be reused.

        It only grows. With nothing outstanding it is one more than the last step submitted.
        """
        return self._done_below

    @property
    def pending(self) -> int:
        """Jobs not finished yet, frames from arrays included."""
        return len(self._jobs)

    def drain_seconds(self, more: int = 0) -> float:
        """About how long the workers need to finish what is pending, plus ``more`` frames:
        a running mean of what one worker took per frame over the last few dozen batches
        (before the first, a guess of :data:`EXPECTED_SECONDS_PER_FRAME`), per worker."""
        return (len(self._jobs) + more) * self._seconds_per_frame / max(1, len(self._pool))

    def wait(self, below: int | None = None, timeout: float | None = None) -> bool:
        """Block until every job of a step lower than ``below`` is finished (every job at all
        when ``below`` is None, frames from arrays included). Return False on timeout."""
        with self._changed:
            if below is None:
                return self._changed.wait_for(lambda: not self._jobs, timeout)
            return self._changed.wait_for(lambda: self._done_below >= below, timeout)

    def withdraw(self, below: int) -> list[FrameJob]:
        """Take back queued jobs of steps lower than ``below`` that no worker has started.

        For a recorder whose ring is full: it may reuse their slots at once (after waiting
        for the jobs already with a worker, see :meth:`wait`) and write these frames later
        from the file, with :meth:`encode_from_array`. Returned in submission order.
        """
        taken: list[FrameJob] = []
        with self._changed:
            keep: deque[int] = deque()
            for job_id in self._queue:
                job = self._jobs[job_id]
                if job.step is not None and job.step < below:
                    _, file, shape, dtype, slot, path, _ = job.task
                    source = FrameSource(os.path.basename(file), shape, dtype)
                    taken.append(FrameJob(job.step, source, slot, path))
                    self._finish(job_id)
                else:
                    keep.append(job_id)
            self._queue = keep
            self._counts["deferred"] += len(taken)
            self._changed.notify_all()
        return taken

    def encode_from_array(self, array: np.ndarray[Any, Any], path: str | os.PathLike[str]) -> None:
        """Queue one frame that is no longer in the ring (read back from the file, say).

        The frame is copied now, to a file in ``/dev/shm`` that the worker reads and the pool
        removes, so ``array`` may change as soon as this returns. These frames go after the
        ring's, and do not hold back :attr:`done_below`.
        """
        target = os.fspath(path)
        check_image(target, array.shape, array.dtype)
        with self._lock:
            self._check_open()
            self._ids += 1
            job_id = self._ids
        file = os.fspath(self._transient_dir / f"{self._transient_prefix}{job_id}")
        flat = np.ascontiguousarray(array)
        fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with open(fd, "wb", closefd=True) as handle:
                flat.tofile(handle)
        except BaseException:
            os.unlink(file)
            raise
        task: Task = (job_id, file, (1, *flat.shape), flat.dtype.str, 0, target, True)
        with self._lock:
            if self._closed or self._stopping:
                os.unlink(file)
                raise RuntimeError("the frame pool is closed")
            self._jobs[job_id] = _Job(None, target, task)
            self._later.append(job_id)
            self._counts["from_array"] += 1
            self._wake()

    @property
    def has_errors(self) -> bool:
        """Whether :meth:`check` would raise (a cheap look, without the lock)."""
        return bool(self._errors)

    def check(self) -> None:
        """Raise the oldest :class:`FrameError` not raised yet, if any (the rest wait)."""
        with self._lock:
            if not self._errors:
                return
            error = self._errors.popleft()
        raise error

    @property
    def errors(self) -> list[FrameError]:
        """The errors not raised yet, oldest first."""
        with self._lock:
            return list(self._errors)

    @property
    def counters(self) -> FrameCounters:
        """A snapshot of what the pool has done."""
        with self._lock:
            return FrameCounters(**self._counts)

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        with self._lock:
            return [worker.process.pid for worker in self._pool]

    def close(self, timeout: float | None = None) -> None:
        """Wait for every frame (at most ``timeout`` seconds), then stop the workers.

        Frames not written by then are reported as :class:`FrameError` (see :meth:`check`).
        A second call does nothing. Does not raise frame errors itself.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_pools.discard(self)
        self.wait(timeout=timeout)
        with self._changed:
            self._stopping = True
            for job_id in list(self._jobs):
                self._fail(job_id, "the frame pool was closed before it was written")
            self._changed.notify_all()
            self._wake()
        self._thread.join()
        self._stop_workers(timeout=5.0)
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = -1

    def __enter__(self) -> FramePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- inside the pool ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._stopping:
            raise RuntimeError("the frame pool is closed")
        if self._broken is not None:
            raise FrameError("(every frame)", None, self._broken)

    def _wake(self) -> None:
        """Wakes the dispatcher; called with the lock held, so the pipe cannot close meanwhile."""
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass

    def _start_worker(self) -> _Worker:
        parent, child = Pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",  # no cwd or script folder on its path, no PYTHON* variables
                    "-c",
                    BOOTSTRAP,
                    str(child.fileno()),
                    str(self.compress_level),
                    json.dumps(self.encoders),
                    os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                    json.dumps(_worker_path()),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return _Worker(process, parent)

    def _dispatch(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    self._assign()
                    waitables: list[Any] = [self._wake_r]
                    waitables.extend(worker.conn for worker in self._pool)
                ready = wait_readable(waitables, timeout=1.0)
                with self._changed:
                    for item in ready:
                        if isinstance(item, int):  # the wake-up pipe
                            os.read(self._wake_r, 4096)
                        else:
                            self._receive(cast("Connection", item))
                    self._changed.notify_all()
        except Exception as error:  # noqa: BLE001 - callers must not wait forever: fail all
            with self._changed:
                self._broken = f"the frame dispatcher failed: {error!r}"
                for job_id in list(self._jobs):
                    self._fail(job_id, self._broken, error)
                self._changed.notify_all()

    def _receive(self, conn: Connection) -> None:
        worker = next((w for w in self._pool if w.conn is conn), None)
        if worker is None:
            return
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            self._replace(worker, None)
            return
        if kind == "ready":
            worker.ready = True
            self._start_failures = 0
        elif kind == "failed":
            self._replace(worker, payload)
        else:
            batch = worker.inflight.popleft()
            results, seconds = payload
            if batch:
                per_frame = seconds / len(batch)
                if self._measured:
                    self._seconds_per_frame += _SMOOTHING * (per_frame - self._seconds_per_frame)
                else:  # the first batch replaces the guess outright
                    self._seconds_per_frame, self._measured = per_frame, True
            outcomes = dict(results)
            for job_id in batch:
                outcome = outcomes.get(job_id)
                if job_id not in self._jobs:
                    continue
                if outcome is None:
                    self._counts["written"] += 1
                    self._finish(job_id)
                else:
                    error, text = outcome
                    self._fail(job_id, f"{type(error).__name__}: {error}", error, text)

    def _replace(self, dead: _Worker, reason: str | None) -> None:
        """A worker died (or could not start): hand its jobs on and start another."""
        dead.conn.close()
        try:
            code = dead.process.wait(5.0)
        except subprocess.TimeoutExpired:  # its pipe broke but it lives on: end it
            dead.process.kill()
            code = dead.process.wait()
        self._pool.remove(dead)
        if not dead.ready and code >= 0:  # it exited by itself: killed ones may start again
            self._start_failures += 1
        why = reason or f"its worker (pid {dead.process.pid}) died (exit code {code})"
        if reason is not None or self._start_failures >= _START_FAILURES:
            self._broken = f"PNG workers cannot start: {why}"
        if self._broken is not None:
            for job_id in list(self._jobs):
                self._fail(job_id, self._broken)
            return
        requeue: list[int] = []
        for batch in dead.inflight:
            for job_id in batch:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                _remove_partial_files(job.path)  # the dead worker's half-written PNG
                job.attempts += 1
                if job.attempts >= self.max_attempts:
                    self._fail(job_id, f"{why}, {job.attempts} times")
                else:
                    requeue.append(job_id)
                    self._counts["retried"] += 1
        for job_id in reversed(requeue):
            (self._later if self._jobs[job_id].step is None else self._queue).appendleft(job_id)
        self._counts["restarts"] += 1
        self._pool.append(self._start_worker())

    def _grow(self) -> None:
        """Start one more worker when the queue would keep the ones there busy too long."""
        pool = self._pool
        if not pool or len(pool) >= self.max_workers or not all(w.ready for w in pool):
            return
        if len(self._queue) * self._seconds_per_frame / len(pool) > _GROW_AFTER_SECONDS:
            pool.append(self._start_worker())
            self._counts["added"] += 1

    def _assign(self) -> None:
        """Send queued jobs to workers with free slots, in batches that share the queue out."""
        self._grow()
        for worker in sorted(self._pool, key=lambda w: len(w.inflight)):
            while len(worker.inflight) < _PREFETCH and (self._queue or self._later):
                queue = self._queue or self._later
                size = max(1, min(self.batch_size, -(-len(queue) // len(self._pool))))
                batch: list[int] = []
                chars = 0
                while queue and len(batch) < size and chars < _MAX_BATCH_PATH_CHARS:
                    job_id = queue.popleft()
                    batch.append(job_id)
                    chars += len(self._jobs[job_id].path)
                try:
                    worker.conn.send([self._jobs[job_id].task for job_id in batch])
                except OSError:  # it died; _receive will see the end of its pipe
                    queue.extendleft(reversed(batch))
                    break
                worker.inflight.append(batch)

    def _finish(self, job_id: int) -> None:
        job = self._jobs.pop(job_id)
        if job.step is None:
            self._remove_transient(job.task)
            return
        left = self._open_steps[job.step] - 1
        if left:
            self._open_steps[job.step] = left
        else:
            del self._open_steps[job.step]
            low = next(iter(self._open_steps), self._last_step + 1)
            self._done_below = max(self._done_below, low)

    def _fail(
        self, job_id: int, reason: str, cause: BaseException | None = None, text: str | None = None
    ) -> None:
        job = self._jobs[job_id]
        error = FrameError(job.path, job.step, reason)
        error.__cause__ = cause
        error.worker_traceback = text  # type: ignore[attr-defined]
        self._errors.append(error)
        self._counts["failed"] += 1
        self._finish(job_id)

    @staticmethod
    def _remove_transient(task: Task) -> None:
        try:
            os.unlink(task[1])
        except FileNotFoundError:
            pass

    def _stop_workers(self, timeout: float) -> None:
        for worker in self._pool:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._pool:
            try:
                worker.process.wait(timeout)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.conn.close()
        self._pool = []
