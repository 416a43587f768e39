"""Episodes written as a LeRobot dataset (format v3.0), read back by LeRobot's own loader.

The read side only: files are opened with :func:`h5recorder.open` and summarized with
:func:`h5recorder.dataset`; nothing here imports the writer. LeRobot itself is not needed to
export: the files are written with pyarrow, pandas (``meta/tasks.parquet``) and PyAV (videos),
the ``lerobot`` extra. What is written, under ``out``::

    meta/info.json                              features, fps, counts, path templates
    meta/stats.json                             merged from the statistics each file stores
    meta/tasks.parquet                          one row per task, indexed by its text
    meta/episodes/chunk-000/file-000.parquet    one row per episode: length, tasks, where its
                                                rows and videos are, its own statistics
    data/chunk-CCC/file-FFF.parquet             one file per episode (FFF = episode % 1000)
    videos/KEY/chunk-CCC/file-FFF.mp4           one file per episode and camera (video mode)

Videos are encoded by worker processes (spawned, one per core at most), one job per episode
and camera; PNG frames (image mode) one job per block of frames and camera.

Time: LeRobot's format is a constant-rate one. Its video decoders look the frame of a row up
by ``round(timestamp * fps)`` and then insist that frame's time is within ``tolerance_s``
(1e-4 s) of the row's ``timestamp``. So each step is placed in the slot of the ``fps`` grid
nearest its recorded time (a step that would share a slot with the one before moves to the
next free slot), its ``timestamp`` is that slot's time, and a video holds one frame per slot,
a step's frame repeated over the slots a stall of the loop left empty. A loop that kept its
rate gives one slot per step; a stall shows as a gap in ``timestamp`` rather than being
hidden, and the report says how far any timestamp is from its recorded time.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import queue
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._format.summary import QUANTILES, quantile_key
from .._read.dataset import dataset
from .._read.episode import Episode, open_episode
from ..errors import SchemaError

__all__ = ["LeRobotExport", "LeRobotFeature", "plan_features", "to_lerobot"]

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder, as LeRobot lays them out
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
TASK_LEAVES = ("task", "instruction", "language_instruction", "prompt")
STAT_KEYS = ("min", "max", "mean", "std", *(quantile_key(q) for q in QUANTILES))
PNG_BLOCK = 64  # frames per PNG job: big enough to amortize a job, small enough to bound memory
# LeRobot's own defaults for videos (``encode_video_frames``): AV1 by SVT-AV1, a keyframe every
# second frame (cheap random access for training), CRF 30, the fastest preset
DEFAULT_CODEC = "libsvtav1"
DEFAULT_CRF = 30
DEFAULT_GOP = 2
DEFAULT_PRESET = 12

_MISSING_EXTRA = ("exporting to LeRobot needs pyarrow, pandas and PyAV: "
                  "pip install 'h5recorder[lerobot]'")


# -- the plan: recorded leaves -> LeRobot features --------------------------------------------


@dataclass(frozen=True)
class LeRobotFeature:
    """One LeRobot feature and the recorded leaves it is made of.

    ``kind`` is ``"camera"`` (one ``HxWx3`` uint8 leaf, stored as video or PNG images),
    ``"vector"`` (the floating-point leaves of one root side by side, as ``float32``) or
    ``"value"`` (one integer, boolean or ``Discrete`` leaf, its own dtype).
    """

    key: str
    kind: str
    leaves: tuple[str, ...]
    dtype: str
    shape: tuple[int, ...]
    names: list[str] | None

    def info(self, fps: int, video_info: dict[str, Any] | None = None) -> dict[str, Any]:
        """The feature as ``meta/info.json`` describes it."""
        entry: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape),
                                 "names": self.names}
        if self.dtype == "video":
            entry["info"] = dict(video_info or {}, **{"video.fps": fps})
        return entry


@dataclass(frozen=True)
class Plan:
    """What an export writes: its features, where the task comes from, what is left out."""

    features: tuple[LeRobotFeature, ...]
    task_leaf: str | None
    left_out: dict[str, str]

    @property
    def cameras(self) -> list[LeRobotFeature]:
        return [f for f in self.features if f.kind == "camera"]

    @property
    def columns(self) -> list[LeRobotFeature]:
        return [f for f in self.features if f.kind != "camera"]


_VECTOR_KEYS = {"action": "action", "state": "observation.state", "supervision": "supervision"}


def _is_camera(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bool:
    return dtype == np.uint8 and len(shape) == 3 and shape[2] == 3


def _looks_like_image(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bool:
    return dtype in (np.uint8, np.uint16) and (
        len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))
    )


def _element_names(label: str, shape: tuple[int, ...]) -> list[str]:
    size = math.prod(shape)
    return [label] if not shape else [f"{label}_{i}" for i in range(size)]


def plan_features(episode: Episode, *, video: bool = True, task: str | None = None) -> Plan:
    """How the leaves of ``episode`` map to LeRobot features (see :func:`to_lerobot`)."""
    cameras: list[LeRobotFeature] = []
    values: list[LeRobotFeature] = []
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    texts: list[str] = []
    left_out: dict[str, str] = {}
    for name, column in episode.columns.items():
        root, *rest = name.split("/")
        label = ".".join(rest) or root
        shape, dtype = column.row_shape, column.dtype
        if column.kind == "text":
            texts.append(name)
        elif column.kind == "tuple":
            left_out[name] = "a Tuple leaf: LeRobot has no feature for it"
        elif column.kind == "box" and _is_camera(dtype, shape):
            group = "observation" if root == "observation" else root
            cameras.append(LeRobotFeature(
                f"{group}.images.{'.'.join(rest) or 'image'}", "camera", (name,),
                "video" if video else "image", shape, ["height", "width", "channels"],
            ))
        elif column.kind == "box" and _looks_like_image(dtype, shape):
            left_out[name] = (f"an image of {dtype} {shape}: LeRobot's image and video features "
                              "hold 8-bit RGB")
        elif len(shape) > 1:
            left_out[name] = f"{len(shape)} dimensions per step: exported are vectors and scalars"
        elif column.kind == "box" and dtype.kind == "f":
            groups.setdefault(root, []).append((name, shape))
        else:
            kind = "int64" if column.kind == "discrete" else str(dtype)
            prefix = _VECTOR_KEYS.get(root, root)
            key = f"{prefix}.{'.'.join(rest)}" if rest else prefix
            values.append(LeRobotFeature(key, "value", (name,), kind, shape or (1,),
                                         _element_names(label, shape)))
    vectors: list[LeRobotFeature] = []
    for root, leaves in groups.items():
        if root == "observation":
            key = "observation.environment_state" if "state" in groups else "observation.state"
        else:
            key = _VECTOR_KEYS.get(root, root)
        names = [n for leaf, shape in leaves
                 for n in _element_names(".".join(leaf.split("/")[1:]) or root, shape)]
        vectors.append(LeRobotFeature(key, "vector", tuple(leaf for leaf, _ in leaves), "float32",
                                      (len(names),), names))
    task_leaf: str | None = None
    if task is None and texts:
        if len(texts) == 1:
            task_leaf = texts[0]
        else:
            named = [t for t in texts if t.rsplit("/", 1)[-1] in TASK_LEAVES]
            if len(named) != 1:
                raise SchemaError(f"several Text leaves {texts} could be the task and none is "
                                  f"named one of {TASK_LEAVES}: pass task=")
            task_leaf = named[0]
    for name in texts:
        if name != task_leaf:
            left_out[name] = ("a Text leaf: the task is given" if task is not None
                              else f"a Text leaf: the task is {task_leaf!r}")
    if task is None and task_leaf is None:
        raise SchemaError("no Text leaf to take each frame's task from: pass task= (--task)")
    features = (*cameras, *vectors, *values)
    keys = [f.key for f in features]
    clash = sorted({k for k in keys if keys.count(k) > 1})
    if clash:
        raise SchemaError(f"leaves map to the same LeRobot feature {clash}: rename them")
    return Plan(features, task_leaf, left_out)


# -- statistics -------------------------------------------------------------------------------


def _feature_stats(feature: LeRobotFeature, stats: dict[str, dict[str, Any]],
                   frames: int) -> dict[str, Any] | None:
    """One feature's statistics as LeRobot keeps them, from the stored (merged) ones.

    Camera statistics are per channel, scaled to [0, 1] and shaped ``(3, 1, 1)``; the others
    per element. ``count`` is the frames they cover (fewer than exported where an episode
    stored none). None when a leaf has none stored.
    """
    parts = [stats.get(leaf) for leaf in feature.leaves]
    if any(part is None for part in parts):
        return None
    result: dict[str, Any] = {"count": [int(min(p.get("count", frames) for p in parts if p))]}
    for key in STAT_KEYS:
        if any(key not in part for part in parts if part is not None):
            continue
        flat = np.concatenate([np.ravel(np.asarray(part[key], np.float64))
                               for part in parts if part is not None])
        if feature.kind == "camera":
            result[key] = (flat / 255.0).reshape(-1, 1, 1).tolist()
        else:
            result[key] = flat.tolist()
    return result


def _column_stats(values: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Statistics of a column the export makes (timestamps, indices), computed exactly."""
    data = values.astype(np.float64).reshape(len(values), -1)
    result: dict[str, Any] = {
        "min": data.min(axis=0).tolist(),
        "max": data.max(axis=0).tolist(),
        "mean": data.mean(axis=0).tolist(),
        "std": data.std(axis=0).tolist(),
        "count": [len(values)],
    }
    for q in QUANTILES:
        result[quantile_key(q)] = np.quantile(data, q, axis=0, method="inverted_cdf").tolist()
    return result


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeRobotExport:
    """What :func:`to_lerobot` wrote.

    Attributes
    ----------
    root
        The dataset folder (``LeRobotDataset(repo_id, root=root)`` loads it).
    episodes
        The files exported, in episode order (``episode_index`` is the position here).
    skipped
        Files left out, with why (unhealthy recordings, unless ``include_unhealthy``).
    frames, fps, video
        Rows written, the frame rate in ``info.json``, whether cameras went to videos.
    features
        ``info.json``'s features.
    left_out
        Recorded leaves that have no LeRobot feature, with why.
    notes
        Everything else worth knowing (estimated fps, statistics not stored, timing drift).
    seconds
        Wall time of the export.
    """

    root: Path
    episodes: tuple[Path, ...]
    skipped: dict[str, list[str]]
    frames: int
    fps: int
    video: bool
    features: dict[str, Any] = field(repr=False)
    left_out: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "episodes": [str(p) for p in self.episodes],
            "skipped": self.skipped,
            "frames": self.frames,
            "fps": self.fps,
            "video": self.video,
            "left_out": self.left_out,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


