"""Reading a file while it is being recorded: in this process (read-your-writes)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import Recorder, read_live
from h5recorder._format.live import SOCKET_SUFFIX
from h5recorder.errors import LiveError

SPACE = spaces.Dict(
    {
        "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
        "step": spaces.Box(0, 10**9, (), np.int64),
        "joints": spaces.Box(-1, 1, (7,), np.float32),
        "instruction": spaces.Text(30),
    }
)


def _step(frames: np.ndarray, index: int) -> dict:
    rng = np.random.default_rng(index)
    return {
        "image": frames[index % len(frames)],
        "step": index,
        "joints": rng.uniform(-1, 1, 7).astype(np.float32),
        "instruction": f"step {index}",
    }


def _check_rows(file: h5py.File, frames: np.ndarray, at_least: int) -> int:
    """Every row below ``size`` is what was recorded; ``size`` covers ``at_least`` steps."""
    size = int(file.attrs["size"])
    assert size >= at_least, f"size {size}, but {at_least} steps were recorded before the open"
    steps = file["observation/step"][:size]
    assert steps.tolist() == list(range(size))
    if size:
        last = size - 1
        np.testing.assert_array_equal(file["observation/image"][last], frames[last % len(frames)])
        joints = _step(frames, last)["joints"]
        np.testing.assert_array_equal(file["observation/joints"][last], joints)
        assert file["observation/instruction"][last].decode() == f"step {last}"
    return size


def test_h5py_and_recorder_file_see_every_step_record_returned_for(tmp_path, frames):
    with Recorder("ryw", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        with h5py.File(recorder.filename, "r") as file:
            assert int(file.attrs["size"]) == 0
        for index in range(40):
            recorder.record(observation=_step(frames, index))
            if index % 3 == 0:
                with h5py.File(recorder.filename, "r") as file:
                    assert _check_rows(file, frames, index + 1) == index + 1
            else:
                assert _check_rows(recorder.file, frames, index + 1) == index + 1
        recorder.record(observation=_step(frames, 40))
        recorder.flush()
        assert recorder.status().rows_committed == 41
    with h5py.File(recorder.filename, "r") as file:
        assert _check_rows(file, frames, 41) == 41


_WRAP_SCRIPT = textwrap.dedent("""
    import sys
    import h5py
    original = h5py.File.__init__
    import h5recorder
    from gymnasium import spaces
    import numpy as np
    seen = {"imported": h5py.File.__init__ is original}
    space = spaces.Dict({"x": spaces.Box(-1, 1, (3,), np.float32)})
    first = h5recorder.Recorder("a", out_dir=sys.argv[1], observation_space=space)
    seen["one open"] = h5py.File.__init__ is original
    second = h5recorder.Recorder("b", out_dir=sys.argv[1], observation_space=space)
    first.record({"x": np.zeros(3, np.float32)})
    first.close()
    seen["one of two closed"] = h5py.File.__init__ is original
    second.reset()
    seen["after reset"] = h5py.File.__init__ is original
    second.close()
    seen["both closed"] = h5py.File.__init__ is original
    with h5recorder.Recorder("c", out_dir=sys.argv[1], observation_space=space):
        seen["third open"] = h5py.File.__init__ is original
    seen["third closed"] = h5py.File.__init__ is original
    print(seen)
