"""Crash consistency at every write: a recording's writes are logged, then replayed.

A child process records with every write, truncation and fsync made to its file logged
(``LOGGED_OPEN``: the file object HDF5 writes through, ``_write.journal.JournaledFile``, with its
three disk calls logged). The test then
rebuilds the file as a crash after each logged call would leave it and checks every state:
after ``recover`` (and, in the kill model, as it is where it opens), every row below ``size``
is exactly what was recorded, and ``size`` holds every commit made durable before the crash.

Models:

- kill: the process dies; every write made before the crash is on disk (the page cache keeps
  it). A commit is durable once written: ``size`` never falls below one an earlier state held.
- power: the machine loses power; writes before the last fsync are on disk, and each 4 KiB
  block written after it (and each truncation) is on disk or not, at random. ``size`` must
  hold the last commit that an fsync made durable.

In the power model every state is also given, as it is (before ``recover``), to the readers a
user reaches for first: ``h5recorder.open`` (every row below ``size`` read and compared) and
``h5recorder inspect --check``, in a child process under a time limit (:class:`ReaderProbe`):
each must read the state exactly or say that it needs ``h5recorder recover``, and none may
hang.

States before the file is placed (it is built in memory, then renamed into place) have no file
at the path: there is nothing to check there.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from h5recorder._write.recover import recover
from h5recorder.workloads import photo_frames, render_frames

FRAMES = 16
SEED = 11
# a reader that has not answered in this long hangs (it answers in well under a second; the
# margin is for a loaded machine)
PROBE_SECONDS = 20.0

# Runs in the child before the recorder. Every call that changes the recording's file is
# logged as kind (1 byte: w write, t truncate, s fsync), offset (8), length (8), data. The
# placed file's bytes come first, as a write at offset 0 (placing it is atomic: a rename).
LOGGED_OPEN = """
import os, struct
import h5py
from h5recorder._write import writer as _writer
from h5recorder._write.journal import JournaledFile

LOG = os.open(os.environ["H5RECORDER_WRITE_LOG"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

def log(kind, offset, data=b""):
    os.write(LOG, kind + struct.pack("<qq", offset, len(data)) + data)

class LoggedJournal(JournaledFile):
    def _put(self, offset, data):
        log(b"w", offset, data)
        super()._put(offset, data)

    def _sync(self):
        log(b"s", 0)
        super()._sync()

    def _cut(self, size):
        log(b"t", size)
        super()._cut(size)

def open_logged(path, user_block=0):
    with open(path, "rb") as placed:
        log(b"w", 0, placed.read())
    if user_block:  # placed with fsync: the file and its rename are on disk
        log(b"s", 0)
    journal = LoggedJournal(path, user_block, journaled=user_block > 0)
    return h5py.File(journal, "r+"), journal

_writer.open_file = open_logged
"""

CHILD = """
import sys, time
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder
from h5recorder.workloads import photo_frames, render_frames

out_dir, steps, rate, interval, saved, durability, kind = sys.argv[1:8]
make = render_frames if kind == "render" else photo_frames
frames = make(16, 48, 64, seed=11)
space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                     "joints": spaces.Box(-np.inf, np.inf, (3,), np.float64),
                     "note": spaces.Text(20)})
recorder = Recorder("replay", out_dir=out_dir, observation_space=space,
                    commit_interval=float(interval), durability=durability,
                    image_keys_to_save=saved.split(",") if saved else [])
start = time.perf_counter()
for i in range(int(steps)):
    recorder.record({"image": frames[i % 16], "joints": np.array([i, i / 2, -i], float),
                     "note": f"n{i}"})
    while time.perf_counter() < start + (i + 1) / float(rate):
        time.sleep(0.0002)
