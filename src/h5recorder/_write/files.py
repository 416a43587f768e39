"""Files written into folders others may write to: always new files, never through a link.

A file is written under a temporary name nobody can predict, created with ``O_CREAT | O_EXCL
| O_NOFOLLOW`` (so nothing planted there is opened), and renamed to its final name: whatever
lies at that name, a symlink to someone's file included, is replaced, never written through.
Only the standard library: PNG workers import this module.
"""

from __future__ import annotations

import os
import secrets

__all__ = ["NEW_FILE", "replace_file", "temporary_name"]

NEW_FILE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def temporary_name(path: str) -> str:
    """A name beside ``path`` no one can guess: ``<path>.<16 hex digits>.part``."""
    return f"{path}.{secrets.token_hex(8)}.part"


def replace_file(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    sync: bool = False,
    temporary: str | None = None,
) -> None:
    """Write ``data`` to a new file beside ``path``, then rename it to ``path``.

    ``temporary`` names the new file (default: :func:`temporary_name`); with ``sync``, its
    bytes reach the disk before the rename.
    """
    target = os.fspath(path)
    temporary = temporary or temporary_name(target)
    fd = os.open(temporary, NEW_FILE, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
