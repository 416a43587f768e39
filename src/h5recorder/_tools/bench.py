"""The head-to-head behind ``h5recorder bench`` and the benchmarks under ``benchmarks/``.

Every figure is measured side by side in one process and one run, on the same steps (the
workloads of :mod:`h5recorder.workloads`), so that ratios mean something on a noisy machine.
The subjects:

- ``h5recorder``: this package's :class:`~h5recorder.Recorder` (blosc2 lz4 level 1);
- ``mbodied``: ``mbodied.data.recording.Recorder`` when it can be imported (never faked);
- ``naive h5py``: every leaf a dataset of one-row chunks, grown by one row and written at each
  step, ``size`` set at each step (the reference recorder's way, uncompressed);
- ``sequential``: the physical limit: the raw bytes of each step written to one file in one
  sequential stream (``os.write`` in blocks of about 1 MiB, ``fsync`` at the end); and the
  same without ``fsync`` (the page cache's limit: nothing above reaches the disk either).

Two measurements per subject:

- end to end: steps recorded flat out, then ``close()``; steps/s and MB/s (raw step bytes)
  over the whole, close included. Without PNG each subject records for the same wall time;
  with PNG all subjects record the same number of steps, since ``close()`` waits for every
  frame;
- latency: ``record()`` called at a steady rate (sleep, then spin until due) for a few
  seconds, every call timed; p50, p99, p99.9 and max. Subjects slower than the rate run back
  to back (every call late), so their figures are their own per-call cost. h5recorder runs
  these with ``frames="best-effort"`` so that ``close()`` does not wait for frames the encoders
  could not keep up with; ``record()`` does the same work either way.

Nothing here asserts on timing.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
from gymnasium import spaces

from .._version import __version__
from .._write.recorder import Recorder
from ..workloads import Workload, workload

__all__ = [
    "LATENCY_RATES",
    "MBODIED_TRUE_PNG",
    "PNG_STEPS",
    "McapWriter",
    "NaiveWriter",
    "Row",
    "SequentialWriter",
    "end_to_end",
    "environment",
    "head_to_head",
    "latency",
    "markdown_table",
    "mbodied_recorder",
    "ours",
    "text_table",
]

LATENCY_RATES = {"seed": 1000.0, "rig": 30.0, "hd": 30.0, "proprio": 2000.0}
"""Steps per second of the paced latency runs: a camera loop, a camera rig, a control loop."""

PNG_STEPS = {"seed": 300, "rig": 12}
"""Steps of the end-to-end runs with PNG frames (every subject records the same number)."""

MBODIED_TRUE_PNG = "mbodied, png encoding"
"""mbodied with its images made ``Image(array, encoding="png")``: real PNG files (PNG only)."""

# The pacer wakes this long before a step is due and spins the rest: sleeps on Linux overshoot
# by 50-100 us, more on a loaded machine.
_SPIN_NS = 300_000
_BLOCK = 1 << 20


class Subject(Protocol):
    """What every subject offers: mbodied's ``record`` and ``close``."""

    def record(self, *args: Any, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


def mbodied_recorder() -> type[Any] | None:
    """mbodied's ``Recorder`` class, or ``None`` when mbodied cannot be imported."""
    try:
        from mbodied.data.recording import Recorder as MbodiedRecorder
    except ImportError:
        return None
    return MbodiedRecorder  # type: ignore[no-any-return]


def _leaves(values: Mapping[str, Any]) -> Iterator[Any]:
    for value in values.values():
        if isinstance(value, Mapping):
            yield from _leaves(value)
        else:
            yield value


def raw_bytes(step: Mapping[str, Any]) -> bytes:
    """The step's values as bytes, one after the other (strings UTF-8, Python ints int64)."""
    parts = []
    for value in _leaves(step):
        if isinstance(value, str):
            parts.append(value.encode())
        elif isinstance(value, np.ndarray | np.generic):
            parts.append(np.ascontiguousarray(value).tobytes())
        else:
            parts.append(np.asarray(value, np.int64 if isinstance(value, int) else None).tobytes())
    return b"".join(parts)


def _key(step: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(id(value) for value in step.values())


class SequentialWriter:
    """The physical limit: each step's raw bytes appended to one file, ``fsync`` at close.

    The bytes of every step of the bank are prepared beforehand; ``record`` copies them into a
    block of about 1 MiB and writes the block when it is full, so what is timed is the kernel
    and the disk, not Python.
    """

    def __init__(self, path: Path, bank: list[dict[str, Any]], fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        # keyed by the identity of the step's root mappings: record(**step) gets a new dict
        self._steps = {_key(step): raw_bytes(step) for step in bank}
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._block = bytearray()
        self.bytes = 0

    def record(self, **roots: Any) -> None:
        data = self._steps.get(_key(roots)) or raw_bytes(roots)
        if len(data) >= _BLOCK:
            self._write(data)
            return
        self._block += data
        if len(self._block) >= _BLOCK:
            self._write(self._block)
            self._block = bytearray()

    def _write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.bytes += len(data)

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._block:
            self._write(self._block)
            self._block = bytearray()
        if self.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1


class McapWriter:
    """MCAP's Python writer (what rosbag2 and Foxglove users record with), one channel per leaf.

    Each leaf of a step is one message holding its raw bytes (strings as UTF-8), the way a
    ROS bridge publishes an image or a joint vector; ``compression`` is ``"none"``, ``"lz4"``
    or ``"zstd"`` (MCAP's chunk compression). Needs the ``mcap`` package (the bench extra).
    """

    def __init__(self, path: Path, compression: str = "none") -> None:
        from mcap.writer import CompressionType
        from mcap.writer import Writer as Mcap

        self._file = open(path, "wb")
        self._writer = Mcap(
            self._file, compression=CompressionType[compression.upper()], chunk_size=1 << 20
        )
        self._writer.start()
        self._schema = self._writer.register_schema(name="raw", encoding="", data=b"")
        self._channels: dict[str, int] = {}

    def record(self, **roots: Any) -> None:
        stamp = time.time_ns()
        for root, value in roots.items():
            if value is not None:
                self._put(root, value, stamp)

    def _put(self, name: str, value: Any, stamp: int) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                self._put(f"{name}/{key}", item, stamp)
            return
        channel = self._channels.get(name)
        if channel is None:
            channel = self._writer.register_channel(
                topic=name, message_encoding="raw", schema_id=self._schema
            )
            self._channels[name] = channel
        data = value.encode() if isinstance(value, str) else np.asarray(value).tobytes()
        self._writer.add_message(channel, log_time=stamp, data=data, publish_time=stamp)

    def close(self) -> None:
        if not self._file.closed:
            self._writer.finish()  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer mcap
            self._file.close()


class NaiveWriter:
    """Writes each step as it comes, as the reference mbodied Recorder does.

    Every leaf is a dataset of one-row chunks, uncompressed, ``maxshape=(None, ...)``. Each
    step looks every dataset up by name, grows it by one row, writes the row, and sets the
    file's ``size`` attribute.
    """

    def __init__(self, path: Path, load: Workload) -> None:
        self.path = path
        self.file = h5py.File(path, "w")
        self.file.attrs["size"] = 0
        self.index = 0
        for name, space in load.spaces().items():
            if space is not None:
                self._create(self.file.create_group(name.removesuffix("_space")), space)

    def _create(self, group: h5py.Group, space: spaces.Dict) -> None:
        for key, sub in space.spaces.items():
            if isinstance(sub, spaces.Dict):
                self._create(group.create_group(key), sub)
                continue
            shape = tuple(sub.shape or ())
            dtype = h5py.string_dtype() if isinstance(sub, spaces.Text) else sub.dtype
            group.create_dataset(
                key, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape), dtype=dtype
            )

    def _write(self, group: h5py.Group, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            node = group[key]
            if isinstance(node, h5py.Group):
                self._write(node, value)
                continue
            node.resize(self.index + 1, axis=0)
            node[self.index] = value

    def record(self, **roots: Any) -> None:
        for name, values in roots.items():
            self._write(self.file[name], values)
        self.index += 1
        self.file.attrs["size"] = self.index

    def close(self) -> None:
        self.file.close()


def mbodied_png_bank(load: Workload, encoding: str | None = None) -> list[dict[str, Any]]:
    """The bank as mbodied needs it to write image files: each image key an mbodied ``Image``.

    mbodied 1.5.1 saves a frame only when the value has ``.array`` and ``.save`` and the root
    reaches ``record_timestep`` unconverted (a ``Sample``); a plain array is stored, never saved.
    An ``Image`` made from an array encodes as JPEG, and ``save`` then writes a JPEG at quality
    10 under the name ``<index>.png``; ``encoding="png"`` makes it write real PNG files (Pillow,
    default level). Only 8-bit RGB keys are wrapped (``Image`` does not take 16-bit depth).
    The ``Image`` objects are made here, once: their cost is not part of ``record()``.
    """
    from mbodied.types.sample import Sample
    from mbodied.types.sense.vision import Image

    keys = set(load.image_keys)
    bank = []
    for step in load.bank:
        converted: dict[str, Any] = {}
        for root, values in step.items():
            images = {
                key: Image(value) if encoding is None else Image(value, encoding=encoding)
                for key, value in values.items()
                if key in keys and value.dtype == np.uint8 and value.ndim == 3
            }
            converted[root] = Sample(**{**values, **images}) if images else values
        bank.append(converted)
    return bank


@dataclass
class Row:
    """One measured case; ``None`` where a figure does not apply."""

    workload: str
    subject: str
    png: bool
    steps: int = 0
    seconds: float = 0.0
    steps_per_s: float = 0.0
    mb_per_s: float = 0.0
    close_s: float = 0.0
    latency_rate_hz: float | None = None
    latency_steps: int | None = None
    late_steps: int | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    vs_mbodied: float | None = None
    vs_sequential: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Factory = Callable[[Path, bool], Subject]
"""Makes a subject writing into a folder; the flag says whether it writes PNG frames."""


def ours(load: Workload, folder: Path, png: bool, **options: Any) -> Recorder:
    """h5recorder's ``Recorder`` on ``load``, its kernels loaded; PNG for every image key."""
    keys = list(load.image_keys) if png else []
    recorder = Recorder(
        "bench", out_dir=str(folder), image_keys_to_save=keys, **load.spaces(), **options
    )
    recorder.wait_ready(timeout=120)
    return recorder


def factories(load: Workload) -> dict[str, Factory]:
    """The subjects available here, by name; mbodied only when it can be imported."""
    found: dict[str, Factory] = {}

    found["h5recorder"] = lambda folder, png: ours(load, folder, png)
    theirs = mbodied_recorder()
    if theirs is not None:

        def mbodied(folder: Path, png: bool) -> Subject:
            keys = list(load.image_keys) if png else []
            made: Subject = theirs(
                "bench", out_dir=str(folder), image_keys_to_save=keys, **load.spaces()
            )
            return made

        found["mbodied"] = mbodied
        found[MBODIED_TRUE_PNG] = mbodied
    found["naive h5py"] = lambda folder, png: NaiveWriter(folder / "naive.h5", load)
    found["sequential"] = lambda folder, png: SequentialWriter(folder / "raw.bin", load.bank)
    found["sequential, no fsync"] = lambda folder, png: SequentialWriter(
        folder / "raw.bin", load.bank, fsync=False
    )
    return found


def _bank_for(subject: str, load: Workload, png: bool) -> list[dict[str, Any]]:
    if subject == "mbodied" and png:
        return mbodied_png_bank(load)
    if subject == MBODIED_TRUE_PNG:
        return mbodied_png_bank(load, encoding="png")
    return load.bank


def percentiles_us(samples_ns: np.ndarray[Any, Any]) -> dict[str, float]:
    """p50, p99, p99.9 and max of durations in nanoseconds, in microseconds."""
    p50, p99, p999 = np.percentile(samples_ns, [50, 99, 99.9])
    return {
        "p50_us": round(float(p50) / 1e3, 1),
        "p99_us": round(float(p99) / 1e3, 1),
        "p999_us": round(float(p999) / 1e3, 1),
        "max_us": round(float(samples_ns.max()) / 1e3, 1),
    }


def end_to_end(
    writer: Subject, bank: list[dict[str, Any]], *, seconds: float | None, steps: int | None
) -> tuple[int, float, float]:
    """Record flat out for ``seconds`` (or ``steps`` steps), then ``close()``.

    Returns the steps recorded, the seconds from the first ``record()`` until ``close()``
    returned, and the seconds ``close()`` took.
    """
    if (seconds is None) == (steps is None):
        raise ValueError("end_to_end: give exactly one of seconds and steps")
    record, size = writer.record, len(bank)
    clock = time.perf_counter
    count = 0
    started = clock()
    if steps is not None:
        for count in range(1, steps + 1):
            record(**bank[(count - 1) % size])
    else:
        deadline = started + float(seconds)  # type: ignore[arg-type]
        while clock() < deadline:
            record(**bank[count % size])
            count += 1
    recorded = clock()
    writer.close()
    finished = clock()
    return count, finished - started, finished - recorded


def paced(
    record: Callable[..., None],
    bank: list[dict[str, Any]],
    rate: float,
    seconds: float,
    *,
    sleep: bool = True,
) -> tuple[np.ndarray[Any, Any], int]:
    """Call ``record(**step)`` at ``rate`` per second for about ``seconds``; time every call.

    The schedule is absolute (step ``i`` is due at ``start + i / rate``); a subject slower than
    the rate runs back to back until ``seconds`` have passed. Returns the durations (ns) and
    how many steps started more than half a period late. ``sleep=False`` waits for each step
    in a pure busy loop (which holds the GIL), as some control loops do.
    """
    clock = time.perf_counter_ns
    period = int(1e9 / rate)
    count = max(1, int(rate * seconds))
    durations = np.empty(count, np.int64)
    size, late = len(bank), 0
    start = clock() + period
    deadline = start + int(seconds * 1e9)
    spin = min(_SPIN_NS, period // 2) if sleep else period
    done = 0
    for i in range(count):
        due = start + i * period
        ahead = due - clock() - spin
        if ahead > 0:
            time.sleep(ahead / 1e9)
        now = clock()
        while now < due:
            now = clock()
        if now - due > period // 2:
            late += 1
        began = clock()
        record(**bank[i % size])
        ended = clock()
        durations[i] = ended - began
        done = i + 1
        if ended > deadline:
            break
    return durations[:done], late


def latency(
    subject: str,
    make: Factory,
    load: Workload,
    folder: Path,
    *,
    png: bool,
    rate: float,
    seconds: float,
    warm_up: float = 0.5,
) -> dict[str, Any]:
    """``record()`` latency of one subject at ``rate`` steps/s; the warm-up is left out."""
    writer: Subject
    if subject == "h5recorder":
        writer = ours(load, folder, png, frames="best-effort")
    else:
        writer = make(folder, png)
    bank = _bank_for(subject, load, png)
    try:
        durations, late = paced(writer.record, bank, rate, seconds + warm_up)
    finally:
        writer.close()
    skip = min(int(rate * warm_up), max(0, len(durations) - 1))
    if subject != "h5recorder" and len(durations) < rate * (seconds + warm_up) / 2:
        skip = min(1, len(durations) - 1)  # slower than the rate: only the first call is warm-up
    figures: dict[str, Any] = percentiles_us(durations[skip:])
    figures.update(latency_steps=len(durations) - skip, late_steps=late, latency_rate_hz=rate)
    return figures


def _fresh(root: Path, name: str) -> Path:
    folder = root / name.replace(" ", "_").replace(",", "")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def head_to_head(
    workloads: tuple[str, ...] = ("seed",),
    *,
    seconds: float = 2.0,
    latency_seconds: float = 2.0,
    png: bool = True,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Run every subject on every workload, HDF5 only and (``png``) with PNG frames.

    Returns one :class:`Row` per case, with ratios to mbodied (steps/s) and to the sequential
    limit (MB/s) measured in the same run. Files go to a temporary folder under ``out_dir``
    (default: the system's), removed case by case so that no case pays for another's pages.
    """
    rows: list[Row] = []
    base = Path(tempfile.mkdtemp(prefix="h5recorder-bench-", dir=out_dir))
    say = progress or (lambda _message: None)
    try:
        for name in workloads:
            say(f"{name}: preparing the workload")
            load = workload(name)
            subjects = factories(load)
            step_mb = load.step_bytes / 1e6
            cases: list[Row] = []
            for subject, make in subjects.items():
                for with_png in (False, True):
                    if with_png and (not png or not load.image_keys):
                        continue
                    if with_png and subject not in ("h5recorder", "mbodied", MBODIED_TRUE_PNG):
                        continue
                    if subject == MBODIED_TRUE_PNG and not with_png:
                        continue
                    row = Row(name, subject, with_png)
                    label = f"{name}: {subject}{' + PNG' if with_png else ''}"
                    say(f"{label}: end to end")
                    folder = _fresh(base, subject)
                    writer = make(folder, with_png)
                    count, total, closing = end_to_end(
                        writer,
                        _bank_for(subject, load, with_png),
                        seconds=None if with_png else seconds,
                        steps=PNG_STEPS.get(name, 0) if with_png else None,
                    )
                    if with_png:
                        row.extra["png_files"] = sum(1 for _ in folder.rglob("*.png"))
                    row.steps, row.seconds, row.close_s = count, round(total, 3), round(closing, 3)
                    row.steps_per_s = round(count / total, 1)
                    row.mb_per_s = round(count * step_mb / total, 1)
                    shutil.rmtree(folder, ignore_errors=True)
                    if not subject.startswith("sequential"):
                        say(f"{label}: record() latency at {LATENCY_RATES[name]:g} Hz")
                        folder = _fresh(base, subject)
                        figures = latency(
                            subject, make, load, folder, png=with_png,
                            rate=LATENCY_RATES[name], seconds=latency_seconds,
                        )
                        for key, value in figures.items():
                            setattr(row, key, value)
                        shutil.rmtree(folder, ignore_errors=True)
                    cases.append(row)
            _ratios(cases)
            rows.extend(cases)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def _ratios(rows: list[Row]) -> None:
    theirs = {row.png: row.steps_per_s for row in rows if row.subject == "mbodied"}
    limit = next((row.mb_per_s for row in rows if row.subject == "sequential"), None)
    for row in rows:
        if row.png in theirs and theirs[row.png] > 0:
            row.vs_mbodied = round(row.steps_per_s / theirs[row.png], 2)
        if limit and not row.png:
            row.vs_sequential = round(row.mb_per_s / limit, 2)


def environment() -> dict[str, str]:
    """Machine, date and versions, for the header of a table."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = [f"h5recorder {__version__}"]
    for package in ("mbodied", "h5py", "numpy", "blosc2", "hdf5plugin", "Pillow"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            if package == "mbodied":
                versions.append("mbodied not installed")
    versions.append(f"HDF5 {h5py.version.hdf5_version}")
    versions.append(f"Python {platform.python_version()}")
    return {
        "machine": f"{cpu}, {cores} cores{memory}, {platform.system()} {platform.release()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": ", ".join(versions),
    }


_COLUMNS = (
    "workload", "PNG", "writer", "steps", "steps/s", "MB/s", "vs mbodied", "vs sequential",
    "p50 us", "p99 us", "p99.9 us", "max us",
)


def _cells(row: Row) -> list[str]:
    def num(value: float | None, digits: int = 0, suffix: str = "") -> str:
        if value is None:
            return "-"
        return f"{value:,.{digits}f}{suffix}"

    return [
        row.workload,
        "yes" if row.png else "no",
        row.subject,
        str(row.steps),
        num(row.steps_per_s),
        num(row.mb_per_s),
        num(row.vs_mbodied, 1, "x"),
        num(None if row.vs_sequential is None else 100 * row.vs_sequential, 0, "%"),
        num(row.p50_us, 1),
        num(row.p99_us, 1),
        num(row.p999_us, 1),
        num(row.max_us, 1),
    ]


def text_table(rows: list[Row]) -> str:
    """The rows as a plain, aligned table."""
    cells = [list(_COLUMNS), *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = []
    for line in cells:
        lines.append(
            "  ".join(
                cell.ljust(width) if i < 3 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            )
        )
    return "\n".join(lines)


def markdown_table(rows: list[Row], env: dict[str, str] | None = None) -> str:
    """The rows as a markdown table, headed by machine, date and versions."""
    env = env or environment()
    lines = [
        f"Machine: {env['machine']}  ",
        f"Date: {env['date']}  ",
        f"Versions: {env['versions']}",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "| " + " | ".join("---" if i < 3 else "---:" for i in range(len(_COLUMNS))) + " |",
    ]
    lines.extend("| " + " | ".join(_cells(row)) + " |" for row in rows)
    return "\n".join(lines)