recorder.close()
"""


def record_logged(
    tmp_path: Path,
    steps: int,
    rate: float,
    interval: float,
    frames: bool,
    durability: str,
    kind: str = "photo",
) -> Path:
    """Record in a child process with every write logged; return the log. ``kind`` is
    ``"photo"`` (noisy camera frames, stored raw) or ``"render"`` (compressible frames)."""
    log = tmp_path / "writes.log"
    out = tmp_path / "recording"
    subprocess.run(
        [
            sys.executable,
            "-c",
            LOGGED_OPEN + CHILD,
            str(out),
            str(steps),
            str(rate),
            str(interval),
            "image" if frames else "",
            durability,
            kind,
        ],
        env={**os.environ, "H5RECORDER_WRITE_LOG": str(log)},
        check=True,
        timeout=600,
    )
    return log


PROBE = """
import contextlib, io, json, sys
import numpy as np
import h5recorder
from h5recorder import ReadError
from h5recorder._tools.cli import main as cli
from h5recorder.workloads import photo_frames

frames = photo_frames(16, 48, 64, seed=11)
for line in sys.stdin:
    path = line.strip()
    answer = {}
    try:
        with h5recorder.open(path) as episode:
            size = len(episode)
            steps = np.arange(size)
            exact = (
                np.array_equal(episode["observation/image"][:size], frames[steps % 16])
                and np.array_equal(episode["observation/joints"][:size],
                                   np.stack([steps, steps / 2, -steps], axis=1))
                and list(episode["observation/note"][:size]) == [f"n{i}" for i in steps]
            )
        answer["open"] = "exact" if exact else "rows differ"
        answer["size"] = size
    except ReadError as error:
        answer["open"] = "needs recover" if "h5recorder recover" in str(error) else repr(error)
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        code = cli(["inspect", "--check", path])
    answer["inspect"] = [code, "h5recorder recover" in said.getvalue()]
    print(json.dumps(answer), flush=True)
