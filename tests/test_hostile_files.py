"""Files made to hurt the reader, ``inspect``, ``stats`` and ``recover``: each one a valid small
recording with one thing changed, as a file someone else made could be.

Each reader and ``recover`` must refuse with the project's error (naming what is wrong) within
2 s, allocate no more than a small multiple of the file's size, and ``recover`` must leave a
file it refuses byte for byte as it was. The checks run in one child process (a case that
allocates gigabytes or loops for ever must not take the test runner with it), which reports,
for every case and operation, the outcome, the seconds and the growth of its peak memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder._format.head import ENTRY, HEADER, MAGIC
from h5recorder._write.journal import JOURNAL_BYTES

STEPS = 300
SECONDS = 2.0  # the most any operation may take on a hostile file
SLACK = 48 << 20  # peak memory any operation may add beyond a multiple of the file's size
PER_FILE_BYTE = 4  # ... and that multiple

CHILD = r"""
import hashlib, json, resource, signal, sys, time, io, contextlib
import numpy as np
import h5recorder
from h5recorder import RecorderError
from h5recorder._tools.cli import main
from h5recorder._tools.inspect import summarize
from h5recorder._write.recover import recover

def read_everything(path):
    with h5recorder.open(path) as episode:
        for name in episode.keys():
            np.asarray(episode[name])
        for _ in episode:
            pass
        episode.health, episode.frames, episode.stats
        if episode.time is not None:
            episode.time.seconds()

def inspect(path):
    with h5recorder.open(path) as episode:
        summarize(episode)

def cli(*args):
    def run(path):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return main([args[0], path, *args[1:]])
    return run

OPS = {"open": read_everything, "inspect": inspect, "stats": h5recorder.dataset,
       "recover": recover, "cli inspect": cli("inspect"),
       "cli stats": cli("stats", "--json", sys.argv[1]), "cli recover": cli("recover")}

class Overtime(Exception):
    pass

def alarm(*_):
    raise Overtime()

signal.signal(signal.SIGALRM, alarm)

def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()

for line in sys.stdin:
    case, path = json.loads(line)
    for op, run in OPS.items():
        before = digest(path)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        signal.alarm(20)
        try:
            value = run(path)
            outcome, message = "returned", repr(value)[:200]
        except Overtime:
            outcome, message = "overtime", "ran past 20 s"
        except BaseException as error:
            outcome, message = type(error).__name__, str(error)[:400]
            if not isinstance(error, RecorderError):
                outcome += " (not the project's)"
        finally:
            signal.alarm(0)
        seconds = time.perf_counter() - start
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) * 1024
        print(json.dumps({"case": case, "op": op, "outcome": outcome, "message": message,
                          "seconds": seconds, "grown": grown,
                          "unchanged": digest(path) == before}), flush=True)
