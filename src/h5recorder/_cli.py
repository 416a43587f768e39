"""The ``h5recorder`` command: ``demo`` records a few seconds of moving frames, ``recover``
mends a file whose recorder was killed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ._recorder import Recorder
from ._recover import recover
from .errors import RecoveryError
from .workloads import WORKLOADS, workload


def _demo(args: argparse.Namespace) -> int:
    print(f"preparing the {args.workload!r} workload (real photographs, moving, with noise)...")
    load = workload(args.workload, bank_size=32)
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    latencies = np.zeros(1 << 22, np.int64)
    recorder = Recorder(
        f"demo_{args.workload}", out_dir=args.out_dir, image_keys_to_save=[], **load.spaces()
    )
    if not recorder.wait_ready(timeout=0.2):
        print("compiling the kernels (first run on this machine only)...")
        recorder.wait_ready()
    started = time.perf_counter()
    next_print = started + 0.5
    count = 0
    deadline = started + args.seconds
    tty = sys.stdout.isatty()
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
            target = started + count * period
            while time.perf_counter() < target:
                pass
        if tty and now >= next_print:
            status = recorder.status()
            print(
                f"\r{now - started:5.1f} s  {count / (now - started):9.0f} steps/s  "
                f"ring {status.ring_pending}/{status.ring_capacity}  "
                f"committed {status.rows_committed}",
                end="",
                flush=True,
            )
            next_print = now + 0.5
    recorded = time.perf_counter()
    recorder.close()
    finished = time.perf_counter()
    if tty:
        print()
    status = recorder.status()
    lat = latencies[:count] / 1000.0
    size = recorder.filename.stat().st_size
    raw = count * load.step_bytes
    print(
        f"recorded {count} steps of {load.step_bytes / 1e3:.1f} kB in {recorded - started:.2f} s, "
        f"close() took {finished - recorded:.2f} s"
    )
    print(
        f"  end to end      {count / (finished - started):10.0f} steps/s  "
        f"{raw / (finished - started) / 1e6:8.1f} MB/s"
    )
    print(
        f"  record() p50    {np.percentile(lat, 50):10.1f} us   p99 {np.percentile(lat, 99):.1f} us"
        f"   max {lat.max():.1f} us"
    )
    print(
        f"  waits for room  {status.waits:10d}  ({status.wait_seconds:.2f} s)"
        f"   drops {status.drops}"
    )
    print(f"  file            {size / 1e6:10.1f} MB   (raw {raw / 1e6:.1f} MB)")
    print(f"  written to      {recorder.filename.resolve()}")
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


def _bench(args: argparse.Namespace) -> int:
    from . import _bench

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="h5recorder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="record a few seconds of moving frames and print figures")
    demo.add_argument("--workload", choices=WORKLOADS, default="seed")
    demo.add_argument("--seconds", type=float, default=3.0)
    demo.add_argument("--rate", type=float, default=0.0, help="steps per second (0: flat out)")
    demo.add_argument("--out-dir", default=str(Path("saved_datasets")))
    demo.set_defaults(run=_demo)
    mend = sub.add_parser("recover", help="make a file left by a killed recorder consistent")
    mend.add_argument("paths", nargs="+", type=Path)
    mend.set_defaults(run=_recover)
    bench = sub.add_parser(
        "bench", help="h5recorder against mbodied, naive h5py and a sequential write, side by side"
    )
    bench.add_argument("--workload", choices=WORKLOADS, action="append",
                       help="a workload to run (repeatable; default: seed)")
    bench.add_argument("--seconds", type=float, default=2.0,
                       help="seconds of flat-out recording per case (default 2)")
    bench.add_argument("--latency-seconds", type=float, default=2.0,
                       help="seconds of paced recording per latency case (default 2)")
    bench.add_argument("--no-png", action="store_true", help="HDF5 only, no PNG cases")
    bench.add_argument("--markdown", action="store_true",
                       help="a markdown table headed by machine, date and versions")
    bench.add_argument("--out-dir", default=None, help="folder for the temporary files")
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
