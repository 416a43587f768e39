"""Reads while recording, between processes: what the recorder and a reader say to each other.

The recorder listens on a Unix socket named in a sidecar file ``<file>.live`` (JSON: ``pid``,
``socket``, ``file``). A reader connects and sends ``snapshot``; the recorder's writer thread
commits (the file on disk is then consistent: rows, then ``size``), answers ``ready`` and stops
writing the file until the reader sends ``done``, at most :data:`MAX_PAUSE` seconds and never
past half the ring (``record()`` keeps filling the ring meanwhile, it never waits). The
recorder then answers ``ok`` if the pause held for the whole read, ``expired`` if it had to
end it first: the reader then drops what it read and asks again.

The socket lies in a folder only this user may enter (``<tmp>/h5recorder-live-<uid>``, mode
0700, checked after it is made: another user may have made it first), and a reader talks only
to a socket of its own user (or root), checked before it asks and, with ``SO_PEERCRED``, after
it connects: a sidecar names any socket, and anyone can write one where they may write.

The recorder's side is :mod:`h5recorder._write.live`, the reader's :mod:`h5recorder._read.live`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DONE",
    "EXPIRED",
    "HELD",
    "MAX_PAUSE",
    "READY",
    "SIDECAR_SUFFIX",
    "SNAPSHOT",
    "SOCKET_SUFFIX",
    "TRUSTED_UIDS",
    "sidecar",
]

MAX_PAUSE = 2.0  # seconds the recorder holds its writes for one reader, at most
SIDECAR_SUFFIX = ".live"
SOCKET_SUFFIX = ".sock"
TRUSTED_UIDS = frozenset({0, os.getuid()})  # whose sockets a reader talks to

# the messages, one line each
SNAPSHOT = b"snapshot"  # reader: commit, then hold your writes
READY = b"ready"  # recorder: committed, holding
DONE = b"done"  # reader: finished reading
HELD = b"ok"  # recorder: the hold lasted the whole read
EXPIRED = b"expired"  # recorder: the hold ended first; read again


def sidecar(path: Path) -> Path:
    """The sidecar file next to the recording ``path``."""
    return Path(path).with_name(Path(path).name + SIDECAR_SUFFIX)
