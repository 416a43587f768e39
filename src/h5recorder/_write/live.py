"""Reads while recording: the reader's side of what the writer offers.

In the recording process, any ``h5py.File(path)`` of a file an open recorder is writing first
asks that recorder for a commit (``Recorder.flush``), so the reader sees every step
``record()`` returned for. The reader pays for it (one commit, on the writer thread); the
caller of ``record()`` never does. The hook wraps ``h5py.File.__init__`` only while a recorder
of this process has a file open (from the first :func:`register` to the last
:func:`unregister`); importing h5recorder leaves h5py as it is. For other files it costs one
dictionary lookup.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py._objects import phil

from .._format.attrs import hdf5_errors, walk_datasets
from .._format.heap import HeapCheck
from ..errors import LiveError, ReadError, RecorderError
from .files import replace_file
from .ring import _pid_alive

__all__ = ["LiveServer", "read_live", "register", "unregister"]

# (device, inode) of each file an open recorder of this process writes -> its flush()
_recording: dict[tuple[int, int], Callable[[], None]] = {}
# each registered path -> its identity when registered (the file may move before unregister);
# h5py.File.__init__ is wrapped while this is not empty
_registered: dict[Path, tuple[int, int] | None] = {}
_lock = threading.Lock()


def _identity(path: Any) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


def register(path: Path, flush: Callable[[], None]) -> None:
    """Call ``flush`` (the recorder's) before this process opens ``path`` with h5py."""
    identity = _identity(path)
    with _lock:
        if identity is not None:
            _recording[identity] = flush
        _registered[Path(path)] = identity
        _install()


def unregister(path: Path) -> None:
    """Undo :func:`register` (nothing if ``path`` is not registered); the last one unwraps."""
    with _lock:
        if Path(path) not in _registered:
            return
        identity = _registered.pop(Path(path))
        if identity is not None:
            _recording.pop(identity, None)
        if not _registered:
            _uninstall()


def flush_before_open(name: Any) -> None:
    """Commit the open recorder writing ``name``, if any, so that opening it sees every step."""
    if not _recording or not isinstance(name, str | bytes | os.PathLike):
        return
    flush = _recording.get(_identity(name))  # type: ignore[arg-type]
    # A thread inside an h5py call (a visititems callback, say) holds h5py's lock, which
    # the writer needs to commit: waiting for it there would never end.
    if flush is None or phil._is_owned():
        return
    try:
        flush()
    except RecorderError:
        pass  # the recorder raises its own failure to its caller; this open goes ahead


def _install() -> None:
    """Wrap ``h5py.File.__init__`` (under ``_lock``; nothing if it is wrapped already)."""
    original = h5py.File.__init__
    if getattr(original, "_h5recorder_hook", False):
        return

    @functools.wraps(original)
    def __init__(self: h5py.File, name: Any, *args: Any, **kwargs: Any) -> None:
        if _recording:
            flush_before_open(name)
        original(self, name, *args, **kwargs)

    __init__._h5recorder_hook = True  # type: ignore[attr-defined]
    __init__._h5recorder_original = original  # type: ignore[attr-defined]
    h5py.File.__init__ = __init__


def _uninstall() -> None:
    """Put back what :func:`_install` wrapped (under ``_lock``), unless someone has wrapped
    our wrapper since: taking it out would drop theirs too, and it is idle without recorders."""
    current = h5py.File.__dict__.get("__init__")
    if getattr(current, "_h5recorder_hook", False):
        h5py.File.__init__ = current._h5recorder_original


# -- other processes: a snapshot on request -------------------------------------------------
#
# The recorder listens on a Unix socket named in a sidecar file ``<file>.live`` (JSON: pid,
# socket). A reader connects and sends ``snapshot``; the recorder's writer thread commits (the
# file on disk is then consistent: rows, then ``size``) and stops writing the file until the
# reader sends ``done``, at most ``MAX_PAUSE`` seconds and never past half the ring (record()
# keeps filling the ring meanwhile, it never waits). The recorder then answers ``ok`` if the
# pause held for the whole read, ``expired`` if it had to end it first: the reader then drops
# what it read and asks again.
#
# The socket lies in a folder only this user may enter (``<tmp>/h5recorder-live-<uid>``, mode
# 0700, checked after it is made: another user may have made it first), and a reader talks only
# to a socket of its own user (or root), checked before it asks and, with ``SO_PEERCRED``,
# after it connects: a sidecar names any socket, and anyone can write one where they may write.

MAX_PAUSE = 2.0
SIDECAR_SUFFIX = ".live"
SOCKET_SUFFIX = ".sock"
_TRUSTED_UIDS = frozenset({0, os.getuid()})


def sidecar(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SIDECAR_SUFFIX)


def _is_private(folder: Path) -> bool:
    """Whether ``folder`` is a real folder (not a link) of this user that no one else may enter."""
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) == 0o700
    )