# -- the workers (spawned processes; each opens its file by path) -----------------------------

_progress: Any = None  # the queue each worker reports finished frames to


def _worker_start(progress: Any) -> None:
    global _progress
    _progress = progress


def _report(frames: int) -> None:
    if _progress is not None:
        _progress.put(frames)


def _codec_options(codec: str, crf: int, gop: int, threads: int) -> dict[str, str]:
    options = {"g": str(gop), "crf": str(crf)}
    if codec == "libsvtav1":
        options["preset"] = str(DEFAULT_PRESET)
        options["svtav1-params"] = f"lp={threads}"
    else:
        options["threads"] = str(threads)
    return options


def encode_video(path: str, leaf: str, out: str, slots: np.ndarray[Any, Any], fps: int,
                 codec: str, crf: int, gop: int, threads: int) -> dict[str, Any]:
    """Encode leaf ``leaf`` of the episode at ``path`` into ``out``: step ``i``'s frame at
    slot ``slots[i]`` of the ``fps`` grid, held until the next step's slot; returns the
    video's description for ``info.json``."""
    import av

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    base = Fraction(1, fps)
    repeats = np.diff(np.append(np.asarray(slots, np.int64), int(slots[-1]) + 1))
    with open_episode(path) as episode, av.open(out, "w") as container:
        column = episode.columns[leaf]
        height, width = column.row_shape[:2]
        stream = container.add_stream(codec, rate=fps,
                                      options=_codec_options(codec, crf, gop, threads))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = base
        stream.time_base = base
        row = 0
        try:
            for chunk in column.iter_chunks():
                for frame in chunk:
                    picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
                    for slot in range(int(slots[row]), int(slots[row] + repeats[row])):
                        picture.pts = slot
                        picture.time_base = base
                        container.mux(stream.encode(picture))
                    row += 1
                _report(len(chunk))
            container.mux(stream.encode(None))
        except av.FFmpegError as error:  # raised in a worker: the message is what crosses back
            raise RuntimeError(f"{path}: {leaf}: {codec} failed on {width}x{height} frames at "
                               f"{fps} fps, frame {row}: {error}") from error
        described = {
            "video.height": height,
            "video.width": width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.channels": 3,
            "has_audio": False,
        }
    return described


