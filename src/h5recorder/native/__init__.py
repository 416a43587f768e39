"""Compiled kernels of h5recorder: pure functions on arrays, no I/O, no locks.

Installed as ``h5recorder.native``. Every kernel is compiled by numba with ``cache=True`` and
``nogil=True``, so the writer thread runs them while the caller keeps recording.
"""

from .kernels import (
    count_values,
    fold_rows,
    histogram_rows,
    merge_intervals,
    sketch_rows,
    warm_up,
)

__all__ = [
    "count_values",
    "fold_rows",
    "histogram_rows",
    "merge_intervals",
    "sketch_rows",
    "warm_up",
]
