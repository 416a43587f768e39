"""The ``h5recorder`` command: ``demo`` records a few seconds of moving frames, ``recover``
mends a file whose recorder was killed, ``inspect`` says what a recording holds and whether it
went well, ``view`` shows it in the Rerun viewer, ``stats`` merges the statistics of many
episodes, ``export lerobot`` writes episodes as a LeRobot dataset."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._format.attrs import STATUS_ATTRIBUTE
from .._write.files import replace_file
from .._write.recorder import Recorder
from .._write.recover import recover
from .._write.writer import Status
from ..errors import ReadError, RecorderError, RecoveryError, SchemaError
from ..workloads import WORKLOADS, workload


def _pace(started: float, count: int, period: float) -> None:
    """Wait until step ``count`` is due: sleep most of the way, spin the last 0.3 ms."""
    target = started + count * period
    ahead = target - time.perf_counter()
    if ahead > 0.0005:
        time.sleep(ahead - 0.0003)
    while time.perf_counter() < target:
        pass


_LIVE_EVERY = 0.25  # seconds between looks at the recorder's status
_BEHIND_SECONDS = 1.0  # frames pending for longer than this at close(): the encoders are behind


def _frames_line(status: Status) -> str:
    """The frames part of the live line: how far the encoders are behind, and what it costs."""
    close = status.frames_close_seconds
    line = f"frames pending {status.frames_pending:5d}, close() ~{close:.1f} s"
    if status.frames_deferred:
        line += f", {status.frames_deferred} deferred: encoders behind"
    elif close > _BEHIND_SECONDS:
        line += ": encoders behind"
    return line


def _demo(args: argparse.Namespace) -> int:
    print(f"preparing the {args.workload!r} workload (real photographs, moving, with noise)...")
    load = workload(args.workload, bank_size=16, cameras=args.cameras)
    keys = [] if args.no_frames else load.image_keys
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    latencies = np.zeros(1 << 22, np.int64)
    recorder = Recorder(
        f"demo_{args.workload}", out_dir=args.out_dir, image_keys_to_save=keys, **load.spaces()
    )
    if not recorder.wait_ready(timeout=0.2):
        print("compiling the kernels (first run on this machine only)...")
        recorder.wait_ready()
    pace = f"{args.rate:g} steps/s" if period else "flat out"
    print(f"recording {args.seconds:g} s, {pace}, PNG frames of {keys or 'no key'}")
    started = time.perf_counter()
    next_print = started + _LIVE_EVERY
    count = 0
    deadline = started + args.seconds
    tty = sys.stdout.isatty()
    warned = False
    bank = load.bank
    while True:
        now = time.perf_counter()
        if now >= deadline or count == len(latencies):
            break
        step = bank[count % len(bank)]
        begin = time.perf_counter_ns()
        recorder.record(**step)
        latencies[count] = time.perf_counter_ns() - begin
        count += 1
        if period:
            _pace(started, count, period)
        if now >= next_print:
            status = recorder.status()
            next_print = now + _LIVE_EVERY
            if tty:
                print(
                    f"\r{now - started:5.1f} s  {count / (now - started):8.0f} steps/s  "
                    f"{count * load.step_bytes / (now - started) / 1e6:7.1f} MB/s  "
                    f"ring {status.ring_pending}/{status.ring_capacity}  "
                    f"{_frames_line(status)}",
                    end="",
                    flush=True,
                )
            elif not warned and (
                status.frames_deferred or status.frames_close_seconds > _BEHIND_SECONDS
            ):  # a log gets one line, as soon as the encoders fall behind
                print(f"{now - started:5.1f} s  {_frames_line(status)}", flush=True)
                warned = True
    recorded = time.perf_counter()
    recorder.close()
    finished = time.perf_counter()
    if tty:
        print()
    status = recorder.status()
    lat = latencies[:count] / 1000.0
    size = recorder.filename.stat().st_size
    raw = count * load.step_bytes
    rows = [
        ("steps", f"{count} of {load.step_bytes / 1e6:.2f} MB in {recorded - started:.2f} s"),
        ("close()", f"{finished - recorded:.2f} s"),
        (
            "end to end",
            f"{count / (finished - started):.0f} steps/s, "
            f"{raw / (finished - started) / 1e6:.1f} MB/s",
        ),
        (
            "record()",
            f"p50 {np.percentile(lat, 50):.1f} us, p99 {np.percentile(lat, 99):.1f} us, "
            f"max {lat.max():.1f} us",
        ),
        ("waits, drops", f"{status.waits} ({status.wait_seconds:.2f} s), {status.drops}"),
        (
            "PNG frames",
            f"{status.frames_written} written, {status.frames_deferred} deferred to "
            f"close(), {status.frames_missing} missing",
        ),
        ("file", f"{size / 1e6:.1f} MB (raw {raw / 1e6:.1f} MB)"),
        ("written to", str(recorder.filename.resolve())),
        ("frames in", str(recorder.frames_dir.resolve())),
    ]
    for name, value in rows:
        print(f"  {name:<13} {value}")
    return 0


def _recover(args: argparse.Namespace) -> int:
    code = 0
    for path in args.paths:
        try:
            print(recover(path).summary())
        except RecoveryError as error:
            print(f"error: {error}", file=sys.stderr)
            code = 1
    return code


def _inspect(args: argparse.Namespace) -> int:
    import json

    from .._read.episode import open_episode
    from .inspect import render, summarize

    code = 0
    summaries = []
    for path in args.paths:
        try:
            with open_episode(path) as episode:
                summary = summarize(episode)
        except ReadError as error:
            print(f"error: {error}", file=sys.stderr)
            summaries.append({"path": str(path), "error": str(error), "healthy": False})
            code = 2
            continue
        summaries.append(summary)
        if args.check and not summary["healthy"]:
            code = max(code, 1)
        if not args.json:
            print(render(summary))
    if args.json:
        print(json.dumps(summaries if len(summaries) != 1 else summaries[0], indent=2))
    return code


def _stats(args: argparse.Namespace) -> int:
    import json

    from .._read.dataset import dataset

    try:
        data = dataset(args.source)
    except (FileNotFoundError, SchemaError, ReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summarized = sum(e.statistics for e in data.episodes)
    print(f"{len(data)} episodes, {data.steps:,} steps ({summarized} closed with statistics)")
    for episode in data.episodes:
        for problem in episode.problems:
            print(f"  {episode.path.name}: {problem}")
    keys = ("mean", "std", "min", "q01", "q10", "q50", "q90", "q99", "max")
    with np.printoptions(precision=4, suppress=True, linewidth=10**6, threshold=64):
        for name, stats in data.stats.items():
            leaf = data.schema[name]
            print(f"{name}  {leaf.space} {leaf.shape} {leaf.dtype}, {stats['count']:,} steps")
            for key in keys:
                if key in stats:
                    value = stats[key]
                    shown = f"{value:.6g}" if isinstance(value, float) else np.asarray(value)
                    print(f"  {key:<5} {shown}")
            if "rank_error" in stats:
                print(f"  quantiles within {np.max(stats['rank_error']):.4%} in rank")
            if "value_counts" in stats:
                print(f"  value counts {np.asarray(stats['value_counts'])}")
    source = Path(args.source)
    out = Path(args.json) if args.json else (source if source.is_dir() else Path()) / "stats.json"
    replace_file(out, json.dumps(data.to_dict(), indent=1).encode())
    print(f"written to {out}")
    return 0


def _view(args: argparse.Namespace) -> int:
    from .view import view

    try:
        kinds = view(args.path, save=args.save, keys=args.key)
    except (ImportError, ReadError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    hidden = [name for name, kind in kinds.items() if kind is None]
    if hidden:
        print(f"not shown (more than 64 elements per step): {', '.join(hidden)}",
              file=sys.stderr)
    if args.save:
        print(f"saved {args.save}; open it with: rerun {args.save}")
    return 0


def _export_lerobot(args: argparse.Namespace) -> int:
    from .lerobot import to_lerobot

    try:
        done = to_lerobot(
            args.source, args.out, fps=args.fps, video=not args.images, task=args.task,
            include_unhealthy=args.include_unhealthy, robot_type=args.robot_type,
            crf=args.crf, workers=args.workers, overwrite=args.overwrite,
        )
    except (ImportError, ReadError, SchemaError, ValueError, FileExistsError,
            FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kind = "videos" if done.video else "PNG images"
    print(f"{len(done.episodes)} episodes, {done.frames} frames at {done.fps} fps, cameras as "
          f"{kind}, written to {done.root} in {done.seconds:.1f} s")
    for path, problems in done.skipped.items():
        print(f"left out {path}: {'; '.join(problems)} (--include-unhealthy exports it)")
    for leaf, why in done.left_out.items():
        print(f"not exported: {leaf}: {why}")
    for note in done.notes:
        print(f"note: {note}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from . import bench as _bench

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    rows = _bench.head_to_head(
        tuple(args.workload or ["seed"]),
        seconds=args.seconds,
        latency_seconds=args.latency_seconds,
        png=not args.no_png,
        out_dir=args.out_dir,
        progress=say,
    )
    if _bench.mbodied_recorder() is None:
        say("mbodied is not importable here: no mbodied rows (pip install mbodied==1.5.1)")
    print(_bench.markdown_table(rows) if args.markdown else _bench.text_table(rows))
    return 0


def _live_summary(file: Any) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(file.attrs.get(STATUS_ATTRIBUTE, "{}") or "{}")
    status["size"] = int(file.attrs.get("size", 0))
    return status


def _live_line(status: dict[str, Any], taken: float) -> str:
    """steps, rate, ring fill, frames and the last commit, as of the snapshot ``taken``."""
    capacity = status.get("ring_capacity") or 0
    pending = status.get("ring_pending", 0)
    fill = f"{100 * pending / capacity:3.0f}% ({pending}/{capacity})" if capacity else "-"
    rate = status.get("steps_per_second")
    rate_text = f"{rate:,.1f}/s" if isinstance(rate, int | float) and rate == rate else "-"
    return (
        f"{time.strftime('%H:%M:%S', time.localtime(taken))}  steps {status['size']:,}  "
        f"rate {rate_text}  ring {fill}  frames {status.get('frames_written', 0):,} written, "
        f"{status.get('frames_pending', 0):,} pending  last commit #{status.get('commits', 0)}"
        f" covers {status.get('rows_committed', status['size']):,} steps"
    )


def _live(args: argparse.Namespace) -> int:
    """Print a line per snapshot (``read_live``) until the recording ends or ``--count``."""
    from .._read.live import live_address, read_live

    count = 0
    while True:
        recording = live_address(args.path) is not None
        try:
            status = read_live(args.path, _live_summary)
        except (OSError, RecorderError) as error:
            print(f"{args.path}: {error}", file=sys.stderr)
            return 2
        print(_live_line(status, time.time()) + ("" if recording else "  (not recording)"),
              flush=True)
        count += 1
        if not recording or (args.count and count >= args.count):
            return 0
        time.sleep(args.every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="h5recorder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="record a few seconds of moving frames and print figures")
    demo.add_argument("--workload", choices=WORKLOADS, default="rig")
    demo.add_argument("--seconds", type=float, default=3.0)
    demo.add_argument("--rate", type=float, default=30.0, help="steps per second (0: flat out)")
    demo.add_argument("--cameras", type=int, default=3, help="rig cameras, 1 to 3")
    demo.add_argument("--no-frames", action="store_true", help="HDF5 only, no PNG frames")
    demo.add_argument("--out-dir", default=str(Path("saved_datasets")))
    demo.set_defaults(run=_demo)
    mend = sub.add_parser("recover", help="make a file left by a killed recorder consistent")
    mend.add_argument("paths", nargs="+", type=Path)
    mend.set_defaults(run=_recover)
    look = sub.add_parser(
        "inspect", help="what a recording holds and whether it went well"
    )
    look.add_argument("paths", nargs="+", type=Path)
    look.add_argument("--json", action="store_true", help="one JSON object per file")
    look.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a recording is unhealthy (drops, missing frames, rows past size, "
        "not closed), 2 when a file cannot be read",
    )
    look.set_defaults(run=_inspect)
    merged = sub.add_parser(
        "stats", help="episodes, health and merged statistics of a folder, from summaries only"
    )
    merged.add_argument("source", help="a folder of episodes, a glob pattern or one file")
    merged.add_argument("--json", help="where to write them (default: SOURCE/stats.json)")
    merged.set_defaults(run=_stats)
    show = sub.add_parser(
        "view", help="show a recording in the Rerun viewer (needs the 'view' extra)"
    )
    show.add_argument("path", type=Path)
    show.add_argument("--save", type=Path, help="write a .rrd file instead of showing it")
    show.add_argument("--key", action="append", help="a leaf to show (repeatable; default: all)")
    show.set_defaults(run=_view)
    live = sub.add_parser(
        "live", help="a live summary of a recording in progress (another process's)"
    )
    live.add_argument("path", type=Path)
    live.add_argument("--every", type=float, default=1.0, help="seconds between lines")
    live.add_argument("--count", type=int, default=0, help="lines to print (0: until it ends)")
    live.set_defaults(run=_live)
    export = sub.add_parser("export", help="write episodes in another library's format")
    formats = export.add_subparsers(dest="format", required=True)
    lerobot = formats.add_parser(
        "lerobot", help="a LeRobot dataset (v3.0) that LeRobotDataset(repo_id, root=OUT) loads"
    )
    lerobot.add_argument("source", help="a folder of episodes, a glob pattern or one file")
    lerobot.add_argument("out", type=Path, help="the dataset folder to create")
    lerobot.add_argument("--fps", type=int, default=None,
                         help="frame rate (default: from the recorded times)")
    storage = lerobot.add_mutually_exclusive_group()
    storage.add_argument("--video", action="store_true",
                         help="cameras as AV1 videos, one per episode and camera (the default)")
    storage.add_argument("--images", action="store_true",
                         help="cameras as lossless PNG images inside the data files")
    lerobot.add_argument("--task", default=None,
                         help="every frame's task (default: the recording's Text leaf)")
    lerobot.add_argument("--include-unhealthy", action="store_true",
                         help="also export killed or otherwise unhealthy recordings")
    lerobot.add_argument("--robot-type", default=None, help="written to meta/info.json")
    lerobot.add_argument("--crf", type=int, default=30,
                         help="video quality: lower is better and larger (default 30)")
    lerobot.add_argument("--workers", type=int, default=None,
                         help="encoding processes (default: one per core)")
    lerobot.add_argument("--overwrite", action="store_true", help="replace OUT when not empty")
    lerobot.set_defaults(run=_export_lerobot)
    bench = sub.add_parser(
        "bench", help="h5recorder against mbodied, naive h5py and a sequential write, side by side"
    )
    bench.add_argument(
        "--workload",
        choices=WORKLOADS,
        action="append",
        help="a workload to run (repeatable; default: seed)",
    )
    bench.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="seconds of flat-out recording per case (default 2)",
    )
    bench.add_argument(
        "--latency-seconds",
        type=float,
        default=2.0,
        help="seconds of paced recording per latency case (default 2)",
    )
    bench.add_argument("--no-png", action="store_true", help="HDF5 only, no PNG cases")
    bench.add_argument(
        "--markdown",
        action="store_true",
        help="a markdown table headed by machine, date and versions",
    )
    bench.add_argument("--out-dir", default=None, help="folder for the temporary files")
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