def encode_pngs(path: str, leaf: str, start: int, stop: int) -> list[bytes]:
    """PNG files of rows ``[start, stop)`` of leaf ``leaf`` (lossless; fpng)."""
    import fpng

    with open_episode(path) as episode:
        frames = episode.columns[leaf].read(start, stop)
    encoded = [bytes(fpng.fpng_ext.encode_ndarray(np.ascontiguousarray(f))) for f in frames]
    _report(len(encoded))
    return encoded


# -- one episode's rows -----------------------------------------------------------------------


@dataclass
class _Episode:
    index: int
    path: Path
    length: int
    first: int  # its first row's global index
    slots: np.ndarray[Any, Any]  # each step's slot of the fps grid: timestamp = slot / fps
    tasks: np.ndarray[Any, Any]  # task text of each frame
    columns: dict[str, np.ndarray[Any, Any]]  # feature key -> rows
    fps: int

    @property
    def location(self) -> tuple[int, int]:
        return divmod(self.index, CHUNKS_SIZE)


def _read_rows(index: int, path: Path, episode: Episode, plan: Plan, fps: int, first: int,
               task: str | None, notes: list[str]) -> _Episode:
    length = len(episode)
    if episode.time is not None:
        seconds = episode.time.seconds()
    else:
        seconds = np.arange(length) / fps
        notes.append(f"{path.name}: no per-step time in the file: timestamps are frame / fps")
    if length > 1 and np.any(np.diff(seconds) <= 0):
        raise SchemaError(f"{path}: its recorded times do not increase from step to step")
    slots = grid_slots(seconds, fps)
    moved = int(np.count_nonzero(slots != np.round(seconds * fps)))
    if moved:
        off = np.abs(slots / fps - seconds).max()
        notes.append(f"{path.name}: {moved} steps recorded less than a frame after the one "
                     f"before moved to the next free slot (timestamps up to {off:.3f} s from "
                     "their recorded time)")
    if length and slots[-1] + 1 > length:
        notes.append(f"{path.name}: {int(slots[-1]) + 1 - length} slots of the {fps} fps grid "
                     "hold no step (the loop stalled or ran slow): they are gaps in timestamp")
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for feature in plan.columns:
        parts = [episode.columns[leaf].read(0, length) for leaf in feature.leaves]
        if feature.kind == "vector":
            columns[feature.key] = np.concatenate(
                [p.reshape(length, -1).astype(np.float32) for p in parts], axis=1)
        else:
            columns[feature.key] = parts[0].astype(np.dtype(feature.dtype), copy=False)
    if task is not None:
        tasks = np.full(length, task, dtype=object)
    else:
        assert plan.task_leaf is not None
        tasks = episode.columns[plan.task_leaf].read(0, length)
    return _Episode(index, path, length, first, slots, tasks, columns, fps)