def _socket_folder() -> tuple[Path, bool]:
    """The folder for this user's sockets, and whether it is a fresh one, for one server only.

    The shared folder is used when it is private; when it is not (made by another user first, a
    link, a plain file, loose permissions), a fresh folder with an unpredictable name is.
    """
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"h5recorder-live-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    if _is_private(folder):
        return folder, False
    return Path(tempfile.mkdtemp(prefix=f"{folder.name}-")), True


def _sweep_stale_sockets(folder: Path) -> None:
    """Remove the sockets of recorders that were killed (their pid starts the name)."""
    for entry in folder.glob(f"*{SOCKET_SUFFIX}"):
        try:
            pid = int(entry.name.split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            try:
                entry.unlink()
            except OSError:
                pass


class LiveServer:
    """The recorder's side: answers snapshot requests for one file (a daemon thread)."""

    def __init__(
        self,
        path: Path,
        pause: Callable[[Callable[[], None]], None],
        ring_fill: Callable[[], float],
    ) -> None:
        import json
        import socket

        self.path = Path(path)
        self._pause = pause  # runs a function on the writer thread after a commit
        self._ring_fill = ring_fill  # share of the ring in use
        self._closed = False
        self._thread: threading.Thread | None = None
        self._folder, self._own_folder = _socket_folder()
        self.address = str(self._folder / f"{os.getpid()}-{id(self):x}{SOCKET_SUFFIX}")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _sweep_stale_sockets(self._folder)
            self._socket.bind(self.address)
            self._socket.listen(8)
            info = {"pid": os.getpid(), "socket": self.address, "file": str(self.path.resolve())}
            replace_file(sidecar(self.path), json.dumps(info).encode())
        except BaseException:
            self.close()  # nothing of a server that did not start is left behind
            raise
        self._thread = threading.Thread(target=self._serve, name="h5recorder-live", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                try:
                    self._answer(connection)
                except (OSError, RecorderError):
                    continue  # a reader that went away, or a recorder that stopped

    def _answer(self, connection: Any) -> None:
        connection.settimeout(MAX_PAUSE + 5)
        reader = connection.makefile("rb", buffering=0)
        if reader.readline().strip() != b"snapshot":
            return
        outcome = {"held": False}

        def hold() -> None:
            connection.sendall(b"ready\n")
            connection.settimeout(0.005)
            ends = time.monotonic() + MAX_PAUSE
            received = b""
            while time.monotonic() < ends and self._ring_fill() < 0.5:
                try:
                    chunk = connection.recv(16)
                except TimeoutError:
                    continue
                if not chunk:
                    return  # the reader went away
                received += chunk
                if received.endswith(b"\n"):
                    outcome["held"] = received.strip() == b"done"
                    return

        self._pause(hold)
        connection.settimeout(5)
        connection.sendall(b"ok\n" if outcome["held"] else b"expired\n")

    def close(self) -> None:
        """Stop answering (a reader being answered gets its reply first) and clean up."""
        import socket

        self._closed = True
        for target in (sidecar(self.path), Path(self.address)):
            try:
                target.unlink()
            except OSError:
                pass
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._socket.close()
        if self._own_folder:
            try:
                self._folder.rmdir()
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(MAX_PAUSE + 5)


def _live_address(path: Path) -> str | None:
    """The socket of the recorder writing ``path`` now, or None (not being recorded)."""
    import json

    try:
        info = json.loads(sidecar(path).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no sidecar, or its recorder is gone (a crash): the file is at rest
    return str(info["socket"])


def _refuse_untrusted(target: Path, address: str, connection: Any | None = None) -> None:
    """Raise :class:`LiveError` unless the socket is this user's (or root's), file and peer."""
    import socket
    import struct

    if connection is None:
        try:
            info = os.lstat(address)
        except OSError:
            return  # gone: the recorder is closing, and connecting fails
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid not in _TRUSTED_UIDS:
            raise LiveError(
                f"{target}: its sidecar names {address}, which is not a socket of this user "
                f"(uid {info.st_uid}, mode {stat.filemode(info.st_mode)}); refusing to use it"
            )
        return
    if not hasattr(socket, "SO_PEERCRED"):
        return  # not Linux: the owner of the socket file was checked
    credentials = connection.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
    )
    pid, uid, _ = struct.unpack("3i", credentials)
    if uid not in _TRUSTED_UIDS:
        raise LiveError(
            f"{target}: the process answering on {address} (pid {pid}) runs as uid {uid}, "
            f"not as this user (uid {os.getuid()}); refusing to talk to it"
        )


def read_live(
    path: str | os.PathLike[str],
    read: Callable[[h5py.File], Any] | None = None,
    *,
    attempts: int = 50,
) -> Any:
    """Read a consistent snapshot of a file, while another process records it, or at rest.

    Parameters
    ----------
    path
        The ``.h5`` file.
    read
        Called with the open ``h5py.File`` while the recorder holds its writes; its result is
        returned. Default: ``{dataset name: its rows below size}`` plus ``"size"``.
    attempts
        Snapshots tried before giving up. One fails only when the recorder had to end its
        pause (after 2 s, or with half its ring full): ``read`` is then called again.

    While a recorder writes the file, it commits on request (so the snapshot holds every step
    recorded up to the request) and stops writing the file until ``read`` returns; the steps
    recorded meanwhile wait in its ring, ``record()`` never waits for the reader. A file no
    recorder is writing (closed, or left by a crash) is simply read.

    Raises
    ------
    LiveError
        No consistent snapshot after ``attempts`` tries (``read`` too slow for the pause), or
        the file's sidecar names a socket of another user, which is never used.
    ReadError
        The file cannot be opened, or (the default ``read``) its rows cannot be read.
    """
    import socket

    target = Path(path)
    read = read or _read_everything
    for _ in range(attempts):
        address = _live_address(target)
        if address is None:
            with _open(target) as file:
                return read(file)
        _refuse_untrusted(target, address)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(30)
            try:
                connection.connect(address)
                _refuse_untrusted(target, address, connection)
                connection.sendall(b"snapshot\n")
                answers = connection.makefile("rb", buffering=0)
                if answers.readline().strip() != b"ready":
                    continue
            except OSError:
                time.sleep(0.01)
                continue  # the recorder is closing: the next try reads the file at rest
            failure: BaseException | None = None
            result = None
            try:
                with _open(target, locking=False) as file:
                    result = read(file)
            except Exception as error:  # noqa: BLE001 - raised below if the pause held
                failure = error
            try:
                connection.sendall(b"done\n")
                held = answers.readline().strip() == b"ok"
            except OSError:
                held = False
            if held:
                if failure is not None:
                    raise failure
                return result
    raise LiveError(
        f"{target}: no consistent snapshot in {attempts} tries; the recorder ends each pause "
        "after 2 s or with half its ring full: read less per snapshot"
    )


def _open(path: Path, **options: Any) -> h5py.File:
    """``path`` opened for reading, its root's attributes safe to read (``_format.heap``)."""
    try:
        file = h5py.File(path, "r", **options)
    except OSError as error:
        raise ReadError(f"{path}: HDF5 cannot open it ({error})") from error
    try:
        with hdf5_errors(path):
            HeapCheck(file).attributes(file, "/")
    except ReadError:
        file.close()
        raise
    return file


def _read_everything(file: h5py.File) -> dict[str, Any]:
    with hdf5_errors(file.filename):
        size = file.attrs.get("size", 0)
        if not isinstance(size, int | np.integer) or size < 0:
            raise ReadError(f"{file.filename}: size: expected a number of steps, found "
                            f"{size!r:.80}")
        values: dict[str, Any] = {"size": int(size)}
        heap = HeapCheck(file)  # text rows: their heap is checked before HDF5 reads it
        for name, dataset in walk_datasets(file):
            if dataset.ndim >= 1:
                heap.rows(dataset, 0, min(int(size), dataset.shape[0]), name)
                values[name] = dataset[:size]
    return values
