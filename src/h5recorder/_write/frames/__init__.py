"""The PNG stage: worker processes write ring frames as PNG files while the caller goes on.

Its parts, one module each:

- :mod:`.encoders`: which PNG encoder writes each kind of frame (RGB, RGBA, gray, 16-bit),
  chosen in one table, and the encoders themselves;
- :mod:`.jobs`: what a frame job is (a ring segment and a slot, never pixels), where its file
  goes, the counters and :class:`FrameError`;
- :mod:`.worker`: the worker process's loop;
- :mod:`.pool`: :class:`FramePool`, the parent's side: the worker processes, the dispatcher
  thread that hands them batches, retries and the bookkeeping that says which ring slots may
  be reused.

Workers import this package but never the rest of ``h5recorder``: keep these modules free of
imports from the package beyond :mod:`h5recorder.errors` (the ring is imported lazily).
"""

from __future__ import annotations

from .encoders import ENCODERS, KINDS, check_image, choose_encoders, encode_png
from .jobs import FrameCounters, FrameError, FrameJob, FrameSource, frame_dirs, frame_path
from .pool import FramePool, default_workers

__all__ = [
    "ENCODERS",
    "KINDS",
    "FrameCounters",
    "FrameError",
    "FrameJob",
    "FramePool",
    "FrameSource",
    "check_image",
    "choose_encoders",
    "default_workers",
    "encode_png",
    "frame_dirs",
    "frame_path",
]