def grid_slots(seconds: np.ndarray[Any, Any], fps: int) -> np.ndarray[Any, Any]:
    """Each step's slot of the ``fps`` grid: the nearest to its recorded time, or the first one
    after the previous step's slot when that is taken (strictly increasing)."""
    nearest = np.round(np.asarray(seconds, np.float64) * fps).astype(np.int64)
    steps = np.arange(len(nearest))
    slots: np.ndarray[Any, Any] = np.maximum.accumulate(nearest - steps) + steps
    return slots


def timestamps(slots: np.ndarray[Any, Any], fps: int) -> np.ndarray[Any, Any]:
    """LeRobot's ``timestamp`` of each slot (float32 seconds, as LeRobot computes it)."""
    return (np.asarray(slots, np.float64) / fps).astype(np.float32)


def _arrow_column(values: np.ndarray[Any, Any], shape: tuple[int, ...]) -> Any:
    import pyarrow as pa

    if shape == (1,):
        return pa.array(values.reshape(len(values)))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, shape[0])


def _hf_feature(feature: dict[str, Any]) -> dict[str, Any]:
    """A feature as the ``datasets`` library describes it in a parquet file's metadata."""
    if feature["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": feature["dtype"], "_type": "Value"}
    if list(feature["shape"]) == [1]:
        return value
    return {"feature": value, "length": feature["shape"][0], "_type": "List"}


