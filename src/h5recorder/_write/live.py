"""Reads while recording: the recorder's side, in its own process and for others.

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

from .._format.live import (
    DONE,
    EXPIRED,
    HELD,
    MAX_PAUSE,
    READY,
    SNAPSHOT,
    SOCKET_SUFFIX,
    sidecar,
)
from ..errors import RecorderError
from .files import replace_file
from .ring import _pid_alive

try:  # h5py's lock around every call into HDF5: the only way to ask whether a thread is in one
    from h5py._objects import phil as _h5py_lock
except ImportError:  # pragma: no cover - an h5py that moved it
    _h5py_lock = None

__all__ = ["LiveServer", "register", "unregister"]

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
    if flush is None or _in_h5py_call():
        return
    try:
        flush()
    except RecorderError:
        pass  # the recorder raises its own failure to its caller; this open goes ahead


def _in_h5py_call() -> bool:
    """Whether this thread is inside an h5py call; True when h5py cannot say (no commit is
    asked for then: the open sees the steps of the last commit, and nothing waits forever)."""
    owned = getattr(_h5py_lock, "_is_owned", None)
    return owned is None or bool(owned())


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


# -- other processes: a snapshot on request (the protocol: h5recorder._format.live) -----


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
        if reader.readline().strip() != SNAPSHOT:
            return
        outcome = {"held": False}

        def hold() -> None:
            connection.sendall(READY + b"\n")
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
                    outcome["held"] = received.strip() == DONE
                    return

        self._pause(hold)
        connection.settimeout(5)
        connection.sendall((HELD if outcome["held"] else EXPIRED) + b"\n")

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
