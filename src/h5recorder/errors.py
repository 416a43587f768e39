"""Errors raised by h5recorder.

Every error derives from :class:`RecorderError` and also from the builtin exception it
refines, so ``except ValueError`` keeps working for code that predates h5recorder::

    RecorderError(Exception)
    +-- SchemaError(RecorderError, ValueError)        a space that cannot be recorded
    +-- StepError(RecorderError, ValueError)          a step rejected before anything was copied
    |   +-- StepTypeError(StepError, TypeError)       a value of the wrong kind (str for a Box, ...)
    +-- ClosedError(RecorderError, RuntimeError)      the recorder was used after close()
    +-- WriterError(RecorderError, RuntimeError)      the background writer failed (cause chained)
    |   +-- DiskFullError(WriterError, OSError)       not enough free space to commit safely
    +-- RecoveryError(RecorderError, OSError)         a file that ``h5recorder recover`` cannot mend
    +-- ReadError(RecorderError, OSError)             a file that ``h5recorder.open`` cannot read
    +-- LiveError(RecorderError, RuntimeError)        ``read_live`` got no consistent snapshot

Messages name the key, what was expected and what arrived.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "DiskFullError",
    "LiveError",
    "ReadError",
    "RecorderError",
    "RecoveryError",
    "SchemaError",
    "StepError",
    "StepTypeError",
    "WriterError",
]


class RecorderError(Exception):
    """Root of every error h5recorder raises."""


class SchemaError(RecorderError, ValueError):
    """A space (declared or inferred) that cannot be recorded."""


class StepError(RecorderError, ValueError):
    """A step was rejected before any of it was copied; the recorder keeps working."""

    def __init__(self, key: str, expected: str, seen: str) -> None:
        self.key = key
        self.expected = expected
        self.seen = seen
        super().__init__(f"{key}: expected {expected}, got {seen}")


class StepTypeError(StepError, TypeError):
    """A value of a kind the leaf cannot hold."""


class ClosedError(RecorderError, RuntimeError):
    """The recorder was used after ``close()``."""


class WriterError(RecorderError, RuntimeError):
    """The background writer failed; the original exception is the ``__cause__``."""


class DiskFullError(WriterError, OSError):
    """The disk has too little free space to commit the next chunks safely."""


class RecoveryError(RecorderError, OSError):
    """A file that cannot be opened, even after recovery."""


class ReadError(RecorderError, OSError):
    """A file that cannot be read as a recording; the message says what is wrong with it."""


class LiveError(RecorderError, RuntimeError):
    """``read_live`` got no consistent snapshot of a file being recorded."""