class _DataFile:
    """One episode's parquet file, written a block of rows at a time."""

    def __init__(self, root: Path, ep: _Episode, plan: Plan, task_index: dict[str, int],
                 hf: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        chunk, file = ep.location
        self.path = root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ep, self.plan = ep, plan
        rows = np.arange(ep.length, dtype=np.int64)
        self.fixed: dict[str, Any] = {
            **{f.key: _arrow_column(ep.columns[f.key], f.shape) for f in plan.columns},
            "timestamp": pa.array(timestamps(ep.slots, ep.fps)),
            "frame_index": pa.array(rows),
            "episode_index": pa.array(np.full(ep.length, ep.index, np.int64)),
            "index": pa.array(rows + ep.first),
            "task_index": pa.array(np.array([task_index[t] for t in ep.tasks], np.int64)),
        }
        self.images = [f.key for f in plan.cameras if f.dtype == "image"]
        image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        fields = [pa.field(key, image_type) for key in self.images]
        fields += [pa.field(key, column.type) for key, column in self.fixed.items()]
        metadata = {"huggingface": json.dumps({"info": {"features": hf}})}
        self.schema = pa.schema(fields, metadata=metadata)
        # PNG bytes neither compress nor repeat: snappy and dictionaries only for the rest
        plain = {key: "none" for key in self.images}
        self.writer = pq.ParquetWriter(
            self.path, self.schema,
            compression={f.name: plain.get(f.name, "snappy") for f in fields},
            use_dictionary=[key for key in self.fixed],
        )
        self.image_type = image_type

    def write(self, start: int, stop: int, pngs: dict[str, list[bytes]]) -> None:
        import pyarrow as pa

        arrays = [
            pa.array([{"bytes": b, "path": None} for b in pngs[key]], self.image_type)
            for key in self.images
        ]
        arrays += [column.slice(start, stop - start) for column in self.fixed.values()]
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


# -- the export -------------------------------------------------------------------------------


def _estimate_fps(paths: Sequence[Path]) -> int | None:
    gaps = []
    for path in paths:
        with open_episode(path) as episode:
            if episode.time is not None and len(episode) > 1:
                gaps.append(np.diff(episode.time.seconds()))
    if not gaps:
        return None
    every = np.concatenate(gaps)
    median = float(np.median(every))
    if median <= 0:
        return None
    # a paced loop's step is late or early, never both for long: the mean of the ordinary gaps
    # is its period, where the median of jittered gaps can be a percent off
    ordinary = every[(every > 0.5 * median) & (every < 1.5 * median)]
    return max(1, round(1.0 / float(ordinary.mean())))


def _pool(workers: int, progress: Any) -> ProcessPoolExecutor:
    # spawn, never fork: this process holds h5py (and its lock) and may hold threads
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                               initargs=(progress,))


def _drain(progress: Any, bar: Any) -> None:
    while True:
        try:
            bar.update(progress.get_nowait())
        except queue.Empty:
            return