""")


def test_h5py_file_is_wrapped_only_while_a_recorder_is_open(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _WRAP_SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(
        {
            "imported": True,
            "one open": False,
            "one of two closed": False,
            "after reset": False,
            "both closed": True,
            "third open": False,
            "third closed": True,
        }
    )


def test_reads_interleaved_with_recording_at_full_rate(tmp_path, frames):
    """A reader thread opens the file in a loop while the main thread records flat out:
    every open sees at least the steps recorded before it, rows exact, nothing hangs."""
    returned = [0]
    failures: list[BaseException] = []
    reads = [0]
    stop = threading.Event()

    def reader(path: str) -> None:
        try:
            while not stop.is_set():
                before = returned[0]
                with h5py.File(path, "r") as file:
                    _check_rows(file, frames, before)
                reads[0] += 1
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    # A small ring: each open waits for the writer to drain what is queued, and a writer
    # kept saturated by a flat-out loop has a full ring to drain.
    # No PNG frames: a flat-out loop would leave close() tens of seconds of them to encode.
    with Recorder(
        "interleaved", out_dir=str(tmp_path), observation_space=SPACE, buffer_bytes=4 << 20,
        image_keys_to_save=[],
    ) as recorder:  # fmt: skip
        thread = threading.Thread(target=reader, args=(str(recorder.filename),))
        thread.start()
        started = time.perf_counter()
        index = 0
        while reads[0] < 100 and time.perf_counter() - started < 5:
            recorder.record(observation=_step(frames, index))
            index += 1
            returned[0] = index
            if failures:
                break
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the reader hung"
    assert not failures, repr(failures[0])
    assert reads[0] >= 20
    with h5py.File(recorder.filename, "r") as file:
        assert _check_rows(file, frames, index) == index


def test_opening_inside_an_h5py_callback_does_not_hang(tmp_path, frames):
    """Inside ``visititems`` this thread holds h5py's lock, which the writer needs to commit:
    the open goes ahead without a commit instead of waiting forever."""
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.create_dataset("x", data=np.arange(3))
    with Recorder("callback", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        recorder.record(observation=_step(frames, 0))
        opened = []

        def visit(name: str, obj: object) -> None:
            with h5py.File(recorder.filename, "r") as file:
                opened.append(int(file.attrs["size"]))

        with h5py.File(other, "r") as file:
            file.visititems(visit)
        assert len(opened) == 1


# -- other processes ----------------------------------------------------------------------

_READER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from h5recorder import read_live
    from h5recorder.workloads import photo_frames

    path, out, wanted, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    frames = photo_frames(24, 48, 64, seed=3)
    report = {"reads": 0, "errors": [], "torn": [], "sizes": []}
    rng = np.random.default_rng(0)

    def check(file):
        size = int(file.attrs["size"])
        time.sleep(0.02)  # a slow reader: the recorder commits every 0.05 s meanwhile
        steps = file["observation/step"][:size]
        bad = []
        if steps.tolist() != list(range(size)):
            bad.append(f"step column at size {size}")
        for row in {size - 1, int(rng.integers(0, size))} if size else ():
            if not np.array_equal(file["observation/image"][row], frames[row % 24]):
                bad.append(f"image row {row} at size {size}")
        return size, bad

    while report["reads"] < wanted and not __import__("os").path.exists(stop):
        try:
            size, bad = read_live(path, check)
            report["sizes"].append(size)
            report["torn"] += bad
        except Exception as error:
            report["errors"].append(repr(error))
        report["reads"] += 1
    with open(out, "w") as file:
        json.dump(report, file)
""")


def _paced(recorder: Recorder, frames: np.ndarray, start: int, count: int, rate: float) -> list:
    """Record ``count`` steps at ``rate`` steps/s; return each record() time in us."""
    took = []
    period = 1.0 / rate
    began = time.perf_counter()
    for index in range(start, start + count):
        due = began + (index - start) * period
        while time.perf_counter() < due:
            time.sleep(max(0.0, due - time.perf_counter() - 0.0005))
        step = {"image": frames[index % len(frames)], "step": index,
                "joints": np.zeros(7, np.float32), "instruction": f"step {index}"}
        t0 = time.perf_counter_ns()
        recorder.record(observation=step)
        took.append((time.perf_counter_ns() - t0) / 1000)
    return took


@pytest.mark.parametrize(
    "reads", [pytest.param(100, id="100-reads"), pytest.param(1000, marks=pytest.mark.slow,
                                                              id="1000-reads")]
)
def test_a_reader_process_gets_consistent_snapshots_while_recording_at_500_hz(
    tmp_path, frames, reads
):
    """Another process reads in a loop (``read_live``) while steps with PNG frames arrive at
    500 Hz: every snapshot holds exactly the recorded rows below ``size``, no read fails,
    ``record()`` never waits; its p99 with and without the reader is printed side by side."""
    out, stop = tmp_path / "reader.json", tmp_path / "stop"
    with Recorder(
        "live", out_dir=str(tmp_path), observation_space=SPACE, commit_interval=0.05
    ) as recorder:
        alone = _paced(recorder, frames, 0, 1000, 500.0)
        reader = subprocess.Popen(
            [sys.executable, "-c", _READER, str(recorder.filename), str(out), str(reads),
             str(stop)],
        )
        together: list = []
        index = 1000
        while reader.poll() is None and index < 1000 + 500 * 600:
            together += _paced(recorder, frames, index, 250, 500.0)
            index += 250
        stop.touch()
        assert reader.wait(60) == 0
        assert recorder.status().waits == 0 and recorder.status().drops == 0
    report = json.loads(out.read_text())
    assert report["errors"] == []
    assert report["torn"] == []
    assert report["reads"] >= reads
    assert report["sizes"] == sorted(report["sizes"]) and report["sizes"][-1] > 1000
    p99 = {name: float(np.percentile(took, 99)) for name, took in
           (("alone", alone), ("with reader", together))}
    print(f"record() p99 us at 500 Hz: {p99}; {report['reads']} snapshots")


