"""What a recording holds and whether it went well: ``h5recorder inspect FILE...``.

:func:`summarize` gathers, from an open :class:`~h5recorder.Episode`, the space tree (shapes,
dtypes), steps, timing (from each step's time when the file keeps it, else from the
recorder's counters), waits and drops, bytes raw and on disk per leaf, statistics, frames and
health, as plain JSON-able values; :func:`render` writes them for people.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np
from gymnasium import spaces

from .._format.attrs import jsonable
from .._format.codecs import EVERY_BUILD, FILTER_NAMES, filters_of
from .._read.episode import Column, Episode

__all__ = ["render", "summarize"]


def _space_text(space: spaces.Space[Any]) -> str:
    if isinstance(space, spaces.Box):
        low, high = space.low.reshape(-1), space.high.reshape(-1)
        bounds = (
            f"{_number(low[0])}..{_number(high[0])}"
            if low.size and (low == low[0]).all() and (high == high[0]).all()
            else "per-element bounds"
        )
        return f"Box {bounds}"
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return f"Discrete {start}..{start + int(space.n) - 1}"
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete nvec={np.asarray(space.nvec).tolist()}"
    if isinstance(space, spaces.MultiBinary):
        return f"MultiBinary {np.asarray(space.n).tolist()}"
    if isinstance(space, spaces.Text):
        return f"Text max {space.max_length}"
    if isinstance(space, spaces.Tuple):
        return f"Tuple of {len(space.spaces)} (JSON)"
    return type(space).__name__


def _number(value: Any) -> str:
    number = float(value)
    if math.isinf(number):
        return "-inf" if number < 0 else "inf"
    return f"{number:g}"


SUMMARY_STATS = re.compile(r"count|min|max|mean|std|value_counts|q\d\d|rank_error")


def _summary_stats(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The statistics people read; histograms and sketches stay in the file."""
    if not stats:
        return None
    return {key: value for key, value in stats.items() if SUMMARY_STATS.fullmatch(key)}


def _leaf(column: Column, stats: dict[str, Any] | None) -> dict[str, Any]:
    dataset = column.dataset
    rows = len(column)
    if column.is_string:
        raw = int(sum(len(str(item).encode()) for item in column.read(0, rows)))
        dtype = "str (utf-8)"
    else:
        raw = rows * column.row_bytes
        dtype = str(column.dtype)
    disk = int(dataset.id.get_storage_size())
    filters = filters_of(dataset)
    return {
        "shape": list(column.row_shape),
        "dtype": dtype,
        "space": _space_text(column.space),
        "rows_in_file": int(dataset.shape[0]),
        "chunk_rows": column.chunk_rows,
        "compression": dataset.compression or "none",
        "filters": [FILTER_NAMES.get(number, f"filter {number}") for number in filters],
        "any_reader": all(number in EVERY_BUILD for number in filters),
        "bytes_raw": raw,
        "bytes_on_disk": disk,
        "ratio": round(raw / disk, 3) if disk else None,
        "stats": jsonable(_summary_stats(stats)),
    }