"""


def _record(path: Path) -> Path:
    space = spaces.Dict(
        {
            "joints": spaces.Box(-np.inf, np.inf, (3,), np.float64),
            "image": spaces.Box(0, 255, (8, 8, 3), np.uint8),
        }
    )
    with Recorder(
        "base",
        out_dir=str(path),
        observation_space=space,
        action_space=spaces.Discrete(4),
        image_keys_to_save=[],
        durability="power",
    ) as recorder:
        for i in range(STEPS):
            recorder.record(
                observation={"joints": np.array([i, -i, i / 2]),
                             "image": np.full((8, 8, 3), i % 256, np.uint8)},
                action=i % 4,
            )
    return recorder.filename


# -- the mutations: each takes a copy of the base recording (open with h5py, r+) -------------


def _space_shape(shape: list[Any]) -> Callable[[h5py.File, Path], None]:
    def mutate(file: h5py.File, _: Path) -> None:
        description = json.loads(file["observation"].attrs["recorder_space"])
        description["spaces"]["joints"]["shape"] = shape
        file["observation"].attrs["recorder_space"] = json.dumps(description)

    return mutate


def _legacy_shape(file: h5py.File, _: Path) -> None:
    for node in (file["observation"], file["observation/joints"], file["observation/image"]):
        del node.attrs["recorder_space"]
    file["observation/joints"].attrs["shape"] = np.array([1 << 27])


def _size(value: Any) -> Callable[[h5py.File, Path], None]:
    def mutate(file: h5py.File, _: Path) -> None:
        file.attrs["size"] = value

    return mutate


def _huge(file: h5py.File, _: Path) -> None:
    datasets: list[h5py.Dataset] = []
    file.visititems(lambda _, node: datasets.append(node)
                    if isinstance(node, h5py.Dataset) else None)
    for dataset in datasets:
        if dataset.maxshape[0] is None:
            dataset.resize(1 << 60, axis=0)
    group = file[file.attrs["recorder_time"]]
    for name in ("monotonic_ns", "wall_ns"):
        group[name].resize(1 << 60, axis=0)
    file.attrs["size"] = 1 << 60


def _attribute(name: str, text: str, where: str = "/") -> Callable[[h5py.File, Path], None]:
    def mutate(file: h5py.File, _: Path) -> None:
        file[where].attrs[name] = text

    return mutate


def _soft_loop(file: h5py.File, _: Path) -> None:
    file["observation/loop"] = h5py.SoftLink("/observation")


def _external(file: h5py.File, folder: Path) -> None:
    secret = folder / "secret.bin"
    secret.write_bytes(b"secret!\n" * 4096)
    old = file["observation/joints"]
    attrs = dict(old.attrs)
    shape = old.shape
    del file["observation/joints"]
    new = file["observation"].create_dataset(
        "joints", shape, np.float64, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]
    )
    for key, value in attrs.items():
        new.attrs[key] = value


def _virtual(file: h5py.File, _: Path) -> None:
    old = file["observation/joints"]
    attrs = dict(old.attrs)
    file["observation"].move("joints", "hidden")
    layout = h5py.VirtualLayout(shape=old.shape, dtype=np.float64)
    layout[:] = h5py.VirtualSource(file["observation/hidden"])
    file["observation"].create_virtual_dataset("joints", layout)
    for key, value in attrs.items():
        file["observation/joints"].attrs[key] = value


def _frames(keys: list[str]) -> Callable[[h5py.File, Path], None]:
    return _attribute("recorder_frames", json.dumps({"keys": keys, "folders": [],
                                                     "deferred": 0, "missing": []}))


def _journal(length: int | None, entry_offset: int | None) -> Callable[[Path], None]:
    """A journal whose checksum holds, restoring the file to ``length`` bytes (None: its
    length) with one entry at ``entry_offset`` (None: the superblock's 8 first bytes)."""

    def mutate(path: Path) -> None:
        with open(path, "r+b") as file:
            offset = JOURNAL_BYTES if entry_offset is None else entry_offset
            file.seek(JOURNAL_BYTES)
            old = file.read(8)
            payload = ENTRY.pack(offset, len(old)) + old
            durable = os.path.getsize(path) if length is None else length
            file.seek(0)
            file.write(HEADER.pack(MAGIC, durable, len(payload), zlib.crc32(payload)) + payload)

    return mutate


DEEP = "[" * 100_000 + "]" * 100_000
HUGE_JSON = "[" + "0," * (20 << 20) + "0]"  # 40 MB of JSON, 20 million numbers

# name: (mutation of the HDF5 content or, for journals, of the bytes, words the message holds)
CASES: dict[str, tuple[Callable[..., None], str, bool]] = {
    "space shape 2**27": (_space_shape([1 << 27]), "shape", True),
    "space shape 1e5 x 1e5": (_space_shape([1e5, 1e5]), "shape", True),
    "legacy shape 2**27": (_legacy_shape, "shape", True),
    "size 2**60 on 2**60 rows": (_huge, "rows", True),
    "size negative": (_size(-5), "size", True),
    "size not an integer": (_size(2.5), "size", True),
    "size text": (_size("many"), "size", True),
    "deep JSON status": (_attribute("recorder_status", DEEP), "deep", True),
    "deep JSON space": (
        _attribute("recorder_space", '{"type": "Dict", "spaces": {"a": ' * 5000 + "1"
                   + "}}" * 5000, "/observation"), "deep", True),
    "soft link loop": (_soft_loop, "SoftLink", True),
    "status a list": (_attribute("recorder_status", "[1, 2, 3]"), "list", True),
    "status counter a list": (_attribute("recorder_status", '{"drops": [1]}'), "drops", True),
    "external storage": (_external, "external", True),
    "virtual dataset": (_virtual, "virtual", True),
    "frame key ../../": (_frames(["../../etc"]), "../../etc", True),
    "frame keys ../../ among two": (_frames(["observation/image", "../../x"]), "../../x", True),
    "40 MB JSON attribute": (_attribute("recorder_options", HUGE_JSON), "at most", True),
    # readers look at the journal before HDF5 reads anything (``check_at_rest``)
    "journal grows the file to 64 GiB": (_journal(64 << 30, None), "journal", True),
    "journal cuts the file to 28 bytes": (_journal(28, None), "journal", True),
    "journal entry past the end": (_journal(None, 1 << 40), "journal", True),
    "journal entry over itself": (_journal(None, 16), "journal", True),
}
READERS = ("open", "inspect", "stats")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("hostile")
    base = _record(folder / "base")
    lines = []
    for number, (case, (mutate, _, _)) in enumerate(CASES.items()):
        case_dir = folder / f"case{number}"
        case_dir.mkdir()
        path = case_dir / "episode.h5"
        shutil.copy(base, path)
        if case.startswith("journal"):
            mutate(path)
        else:
            with h5py.File(path, "r+") as file:
                mutate(file, case_dir)
        lines.append(json.dumps([case, str(path)]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder / "stats.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:  # under pytest's faulthandler_timeout; the cases not reported by then fail below
        out, _ = child.communicate("\n".join(lines) + "\n", timeout=100)
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
    found: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        row = json.loads(line)
        row["bytes"] = os.path.getsize(json.loads(lines[list(CASES).index(row["case"])])[1])
        found.setdefault(row["case"], {})[row["op"]] = row
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_every_reader_and_recover_refuse_in_time_and_memory(
    outcomes: dict[str, dict[str, Any]], case: str
) -> None:
    _, words, readers_refuse = CASES[case]
    rows = outcomes.get(case, {})
    assert len(rows) == 7, f"{case}: the child reported {sorted(rows)}, then hung or died"
    expected = {"open": "ReadError", "inspect": "ReadError", "stats": "ReadError",
                "recover": "RecoveryError"}
    for op, row in rows.items():
        where = f"{case}: {op}: {row['outcome']} {row['message'][:300]}"
        if op in READERS and not readers_refuse:
            assert row["outcome"] in ("returned", "ReadError"), where
        elif op in expected:
            assert row["outcome"] == expected[op], where
            assert words in row["message"], where
        elif op.startswith("cli") and (readers_refuse or op == "cli recover"):
            assert row["outcome"] == "returned" and row["message"] in ("1", "2"), where
        assert row["seconds"] < SECONDS, where
        assert row["grown"] < PER_FILE_BYTE * row["bytes"] + SLACK, (where, row["grown"])
    assert rows["recover"]["unchanged"] and rows["cli recover"]["unchanged"], case


def test_an_interrupted_commit_is_named_by_every_reader_and_undone_by_recover(tmp_path):
    """A complete journal (what a crash inside a commit leaves, ``durability="power"``): the
    readers say to run recover before HDF5 reads anything; recover rolls it back; then the
    file reads whole."""
    import h5recorder
    from h5recorder._tools.cli import main
    from h5recorder._write.recover import recover

    path = _record(tmp_path / "interrupted")
    _journal(None, None)(path)  # restores the superblock's first bytes as they are
    for read in (h5recorder.open, h5recorder.dataset, h5recorder.read_live):
        with pytest.raises(h5recorder.ReadError, match="last commit was interrupted") as error:
            read(path)
        assert f"h5recorder recover {path}" in str(error.value), read
    assert main(["inspect", "--check", str(path)]) == 2
    assert recover(path).rolled_back == 8
    with h5recorder.open(path) as episode:
        assert len(episode) == STEPS
        np.testing.assert_array_equal(
            episode["observation/joints"][:], np.stack([np.arange(STEPS), -np.arange(STEPS),
                                                        np.arange(STEPS) / 2], axis=1)
        )