_PLAIN_READER = textwrap.dedent("""
    import json, os, sys
    import h5py, hdf5plugin
    path, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    report = {"reads": 0, "errors": [], "other": [], "torn": 0}
    while not os.path.exists(stop):
        try:
            with h5py.File(path, "r") as file:
                size = int(file.attrs["size"])
                if file["observation/step"][:size].tolist() != list(range(size)):
                    report["torn"] += 1
            report["reads"] += 1
        except OSError as error:  # what HDF5 raises on a file caught mid-commit
            report["errors"].append(str(error)[:200])
        except KeyError as error:  # h5py's form of it when the caught object is a dataset
            retry = "Unable to synchronously open object" in str(error)
            report["errors" if retry else "other"].append(repr(error)[:200])
        except Exception as error:
            report["other"].append(repr(error)[:200])
    with open(out, "w") as file:
        json.dump(report, file)
""")


def test_a_plain_h5py_reader_in_another_process_never_harms_the_recording(tmp_path, frames):
    """Without ``read_live``, another process opening the file with plain h5py in a loop
    (no file lock stops it) reads, or gets an ``OSError`` it can retry (a ``KeyError`` from
    h5py when the object it opens is caught mid-commit); nothing else, no crash, and the
    recording loses nothing and records on at its rate."""
    out, stop = tmp_path / "plain.json", tmp_path / "stop"
    with Recorder(
        "plain", out_dir=str(tmp_path), observation_space=SPACE, image_keys_to_save=[],
        commit_interval=0.02,
    ) as recorder:  # fmt: skip
        _paced(recorder, frames, 0, 200, 1000.0)
        reader = subprocess.Popen(
            [sys.executable, "-c", _PLAIN_READER, str(recorder.filename), str(out), str(stop)]
        )
        _paced(recorder, frames, 200, 2500, 1000.0)
        stop.touch()
        assert reader.wait(60) == 0
        assert recorder.status().waits == 0 and recorder.status().drops == 0
    report = json.loads(out.read_text())
    print(f"plain reader: {report['reads']} reads, {len(report['errors'])} retriable errors, "
          f"{report['torn']} torn, first errors {report['errors'][:2]}")  # fmt: skip
    assert report["other"] == []
    assert report["reads"] > 10
    with h5py.File(recorder.filename, "r") as file:
        assert int(file.attrs["size"]) == 2700
        assert file["observation/step"][:2700].tolist() == list(range(2700))
        for row in (0, 1234, 2699):
            np.testing.assert_array_equal(file["observation/image"][row], frames[row % len(frames)])
            assert file["observation/instruction"][row].decode() == f"step {row}"