class Crew:
    """The encoding processes. Each job is kept until it completes: a worker that dies (killed
    for memory, say) breaks the whole pool, which is then rebuilt and every unfinished job
    resubmitted, up to ``RETRIES`` times, instead of failing the export."""

    RETRIES = 2

    def __init__(self, workers: int, progress: Any, bar: Any) -> None:
        self.workers, self.progress, self.bar = workers, progress, bar
        self.pool = _pool(workers, progress)
        self.rebuilds = 0
        self.jobs: dict[int, tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = {}
        self.count = 0

    def submit(self, function: Callable[..., Any], *args: Any) -> int:
        self.count += 1
        self.jobs[self.count] = (function, args, self.pool.submit(function, *args))
        return self.count

    def result(self, job: int) -> Any:
        while True:
            future = self.jobs[job][2]
            try:
                value = future.result(timeout=0.2)
            except FutureTimeout:
                _drain(self.progress, self.bar)
                continue
            except BrokenProcessPool as error:
                if self.rebuilds >= self.RETRIES:
                    raise RuntimeError(f"the encoding processes died {self.rebuilds + 1} times; "
                                       "too little memory for the workers? try fewer") from error
                self._rebuild()
                continue
            del self.jobs[job]
            return value

    def _rebuild(self) -> None:
        self.rebuilds += 1
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = _pool(self.workers, self.progress)
        for job, (function, args, _) in self.jobs.items():
            self.jobs[job] = (function, args, self.pool.submit(function, *args))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def to_lerobot(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    fps: int | None = None,
    video: bool = True,
    task: str | None = None,
    include_unhealthy: bool = False,
    robot_type: str | None = None,
    codec: str = DEFAULT_CODEC,
    crf: int = DEFAULT_CRF,
    gop: int = DEFAULT_GOP,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> LeRobotExport:
    """Write recorded episodes as a LeRobot dataset (format v3.0).

    Parameters
    ----------
    source
        Episodes as :func:`h5recorder.dataset` takes them: a folder, a glob, a file, or an
        iterable of files; they must share one schema.
    out
        The dataset folder to create (``LeRobotDataset(repo_id, root=out)``). It must not
        exist, or be empty, unless ``overwrite``.
    fps
        The frame rate in ``info.json``; default: from the recorded times (the median step).
    video
        Cameras as videos (``codec``, one MP4 file per episode and camera; lossy) or, when
        False, as PNG images inside the data files (lossless, much larger).
    task
        Every frame's task. Default: a ``Text`` leaf, when there is one (or one named
        ``task``, ``instruction``, ``language_instruction`` or ``prompt``).
    include_unhealthy
        Also export episodes whose :attr:`Episode.health` lists problems (a killed
        recording, dropped steps, ...). They are left out by default, and listed in
        ``skipped``.
    robot_type
        Written to ``info.json``.
    codec, crf, gop
        Video encoding; the defaults are LeRobot's own (AV1 by SVT-AV1, CRF 30, a keyframe
        every 2 frames).
    workers
        Encoding processes; default: one per core.
    progress
        Show a progress bar (frames encoded) on stderr.
    overwrite
        Remove ``out`` first when it holds anything.

    Returns
    -------
    LeRobotExport
        Where it went, which episodes, what was left out and why.

    Notes
    -----
    Features: a ``HxWx3`` uint8 leaf becomes a camera (``observation.images.NAME``); the
    floating-point leaves of a root become one ``float32`` vector with element names
    (``action``, ``observation.state`` from ``state``, and from ``observation``
    ``observation.state``, or ``observation.environment_state`` beside a ``state`` root);
    integer, boolean and ``Discrete`` leaves their own feature (``ROOT.NAME``, ``Discrete`` as
    int64); the task ``Text`` leaf the per-frame ``task_index``. Other leaves (16-bit or
    4-channel images, Tuples, other Text, arrays of 2 or more dimensions) are listed in
    ``left_out``. ``timestamp`` is each step's recorded time since the episode's first step
    (float32), ``frame_index`` the step, ``index`` the row over all episodes.

    ``meta/stats.json`` is built from the statistics stored in the files, merged as
    :func:`h5recorder.dataset` merges them; the statistics of the columns the export makes
    (timestamps, indices) are computed from them exactly.
    """
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq
        from tqdm import tqdm
    except ImportError as error:
        raise ImportError(_MISSING_EXTRA) from error
    if video:
        try:
            import av  # noqa: F401
        except ImportError as error:
            raise ImportError(_MISSING_EXTRA) from error
    began = time.perf_counter()
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} exists and is not empty (overwrite=True replaces it)")
    summary = dataset(source)
    inside = [str(e.path) for e in summary.episodes
              if e.path.resolve().is_relative_to(root.resolve())]
    if inside:
        raise ValueError(f"{root} holds the episodes to export ({inside[:3]}): choose another")
    skipped: dict[str, list[str]] = {}
    kept: list[Path] = []
    for info in summary.episodes:
        if info.steps == 0:
            skipped[str(info.path)] = ["no steps"]
        elif info.ok or include_unhealthy:
            kept.append(info.path)
        else:
            skipped[str(info.path)] = list(info.problems)
    if not kept:
        raise ValueError(f"no healthy episode in {source!r} ({len(skipped)} unhealthy: "
                         "include_unhealthy=True exports them)")
    notes: list[str] = []
    if len(kept) != len(summary.episodes):
        summary = dataset(kept)
    unhealthy = [e.path.name for e in summary.episodes if not e.ok]
    if unhealthy:
        notes.append(f"exported although unhealthy: {unhealthy}")
    without = [e.path.name for e in summary.episodes if not e.statistics]
    if without:
        notes.append(f"no statistics stored in {without}: stats.json covers the other episodes")

    with open_episode(kept[0]) as episode:
        plan = plan_features(episode, video=video, task=task)
    if fps is None:
        fps = _estimate_fps(kept)
        if fps is None:
            raise ValueError("the files keep no per-step time: pass fps=")
        notes.append(f"fps {fps}, from the mean time between recorded steps (stalls left out)")
    rows: list[_Episode] = []
    first = 0
    for index, path in enumerate(kept):  # one file open at a time, however many there are
        with open_episode(path) as episode:
            rows.append(_read_rows(index, path, episode, plan, fps, first, task, notes))
        first += rows[-1].length
    frames = sum(ep.length for ep in rows)

    tasks: dict[str, int] = {}
    for ep in rows:
        for text in dict.fromkeys(ep.tasks.tolist()):
            tasks.setdefault(str(text), len(tasks))

    features: dict[str, Any] = {f.key: f.info(fps) for f in plan.features}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"),
                       ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    hf = {key: _hf_feature(ft) for key, ft in features.items() if ft["dtype"] != "video"}

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    video_info: dict[str, dict[str, Any]] = {}
    if not plan.cameras:
        for ep in rows:
            _write_data(root, ep, plan, tasks, hf, None)
    else:
        cores = os.cpu_count() or 1
        jobs = [(ep, cam) for ep in rows for cam in plan.cameras]
        workers = max(1, workers or cores)
        if video:
            workers = min(workers, len(jobs))
        channel = multiprocessing.get_context("spawn").Queue()
        bar = tqdm(total=frames * len(plan.cameras), unit="frame", disable=not progress,
                   desc="lerobot export")
        try:
            crew = Crew(workers, channel, bar)
            try:
                pending = []
                if video:
                    threads = max(1, cores // workers)
                    for ep, cam in jobs:
                        chunk, file = ep.location
                        target = root / VIDEO_PATH.format(video_key=cam.key, chunk_index=chunk,
                                                          file_index=file)
                        pending.append((cam.key, crew.submit(
                            encode_video, str(ep.path), cam.leaves[0], str(target), ep.slots,
                            fps, codec, crf, gop, threads)))
                for ep in rows:
                    _write_data(root, ep, plan, tasks, hf, crew)
                for key, job in pending:
                    video_info.setdefault(key, crew.result(job))
            finally:
                crew.close()
            _drain(channel, bar)
        finally:
            bar.close()
            channel.close()
    for cam in plan.cameras:
        if cam.dtype == "video":
            features[cam.key] = cam.info(fps, video_info.get(cam.key))

    stats: dict[str, Any] = {}
    for feature in plan.features:
        entry = _feature_stats(feature, summary.stats, frames)
        if entry is None:
            notes.append(f"{feature.key}: no statistics stored for {list(feature.leaves)}")
        else:
            stats[feature.key] = entry
    made = _made_columns(rows, tasks)
    stats.update({key: _column_stats(values) for key, values in made.items()})
    missing = [f.key for f in plan.features if f.key in stats
               and any(k not in stats[f.key] for k in STAT_KEYS)]
    if missing:
        notes.append(f"quantiles not stored for {missing}")

    _write_json(root / "meta/stats.json", stats)
    index = pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks))
    index.to_parquet(root / "meta/tasks.parquet")
    episodes_table = _episodes_table(rows, plan, tasks, fps)
    path = root / EPISODES_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episodes_table), path)
    meta = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(rows),
        "total_frames": frames,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{len(rows)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if video and plan.cameras else None,
        "features": features,
    }
    _write_json(root / "meta/info.json", meta)
    return LeRobotExport(root, tuple(kept), skipped, frames, fps, video, features,
                         dict(plan.left_out), notes, time.perf_counter() - began)