def _finite(value: Any) -> float | None:
    """A counter as a number, or None where a recording too short to time left none."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _timing(episode: Episode) -> dict[str, Any]:
    """Duration, rate and intervals: exact from each step's time, else the recorder's."""
    status = episode.status or {}
    if episode.time is not None and len(episode) > 1:
        stamps = np.asarray(episode.time.monotonic_ns)
        wall = np.asarray(episode.time.wall_ns)
        gaps = np.diff(stamps) / 1e3
        duration = (stamps[-1] - stamps[0]) / 1e9
        p50, p99, p999 = np.percentile(gaps, [50, 99, 99.9])
        return {
            "source": "each step's time",
            "started_wall_ns": int(wall[0]),
            "duration_s": duration,
            "steps_per_s": (len(stamps) - 1) / duration if duration > 0 else None,
            "interval_p50_us": float(p50),
            "interval_p99_us": float(p99),
            "interval_p999_us": float(p999),
            "longest_gap_s": float(gaps.max() / 1e6),
            "longest_gap_after_step": int(np.argmax(gaps)),
        }
    if status:
        rate = _finite(status.get("steps_per_second"))
        return {
            "source": "the recorder's counters (histogram bins)",
            "duration_s": (len(episode) - 1) / rate if rate and len(episode) > 1 else None,
            "steps_per_s": rate,
            "interval_p50_us": _finite(status.get("interval_p50_us")),
            "interval_p99_us": _finite(status.get("interval_p99_us")),
            "interval_p999_us": _finite(status.get("interval_p999_us")),
            "longest_gap_s": _finite(status.get("longest_gap_s")),
        }
    return {"source": "none: this file keeps no time"}


def _frames(episode: Episode) -> dict[str, Any]:
    found: dict[str, Any] = {}
    folders = episode.frame_folders()
    for name, paths in episode.frames.items():
        found[name] = {
            "folder": str(folders[name]),
            "written": len(paths),
            "missing": len(episode) - len(paths),
        }
    return found


def summarize(episode: Episode) -> dict[str, Any]:
    """Everything ``h5recorder inspect`` shows about ``episode``, as JSON-able values."""
    health = episode.health
    status = episode.status or {}
    stats = episode.stats
    leaves = {name: _leaf(column, stats.get(name)) for name, column in episode.columns.items()}
    summary: dict[str, Any] = jsonable(
        {
            "path": str(episode.path),
            "file_bytes": os.path.getsize(episode.path),
            "written_by": f"h5recorder {episode.version}"
            if episode.version
            else "mbodied's Recorder (or another writer of its layout)",
            "options": episode.options,
            "steps": len(episode),
            "size_attribute": episode.size,
            "closed_cleanly": health.closed,
            "timing": _timing(episode),
            "waits": status.get("waits"),
            "wait_s": status.get("wait_seconds"),
            "drops": status.get("drops"),
            "missing_values": status.get("missing_values"),
            "commits": status.get("commits"),
            "bytes_raw": sum(leaf["bytes_raw"] for leaf in leaves.values()),
            "bytes_on_disk": sum(leaf["bytes_on_disk"] for leaf in leaves.values()),
            "leaves": leaves,
            "frames": _frames(episode),
            "healthy": health.ok,
            "problems": health.problems,
            "notes": health.notes,
        }
    )
    return summary


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _duration_us(microseconds: float | None) -> str:
    return _duration(None if microseconds is None else microseconds / 1e6)


def _stats_text(stats: dict[str, Any] | None) -> str:
    if not stats or "mean" not in stats:
        return ""

    def short(value: Any) -> str:
        values = np.atleast_1d(np.asarray(value, dtype=np.float64)).reshape(-1)
        if values.size <= 3:
            return " ".join(f"{item:.3g}" for item in values)
        return f"{values.min():.3g}..{values.max():.3g}"

    return (
        f"min {short(stats['min'])} max {short(stats['max'])} "
        f"mean {short(stats['mean'])} std {short(stats['std'])}"
    )


def _any_reader_text(leaves: dict[str, Any]) -> str:
    """Which leaves an HDF5 reader without plugins decodes (MATLAB, h5dump, a plain h5py)."""
    others = {name: leaf["filters"] for name, leaf in leaves.items() if not leaf["any_reader"]}
    if not others:
        return "every leaf opens without hdf5plugin (filters every HDF5 build has)"
    named = ", ".join(f"{name} ({'+'.join(filters)})" for name, filters in others.items())
    return (
        f"{len(leaves) - len(others)} of {len(leaves)} leaves open without hdf5plugin; the "
        f"compressed chunks of {named} need it (their raw chunks read anyway)"
    )


def render(summary: dict[str, Any]) -> str:
    """``summary`` (from :func:`summarize`) for people."""
    lines = [summary["path"]]
    timing = summary["timing"]
    closed = summary["closed_cleanly"]
    state = {True: "closed cleanly", False: "NOT closed cleanly",
             None: "close not recorded by this writer"}[closed]
    lines.append(f"  written by    {summary['written_by']}, {state}")
    steps_line = f"  steps         {summary['steps']}"
    if timing.get("duration_s") is not None:
        rate = timing.get("steps_per_s")
        steps_line += f" in {_duration(timing['duration_s'])}"
        steps_line += f" ({rate:.1f} steps/s)" if rate else ""
    lines.append(steps_line)
    if timing.get("interval_p50_us") is not None:
        lines.append(
            f"  intervals     p50 {_duration_us(timing['interval_p50_us'])}, "
            f"p99 {_duration_us(timing['interval_p99_us'])}, "
            f"p99.9 {_duration_us(timing['interval_p999_us'])}, "
            f"longest gap {_duration(timing['longest_gap_s'])} ({timing['source']})"
        )
    if summary["waits"] is not None:
        lines.append(
            f"  waits, drops  {summary['waits']} ({summary['wait_s'] or 0:.2f} s), "
            f"{summary['drops']}; missing values {summary['missing_values']}; "
            f"commits {summary['commits']}"
        )
    raw, disk = summary["bytes_raw"], summary["bytes_on_disk"]
    lines.append(
        f"  bytes         {_bytes(raw)} raw, {_bytes(disk)} in datasets"
        f"{f' ({raw / disk:.2f}x)' if disk else ''}, file {_bytes(summary['file_bytes'])}"
    )
    for name, frames in summary["frames"].items():
        lines.append(
            f"  frames        {name}: {frames['written']} written, {frames['missing']} missing "
            f"({frames['folder']})"
        )
    options = summary["options"]
    if options:
        lines.append(
            "  options       "
            + ", ".join(
                f"{key}={options[key]}"
                for key in ("compression", "compression_level", "chunk_bytes",
                            "commit_interval", "on_full", "frames")
                if key in options
            )
        )
    lines.append("  leaves")
    width = max((len(name) for name in summary["leaves"]), default=4)
    for name, leaf in summary["leaves"].items():
        shape = "x".join(str(size) for size in leaf["shape"]) or "scalar"
        ratio = f"{leaf['ratio']:.2f}x" if leaf["ratio"] else "-"
        codec = "+".join(leaf.get("filters", [])) or "raw"
        lines.append(
            f"    {name:<{width}}  {shape:>11} {leaf['dtype']:<11} {leaf['space']:<22} "
            f"{_bytes(leaf['bytes_raw']):>10} raw {_bytes(leaf['bytes_on_disk']):>10} disk "
            f"{ratio:>6}  {codec}"
        )
        stats = _stats_text(leaf["stats"])
        if stats:
            lines.append(f"    {'':<{width}}  {stats}")
    lines.append(f"  any reader    {_any_reader_text(summary['leaves'])}")
    verdict = "healthy" if summary["healthy"] else "UNHEALTHY"
    lines.append(f"  health        {verdict}")
    lines += [f"    problem: {problem}" for problem in summary["problems"]]
    lines += [f"    note: {note}" for note in summary["notes"]]
    return "\n".join(lines)