def test_live_command_prints_a_summary_while_recording_and_at_the_end(tmp_path, frames):
    with Recorder("cli", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        _paced(recorder, frames, 0, 200, 500.0)
        command = subprocess.Popen(
            [sys.executable, "-m", "h5recorder._tools.cli", "live", str(recorder.filename),
             "--every", "0.2", "--count", "3"],
            stdout=subprocess.PIPE, text=True,
        )
        index = 200
        while command.poll() is None and index < 500 * 120:
            _paced(recorder, frames, index, 50, 500.0)
            index += 50
        lines = command.communicate(timeout=60)[0].splitlines()
    assert command.returncode == 0
    steps = [int(line.split("steps ")[1].split()[0].replace(",", "")) for line in lines]
    assert len(steps) == 3 and 200 <= steps[0] <= steps[1] <= steps[2] <= index
    assert all("ring" in line and "frames" in line and "last commit" in line for line in lines)
    done = subprocess.run(
        [sys.executable, "-m", "h5recorder._tools.cli", "live", str(recorder.filename)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert f"steps {index:,}" in done.stdout and "(not recording)" in done.stdout


# -- other local users ------------------------------------------------------------------------

_SNAPSHOT = "import sys; from h5recorder import read_live; print(read_live(sys.argv[1])['size'])"

NOT_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


@pytest.fixture
def temp_dir(monkeypatch):
    """The folder ``tempfile`` gives this process, where the live sockets go (a short path:
    a socket's is at most 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="h5t", dir="/tmp"))
    folder.chmod(0o755)  # as /tmp is to other users, less the sticky bit
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder)


def _record_and_read_live(tmp_path, frames, name: str) -> Recorder:
    with Recorder(name, out_dir=str(tmp_path), observation_space=SPACE,
                  image_keys_to_save=[]) as recorder:
        for index in range(5):
            recorder.record(observation=_step(frames, index))
        assert recorder._live is not None
        snapshot = subprocess.run(
            [sys.executable, "-c", _SNAPSHOT, str(recorder.filename)],
            capture_output=True, text=True, timeout=60, check=True,
        )
        assert int(snapshot.stdout) == 5
    return recorder


def _another_users_folder(folder):
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    folder.chmod(0o777)


@pytest.mark.parametrize("planted", [
    pytest.param("another user's", marks=NOT_ROOT), "symlink", "plain file", "loose mode",
])
def test_a_socket_folder_made_by_someone_else_is_not_used(tmp_path, frames, temp_dir, planted):
    """Anyone can make ``<tmp>/h5recorder-live-<uid>`` first."""
    shared = temp_dir / f"h5recorder-live-{os.getuid()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    if planted == "another user's":
        _another_users_folder(shared)
    elif planted == "symlink":
        shared.symlink_to(elsewhere)
    elif planted == "plain file":
        shared.write_text("")
    else:
        shared.mkdir()
        shared.chmod(0o777)
    live = []

    class Spy(Recorder):
        def _start(self):
            super()._start()
            live.append(self._live)

    _record_and_read_live(tmp_path, frames, "planted")
    with Spy("spy", out_dir=str(tmp_path), observation_space=SPACE, image_keys_to_save=[]):
        folder = Path(live[0].address).parent
        assert folder.parent == temp_dir and folder != shared
        info = os.lstat(folder)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
    assert not folder.exists(), "a folder of its own is removed at close"
    assert list(elsewhere.iterdir()) == []
    if shared.is_dir() and not shared.is_symlink():
        assert list(shared.iterdir()) == []


def test_a_live_socket_that_cannot_start_leaves_the_recorder_working(tmp_path, frames, temp_dir,
                                                                     monkeypatch):
    """A socket's path is at most 107 bytes: a long temp folder refuses it."""
    long = temp_dir / ("x" * 120)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    with pytest.warns(RuntimeWarning, match="live socket did not start"):
        recorder = Recorder("nolive", out_dir=str(tmp_path), observation_space=SPACE,
                            image_keys_to_save=[])
    with recorder:
        assert recorder._live is None
        for index in range(5):
            recorder.record(observation=_step(frames, index))
        assert not [t for t in threading.enumerate() if t.name == "h5recorder-live"]
        assert not Path(f"{recorder.filename}.live").exists()
    with h5py.File(recorder.filename, "r") as file:
        assert _check_rows(file, frames, 5) == 5
    assert int(read_live(recorder.filename)["size"]) == 5


def test_sockets_of_killed_recorders_are_swept(tmp_path, frames, temp_dir):
    folder = temp_dir / f"h5recorder-live-{os.getuid()}"
    folder.mkdir(mode=0o700)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60, check=True)
    left = []
    for pid in (int(dead.stdout), os.getpid()):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(folder / f"{pid}-7f00{SOCKET_SUFFIX}"))
        left.append(folder / f"{pid}-7f00{SOCKET_SUFFIX}")
    _record_and_read_live(tmp_path, frames, "sweep")
    assert not left[0].exists(), "the socket of a recorder that is gone is swept"
    assert left[1].exists(), "a socket of a process that lives is left alone"


_SILENT_SERVER = textwrap.dedent("""
    import os, socket, sys, time
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sys.argv[1])
    os.setgid(65534)
    os.setuid(65534)
    server.listen(1)  # its peers see the credentials of this moment
    print("ready", flush=True)
    time.sleep(120)  # never answers: a reader that trusted it would wait
""")


@NOT_ROOT
@pytest.mark.parametrize("check", ["socket file owner", "peer uid"])
def test_read_live_refuses_a_socket_of_another_user_at_once(tmp_path, check):
    target = tmp_path / "victim.h5"
    address = str(tmp_path / "theirs.sock")
    server = subprocess.Popen([sys.executable, "-c", _SILENT_SERVER, address],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        if check == "socket file owner":
            os.chown(address, 65534, 65534)
        Path(f"{target}.live").write_text(json.dumps({"pid": server.pid, "socket": address}))
        started = time.monotonic()
        with pytest.raises(LiveError, match="uid 65534"):
            read_live(target)
        assert time.monotonic() - started < 2
    finally:
        server.kill()
        server.communicate()


def test_read_live_refuses_a_sidecar_naming_something_other_than_a_socket(tmp_path):
    target = tmp_path / "victim.h5"
    planted = tmp_path / "not-a-socket"
    planted.write_text("")
    Path(f"{target}.live").write_text(json.dumps({"pid": os.getpid(), "socket": str(planted)}))
    with pytest.raises(LiveError, match="not a socket of this user"):
        read_live(target)


def test_a_symlink_planted_at_the_sidecar_is_replaced_not_written_through(tmp_path, frames):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "planted.h5.live").symlink_to(victim)
    with Recorder("planted", out_dir=str(tmp_path), observation_space=SPACE,
                  image_keys_to_save=[]) as recorder:
        recorder.record(observation=_step(frames, 0))
        sidecar = Path(f"{recorder.filename}.live")
        assert not sidecar.is_symlink()
        assert json.loads(sidecar.read_text())["pid"] == os.getpid()
    assert victim.read_text() == "keep me"
    assert not sidecar.exists() and not sidecar.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planted.h5", "planted_frames",
                                                          "victim.txt"]