def _write_data(root: Path, ep: _Episode, plan: Plan, tasks: dict[str, int],
                hf: dict[str, Any], crew: Crew | None) -> None:
    """The episode's parquet file; its PNG frames encoded by the pool, a few blocks ahead."""
    data = _DataFile(root, ep, plan, tasks, hf)
    try:
        blocks = [(start, min(ep.length, start + PNG_BLOCK))
                  for start in range(0, max(ep.length, 1), PNG_BLOCK)]
        if not data.images or crew is None:
            data.write(0, ep.length, {})
            return
        ahead = 2 * crew.workers
        submitted: list[dict[str, int]] = []

        def submit(block: tuple[int, int]) -> None:
            submitted.append({
                cam.key: crew.submit(encode_pngs, str(ep.path), cam.leaves[0], *block)
                for cam in plan.cameras
            })

        for block in blocks[:ahead]:
            submit(block)
        for number, (start, stop) in enumerate(blocks):
            futures = submitted[number]
            data.write(start, stop, {key: crew.result(job) for key, job in futures.items()})
            submitted[number] = {}
            if number + ahead < len(blocks):
                submit(blocks[number + ahead])
    finally:
        data.close()


def _made_columns(rows: list[_Episode], tasks: dict[str, int]) -> dict[str, np.ndarray[Any, Any]]:
    return {
        "timestamp": np.concatenate([timestamps(ep.slots, ep.fps) for ep in rows]),
        "frame_index": np.concatenate([np.arange(ep.length) for ep in rows]),
        "episode_index": np.concatenate([np.full(ep.length, ep.index) for ep in rows]),
        "index": np.arange(sum(ep.length for ep in rows)),
        "task_index": np.concatenate([[tasks[str(t)] for t in ep.tasks] for ep in rows]),
    }


