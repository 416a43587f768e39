"""Mending a file whose recorder was killed: ``h5recorder recover PATH``.

A killed recorder leaves a file that opens as it is (see ``_writer``): ``size`` covers only
flushed rows, but datasets may hold more rows than ``size`` (chunks written after the last
commit). Recovery checks that every row below ``size`` reads back, lowers ``size`` to the
longest readable prefix if one does not, and trims every dataset to exactly ``size`` rows,
as ``close()`` would have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the blosc2 filter for reading

from .errors import RecoveryError

__all__ = ["RecoveryReport", "recover"]


@dataclass(frozen=True)
class RecoveryReport:
    path: Path
    size_before: int
    size_after: int
    trimmed: dict[str, int]

    def summary(self) -> str:
        lines = [f"{self.path}: {self.size_after} steps readable"]
        if self.size_after != self.size_before:
            lines.append(f"  size lowered from {self.size_before} (unreadable rows after it)")
        for name, rows in sorted(self.trimmed.items()):
            lines.append(f"  {name}: trimmed {rows} rows beyond size")
        return "\n".join(lines)


def _datasets(file: h5py.File) -> list[h5py.Dataset]:
    found: list[h5py.Dataset] = []
    file.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _readable_rows(dataset: h5py.Dataset, rows: int) -> int:
    step = dataset.chunks[0] if dataset.chunks else max(1, rows)
    for start in range(0, rows, step):
        try:
            dataset[start : min(rows, start + step)]
        except (OSError, ValueError, RuntimeError):
            return start
    return rows


def recover(path: str | Path) -> RecoveryReport:
    """Make ``path`` consistent after a crash; return what was done.

    Raises :class:`RecoveryError` when the file cannot be opened at all.
    """
    path = Path(path)
    try:
        file = h5py.File(path, "r+")
    except OSError as error:
        raise RecoveryError(f"{path}: cannot open the file ({error})") from error
    with file:
        datasets = [d for d in _datasets(file) if d.shape and d.maxshape[0] is None]
        time = file.attrs.get("recorder_time")
        if isinstance(time, h5py.Reference) and time:  # per-step time, not linked from the root
            group = file[time]
            datasets += [group[name] for name in group if isinstance(group[name], h5py.Dataset)]
        size_before = int(file.attrs.get("size", 0))
        size = size_before
        for dataset in datasets:
            size = min(size, dataset.shape[0])
            size = _readable_rows(dataset, size)
        trimmed: dict[str, int] = {}
        for dataset in datasets:
            if dataset.shape[0] > size:
                trimmed[dataset.name or "?"] = dataset.shape[0] - size
                dataset.resize(size, axis=0)
        file.attrs["size"] = size
        file.attrs["recorder_recovered"] = json.dumps(
            {"size_before": size_before, "size_after": size, "trimmed": trimmed}
        )
        if "recorder_status" in file.attrs:
            status = json.loads(file.attrs["recorder_status"])
            status["rows_committed"] = size
            file.attrs["recorder_status"] = json.dumps(status)
    return RecoveryReport(path, size_before, size, trimmed)
