"""Reads while recording, from any process: :func:`read_live` asks the recorder writing a file
for a consistent snapshot (the protocol: :mod:`h5recorder._format.live`), or reads the file
at rest when no recorder writes it."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._format.attrs import hdf5_errors, walk_datasets
from .._format.heap import HeapCheck
from .._format.live import DONE, HELD, READY, SNAPSHOT, TRUSTED_UIDS, sidecar
from ..errors import LiveError, ReadError
from .untrusted import check_at_rest

__all__ = ["live_address", "read_live"]


def live_address(path: Path) -> str | None:
    """The socket of the recorder writing ``path`` now, or None (not being recorded)."""
    try:
        info = json.loads(sidecar(path).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no sidecar, or its recorder is gone (a crash): the file is at rest
    return str(info["socket"])


def _refuse_untrusted(target: Path, address: str, connection: Any | None = None) -> None:
    """Raise :class:`LiveError` unless the socket is this user's (or root's), file and peer."""
    if connection is None:
        try:
            info = os.lstat(address)
        except OSError:
            return  # gone: the recorder is closing, and connecting fails
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid not in TRUSTED_UIDS:
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
    if uid not in TRUSTED_UIDS:
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
        The file cannot be opened (its last commit was interrupted: run ``h5recorder
        recover``), or (the default ``read``) its rows cannot be read.
    """
    target = Path(path)
    read = read or _read_everything
    for _ in range(attempts):
        address = live_address(target)
        if address is None:
            try:
                check_at_rest(target)
            except ReadError as error:
                raise ReadError(f"{target}: {error}") from error
            with _open(target) as file:
                return read(file)
        _refuse_untrusted(target, address)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(30)
            try:
                connection.connect(address)
                _refuse_untrusted(target, address, connection)
                connection.sendall(SNAPSHOT + b"\n")
                answers = connection.makefile("rb", buffering=0)
                if answers.readline().strip() != READY:
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
                connection.sendall(DONE + b"\n")
                held = answers.readline().strip() == HELD
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