def _episodes_table(rows: list[_Episode], plan: Plan, tasks: dict[str, int],
                    fps: int) -> list[dict[str, Any]]:
    """One row per episode, the columns LeRobot's episodes metadata holds."""
    table = []
    for ep in rows:
        chunk, file = ep.location
        row: dict[str, Any] = {
            "episode_index": ep.index,
            "tasks": list(dict.fromkeys(str(t) for t in ep.tasks)),
            "length": ep.length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": ep.first,
            "dataset_to_index": ep.first + ep.length,
        }
        end = float(ep.slots[-1] + 1) / fps if ep.length else 0.0
        for cam in plan.cameras:
            if cam.dtype == "video":
                row[f"videos/{cam.key}/chunk_index"] = chunk
                row[f"videos/{cam.key}/file_index"] = file
                row[f"videos/{cam.key}/from_timestamp"] = 0.0
                row[f"videos/{cam.key}/to_timestamp"] = end
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        own = dataset([ep.path]).stats
        for feature in plan.features:
            entry = _feature_stats(feature, own, ep.length)
            for key, value in (entry or {}).items():
                row[f"stats/{feature.key}/{key}"] = value
        made = _made_columns([ep], tasks)
        made["index"] = made["index"] + ep.first
        for key, values in made.items():
            for stat, value in _column_stats(values).items():
                row[f"stats/{key}/{stat}"] = value
        table.append(row)
    return table


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4))
