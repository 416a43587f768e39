"""Whether a recording went well: one :class:`Health`, from what a file's attributes say.

``h5recorder.open(...).health``, ``h5recorder inspect`` and ``h5recorder.dataset()`` all get
it from :func:`health_of`. It reads no data and opens nothing: callers pass the attributes and
dataset lengths they read (checked by ``_read.untrusted``), and, where they looked, which PNG
frames are absent from disk. This module imports only ``_format.attrs``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .attrs import CLOSED_ATTRIBUTE, RECOVERED_ATTRIBUTE, TIME_ATTRIBUTE, VERSION_ATTRIBUTE

__all__ = ["Health", "closed_of", "has_statistics", "health_of", "steps_of"]

SUMMARY_ATTRIBUTE = "stats_summary"  # every statistic of a leaf, packed (``_write.stats``)
COUNT_ATTRIBUTE = "stats_count"  # present alone where the summary does not fit one attribute


@dataclass(frozen=True)
class Health:
    """Whether a recording went well, from the file's attributes and layout.

    Attributes
    ----------
    size
        Steps recorded: the ``size`` attribute (without one, the shortest dataset).
    closed
        True when ``close()`` finished the file (its ``recorder_closed`` attribute); False
        when the recording never got there (killed, or still running), recovered or not;
        None for files that cannot say (versions before that attribute, mbodied's).
    statistics
        Every leaf holds the statistics ``close()`` stores (``dataset()`` merges only these
        episodes). A file not closed has none; files of earlier versions have them.
    recovered
        ``h5recorder recover`` mended the file (its ``recorder_recovered`` attribute).
    rows_past_size
        Datasets holding rows at or beyond ``size``, and how many: a crash, or the
        over-allocation of mbodied's recorder. They are never read.
    drops, waits, missing_values
        The recorder's counters: steps dropped (``on_full="drop"``), times ``record()``
        waited for the writer (the ring full, or a caller outrunning the writer at its
        backlog), values missing from a step (stored as fill values).
    frames_missing
        PNG files of saved leaves that are missing: absent from disk where the caller looked
        (``open``, ``inspect``), else those the recorder listed (``dataset()``).
    frames_deferred
        PNG frames the recorder deferred to ``close()`` because the encoders fell behind.
    longest_gap_s
        The longest time between two steps, from the recorder's counters (None: not kept).
    problems
        In words, everything that makes the recording unhealthy: no statistics, steps
        dropped, PNG frames missing, rows past ``size`` (a crash: ``h5recorder recover``), a
        file not closed by ``close()``. ``ok`` is true when there are none.
    notes
        In words, what is worth knowing but harmless (waits, missing values, ...).
    """

    size: int
    closed: bool | None
    rows_past_size: dict[str, int]
    drops: int
    waits: int
    missing_values: int
    frames_missing: list[str]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    statistics: bool = False
    recovered: bool = False
    frames_deferred: int = 0
    longest_gap_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def steps_of(size: int | None, rows: Mapping[str, int]) -> int:
    """Steps recorded: the ``size`` attribute, or without one the shortest dataset."""
    if size is not None:
        return size
    return min(rows.values()) if rows else 0


def closed_of(attrs: Mapping[str, Any], rows_past_size: bool) -> bool | None:
    """:attr:`Health.closed` from the file's attributes (``rows_past_size``: some dataset
    holds rows past ``size``)."""
    if CLOSED_ATTRIBUTE in attrs:
        return bool(attrs[CLOSED_ATTRIBUTE])
    if (
        TIME_ATTRIBUTE in attrs
        or RECOVERED_ATTRIBUTE in attrs
        or (rows_past_size and VERSION_ATTRIBUTE in attrs)
    ):
        return False  # this version marks a clean close; earlier ones trim to size
    return None


def has_statistics(attrs: Container[str]) -> bool:
    """A leaf's attributes hold the statistics ``close()`` stores."""
    return SUMMARY_ATTRIBUTE in attrs or COUNT_ATTRIBUTE in attrs


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def health_of(
    attrs: Mapping[str, Any],
    *,
    path: str | os.PathLike[str],
    size: int | None,
    rows: Mapping[str, int],
    statistics: bool,
    status: Mapping[str, Any] | None,
    frames: Mapping[str, Any] | None,
    recovered: Mapping[str, Any] | None,
    frames_missing: Sequence[str] | None = None,
    problems: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> Health:
    """The :class:`Health` of the file at ``path``.

    ``attrs`` are the file's attributes; ``size`` its checked ``size`` attribute (None:
    absent); ``rows`` each dataset's length; ``statistics`` whether every leaf holds its
    statistics (:func:`has_statistics`); ``status``, ``frames`` and ``recovered`` the checked
    JSON attributes. ``frames_missing``: the PNG files found absent from disk (None: not
    looked, those the recorder listed are taken). ``problems`` and ``notes`` found while
    loading come first.
    """
    status = status or {}
    problems = list(problems)
    notes = list(notes)
    steps = steps_of(size, rows)
    if size is None:
        notes.append(f"no 'size' attribute: {steps} steps taken from the datasets")
    short = {name: count for name, count in rows.items() if count < steps}
    if short:
        problems.insert(0,
            f"'size' says {steps} steps but {len(short)} datasets hold fewer "
            f"(e.g. {next(iter(short))}: {next(iter(short.values()))}); reading those only"
        )
    past = {name: count - steps for name, count in rows.items() if count > steps}
    ours = VERSION_ATTRIBUTE in attrs
    closed = closed_of(attrs, bool(past))
    if frames_missing is None:
        listed = frames.get("missing", []) if isinstance(frames, Mapping) else []
        frames_missing = [str(item) for item in listed]
    drops = int(status.get("drops", 0))
    waits = int(status.get("waits", 0))
    missing_values = int(status.get("missing_values", 0))
    if ours and not statistics:
        problems.append("no statistics: close() stores them, and did not run (killed?)")
    if drops:
        problems.append(f"{drops} steps were dropped (on_full='drop')")
    if frames_missing:
        problems.append(f"{len(frames_missing)} PNG frames are missing "
                        f"(e.g. {frames_missing[0]})")
    if past:
        name, extra = next(iter(past.items()))
        if ours:
            problems.append(
                f"{len(past)} datasets hold rows past size={steps} (e.g. {name}: {extra} "
                f"more); the recorder did not finish: run 'h5recorder recover {path}'"
            )
        else:
            problems.append(
                f"{len(past)} datasets hold rows past size={steps} (e.g. {name}: {extra} "
                "more; mbodied's recorder over-allocates); they are not read"
            )
    if closed is False and recovered is not None and not past:
        problems.append("the recorder did not close this file; 'h5recorder recover' mended "
                        "it: the steps after its last commit are lost")
    elif closed is False and not past:
        problems.append("the recorder did not close this file (killed, or still recording); "
                        f"run 'h5recorder recover {path}' once it is not running")
    if closed is None and ours:
        notes.append("this version of the recorder does not mark a clean close")
    if waits:
        notes.append(f"record() waited {waits} times for the writer (a full ring or backlog)")
    if missing_values:
        notes.append(f"{missing_values} values were missing and hold their fill value")
    deferred = frames.get("deferred", 0) if isinstance(frames, Mapping) else 0
    return Health(
        size=steps,
        closed=closed,
        rows_past_size=past,
        drops=drops,
        waits=waits,
        missing_values=missing_values,
        frames_missing=list(frames_missing),
        problems=problems,
        notes=notes,
        statistics=statistics,
        recovered=recovered is not None,
        frames_deferred=int(deferred) if isinstance(deferred, int) else 0,
        longest_gap_s=_number(status.get("longest_gap_s")),
    )