"""


class ReaderProbe:
    """A child process that opens each state it is given with ``h5recorder.open`` (reading
    every row below ``size``) and ``inspect --check``; a state it does not answer within
    ``timeout`` seconds hung a reader (the child is then replaced)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.slowest = 0.0
        self._child: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-c", PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        return self._child

    def read(self, path: Path) -> dict:
        child = self._start()
        assert child.stdin is not None and child.stdout is not None
        started = time.monotonic()
        child.stdin.write(f"{path}\n")
        child.stdin.flush()
        ready, _, _ = select.select([child.stdout], [], [], self.timeout)
        line = child.stdout.readline() if ready else ""
        self.slowest = max(self.slowest, time.monotonic() - started)
        if not line:
            self.close()
            return {"hung": not ready, "died": bool(ready)}
        return json.loads(line)

    def close(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.wait()
            for pipe in (self._child.stdin, self._child.stdout):
                if pipe is not None:
                    pipe.close()
            self._child = None


def read_log(path: Path) -> list[tuple[bytes, int, bytes]]:
    raw = path.read_bytes()
    calls, at = [], 0
    while at < len(raw):
        kind = raw[at : at + 1]
        offset, length = struct.unpack_from("<qq", raw, at + 1)
        at += 17
        calls.append((kind, offset, raw[at : at + length]))
        at += length
    return calls


def rows_exact(path: Path, frames: np.ndarray) -> int:
    """Open ``path`` as it is, check every row below ``size``; return ``size``."""
    with h5py.File(path, "r", locking=False) as file:
        size = int(file.attrs["size"])
        images = file["observation/image"][:size]
        joints = file["observation/joints"][:size]
        notes = file["observation/note"][:size]
    steps = np.arange(size)
    if not np.array_equal(images, frames[steps % FRAMES]):
        raise AssertionError("image rows below size differ from what was recorded")
    if not np.array_equal(joints, np.stack([steps, steps / 2, -steps], axis=1)):
        raise AssertionError("joint rows below size differ from what was recorded")
    if [note.decode() for note in notes] != [f"n{i}" for i in steps]:
        raise AssertionError("note rows below size differ from what was recorded")
    return size


def recovered(state: Path, mended: Path, frames: np.ndarray) -> int:
    """Run ``recover`` on a copy of ``state``; check it; return its ``size``."""
    return recovered_report(state, mended, frames)[0]


def recovered_report(state: Path, mended: Path, frames: np.ndarray) -> tuple[int, bool]:
    """Run ``recover`` on a copy of ``state``; check it; return its ``size`` and whether it
    rolled an interrupted commit back from the journal."""
    shutil.copyfile(state, mended)
    report = recover(mended)
    size = rows_exact(mended, frames)
    with h5py.File(mended, "r", locking=False) as file:
        lengths = {name: file[name].shape[0] for name in LEAVES}
    assert set(lengths.values()) == {size}, f"recover left {lengths} rows for size {size}"
    return size, report.rolled_back > 0


LEAVES = ("observation/image", "observation/joints", "observation/note")


def apply(state: bytearray, kind: bytes, offset: int, data: bytes) -> None:
    if kind == b"w":
        if len(state) < offset + len(data):
            state.extend(bytes(offset + len(data) - len(state)))
        state[offset : offset + len(data)] = data
    elif kind == b"t":
        del state[offset:]
        state.extend(bytes(offset - len(state)))


def replay_kill(log: Path, work: Path, frames: np.ndarray) -> dict[str, int]:
    """Check the kill-model state after every logged call; return counts by outcome.

    Every state is also recovered (on a copy): ``recover`` must keep a state that opens as
    it is at its ``size``, and trim every dataset to exactly ``size`` rows.
    """
    calls = read_log(log)
    state, mended = work / "state.h5", work / "mended.h5"
    state.write_bytes(b"")
    counts = {"as it is": 0, "after recover": 0}
    committed = 0  # the largest size an earlier state held
    with open(state, "r+b") as out:
        for cut, (kind, offset, data) in enumerate(calls, 1):
            if kind == b"w":
                out.seek(offset)
                out.write(data)
            elif kind == b"t":
                out.truncate(offset)
            out.flush()
            where = f"crash after call {cut} of {len(calls)} ({kind.decode()} at {offset})"
            try:
                size: int | None = rows_exact(state, frames)
            except Exception as error:  # noqa: BLE001 - the reason goes into the failure
                size, as_is = None, error
            try:
                size_recovered, rolled_back = recovered_report(state, mended, frames)
            except Exception as error:
                reason = "opens as it is" if size is not None else f"as it is: {as_is!r}"
                raise AssertionError(f"{where}: {reason}; after recover: {error!r}") from error
            if size is None:
                counts["after recover"] += 1
            else:
                counts["as it is"] += 1
                # a journal still in place means the commit in flight was not finished:
                # recover undoes it (durability="power"); otherwise it keeps the size
                assert rolled_back or size_recovered == size, (
                    f"{where}: recover changed size {size} of a file that opens as it is "
                    f"to {size_recovered}"
                )
            assert size_recovered >= committed, (
                f"{where}: size {size_recovered} is below {committed}, which an earlier state "
                "already held"
            )
            committed = size_recovered
    counts["crash points"] = len(calls)
    counts["final size"] = committed
    return counts


def replay_power(
    log: Path, work: Path, frames: np.ndarray, keep: float, probe: ReaderProbe | None = None
) -> dict[str, int]:
    """Check the power-model state after every logged call (after ``recover``; as it is,
    with ``probe``'s readers, when one is given).

    Each state keeps every call before the last fsync and, of the calls after it, each 4 KiB
    block of a write (counted from the write's start) and each truncation with probability
    ``keep`` (seeded by the crash point). ``size`` must be at least the size of the state the
    last fsync made durable.
    """
    calls = read_log(log)
    state, mended = work / "state.h5", work / "mended.h5"
    durable = bytearray()
    durable_size = 0
    since: list[tuple[bytes, int, bytes]] = []  # calls after the last fsync
    syncs = 0
    readers = {"exact": 0, "needs recover": 0}
    for cut, (kind, offset, data) in enumerate(calls, 1):
        if kind == b"s":
            for call in since:
                apply(durable, *call)
            since = []
            syncs += 1
            state.write_bytes(durable)
            durable_size = recovered(state, mended, frames)
        else:
            since.append((kind, offset, data))
        if not syncs:  # the placed file's own bytes, logged before their fsync
            continue
        chance = random.Random(cut)
        crashed = bytearray(durable)
        for kind_after, offset_after, data_after in since:
            if kind_after == b"t":
                if chance.random() < keep:
                    apply(crashed, kind_after, offset_after, b"")
                continue
            if len(crashed) < offset_after + len(data_after):
                crashed.extend(bytes(offset_after + len(data_after) - len(crashed)))
            for block in range(0, len(data_after), 4096):
                if chance.random() < keep:
                    piece = data_after[block : block + 4096]
                    crashed[offset_after + block : offset_after + block + len(piece)] = piece
        state.write_bytes(crashed)
        where = f"power cut after call {cut} of {len(calls)} ({kind.decode()} at {offset})"
        if probe is not None:
            answer = probe.read(state)
            assert answer.get("open") in ("exact", "needs recover"), f"{where}: {answer}"
            code, names_recover = answer["inspect"]
            if answer["open"] == "exact":  # 1: it reads, but was not closed (a crash)
                assert code in (0, 1), f"{where}: opens exact, but inspect --check: {answer}"
            else:
                assert code == 2 and names_recover, f"{where}: inspect --check: {answer}"
            readers[answer["open"]] += 1
        try:
            size = recovered(state, mended, frames)
        except Exception as error:
            raise AssertionError(f"{where}: after recover: {error!r}") from error
        assert size >= durable_size, (
            f"{where}: size {size} after recover is below {durable_size}, which the last "
            "fsync made durable"
        )
    return {"crash points": len(calls), "fsyncs": syncs, "final size": durable_size, **readers}


@pytest.fixture(scope="module")
def replay_frames() -> np.ndarray:
    return photo_frames(FRAMES, 48, 64, seed=SEED)


def test_every_crash_point_of_a_short_recording_opens_with_exact_rows(tmp_path, replay_frames):
    log = record_logged(tmp_path, 400, rate=1000, interval=0.03, frames=False, durability="process")
    counts = replay_kill(log, tmp_path, replay_frames)
    assert counts["final size"] == 400
    assert counts["crash points"] > 100, counts  # commits, not just creation and close


def test_every_power_cut_of_a_short_durable_recording_recovers_to_the_last_commit(
    tmp_path, replay_frames
):
    log = record_logged(tmp_path, 300, rate=1000, interval=0.05, frames=False, durability="power")
    probe = ReaderProbe(timeout=PROBE_SECONDS)
    try:
        counts = replay_power(log, tmp_path, replay_frames, keep=0.5, probe=probe)
    finally:
        probe.close()
    print(f"power cuts: {counts}; slowest reader answer {probe.slowest:.2f} s")
    assert counts["final size"] == 300
    assert counts["exact"] > 0 and counts["needs recover"] > 0, counts
    assert counts["fsyncs"] > 10, counts


def test_every_crash_point_of_compressible_frames_opens_with_exact_rows(tmp_path):
    # compressed chunks: a full chunk replaces its raw copy at a new place in the file, so
    # the index on disk must keep pointing at the raw copy until the commit
    frames = render_frames(FRAMES, 48, 64, seed=SEED)
    log = record_logged(
        tmp_path, 400, rate=1000, interval=0.03, frames=False, durability="process",
        kind="render",
    )
    counts = replay_kill(log, tmp_path, frames)
    assert counts["final size"] == 400
    assert counts["crash points"] > 100, counts


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["process", "power"])
def test_every_crash_point_of_seconds_of_frames_opens_with_exact_rows(
    tmp_path, replay_frames, durability
):
    log = record_logged(tmp_path, 2000, rate=500, interval=0.1, frames=True, durability=durability)
    counts = replay_kill(log, tmp_path, replay_frames)
    assert counts["final size"] == 2000
    assert counts["crash points"] > 400, counts


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_every_power_cut_of_seconds_of_frames_recovers_to_the_last_commit(
    tmp_path, replay_frames, keep
):
    log = record_logged(tmp_path, 2000, rate=500, interval=0.1, frames=True, durability="power")
    probe = ReaderProbe(timeout=PROBE_SECONDS)
    try:
        counts = replay_power(log, tmp_path, replay_frames, keep=keep, probe=probe)
    finally:
        probe.close()
    print(f"power cuts (keep {keep}): {counts}; slowest reader answer {probe.slowest:.2f} s")
    assert counts["final size"] == 2000
    assert counts["fsyncs"] > 40, counts
