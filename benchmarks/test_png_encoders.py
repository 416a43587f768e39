"""PNG encoders per frame kind, as one worker runs them: ms per frame, frames/s, bytes, exact.

For each kind the recorder saves (RGB, RGBA, gray, 16-bit depth) at 640x480 and 1280x720,
and each encoder that can write it (``h5recorder._write.frames.encoders``), frames are moving, noisy
crops of real photographs (``h5recorder.workloads``). Each case writes its frames as PNG files
exactly as a worker does (``write_png``: encode, write ``<path>.part``, rename) in a loop of
at least ``MIN_SECONDS``, and reports per frame the median CPU time of this thread (which
other processes on a shared machine barely move) and the median wall time, frames/s of one
worker (from the CPU time), mean bytes, and the speed-up against imagecodecs (libpng with
zlib's run-length strategy and the SUB filter: the encoder used before fpng and isal). Every
file is decoded back with Pillow and with imagecodecs (libpng) and compared with its frame.
``auto`` marks the encoder the recorder picks for the kind. A table is printed at the end
(``-s``).

    .venv/bin/python -m pytest benchmarks/test_png_encoders.py -q -s
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
from bench_support import report
from PIL import Image

from h5recorder._write.frames.encoders import choose_encoders, write_png
from h5recorder.workloads import depth_frames, photo_frames

MIN_SECONDS = 1.0
SIZES = {"640x480": (480, 640), "1280x720": (720, 1280)}
KINDS = {"RGB": "RGB", "RGBA": "RGBA", "gray": "L", "depth": "I;16"}
ENCODERS = ["fpng", "isal", "imagecodecs", "pillow"]
BASELINE = "imagecodecs"
_rows: dict[tuple[str, str], list[dict[str, Any]]] = {}


def frames_of(kind: str, height: int, width: int, count: int = 8) -> np.ndarray[Any, Any]:
    if kind == "depth":
        return depth_frames(count, height, width, seed=3)
    channels = {"RGB": 3, "RGBA": 4, "gray": 1}[kind]
    return photo_frames(count, height, width, channels=channels, seed=2)


@pytest.fixture(scope="module", params=[(k, s) for s in SIZES for k in KINDS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def frames(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, np.ndarray[Any, Any]]]:
    kind, size = request.param
    yield kind, size, frames_of(kind, *SIZES[size])


@pytest.mark.parametrize("encoder", ENCODERS)
def test_png_encoder(benchmark: Any, frames: tuple[str, str, np.ndarray[Any, Any]],
                     encoder: str, tmp_path: Path) -> None:
    kind, size, stack = frames
    mode = KINDS[kind]
    if encoder == "fpng" and mode != "RGB":
        pytest.skip("fpng writes RGB here only (RGBA files came out 12% larger, see the notes)")
    chosen = {mode: encoder}
    cpu: list[float] = []
    wall: list[float] = []
    sizes: list[int] = []

    def loop() -> None:
        began = time.perf_counter()
        i = 0
        while time.perf_counter() - began < MIN_SECONDS or i < 2 * len(stack):
            frame = stack[i % len(stack)]
            c0, w0 = time.thread_time(), time.perf_counter()
            sizes.append(write_png(frame, str(tmp_path / f"{i % len(stack)}.png"), 1, chosen))
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            i += 1

    benchmark.pedantic(loop, rounds=1, iterations=1)
    for i, frame in enumerate(stack):
        path = tmp_path / f"{i}.png"
        with Image.open(path) as image:
            assert np.array_equal(np.asarray(image), frame), f"Pillow: {path}"
        assert np.array_equal(imagecodecs.png_decode(path.read_bytes()), frame), f"libpng: {path}"
    ms = 1e3 * float(np.median(cpu))
    row = {
        "encoder": encoder + (" (auto)" if choose_encoders()[mode] == encoder else ""),
        "ms_per_frame_cpu": round(ms, 2),
        "ms_per_frame_wall": round(1e3 * float(np.median(wall)), 2),
        "frames_per_s_per_worker": round(1e3 / ms, 1),
        "bytes": int(np.mean(sizes)),
        "raw_bytes": stack[0].nbytes,
        "exact": "Pillow and libpng",
    }
    _rows.setdefault((kind, size), []).append(row)
    report(benchmark, f"png {kind} {size} {encoder}", row)


def teardown_module() -> None:
    lines = [
        "| kind | size | encoder | ms/frame (CPU) | ms/frame (wall) | frames/s per worker "
        f"| bytes | vs {BASELINE}: speed, size | decodes exactly |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (kind, size), rows in _rows.items():
        base = next((r for r in rows if r["encoder"].startswith(BASELINE)), None)
        for row in rows:
            versus = "-"
            if base is not None:
                versus = (f"{base['ms_per_frame_cpu'] / row['ms_per_frame_cpu']:.1f}x, "
                          f"{row['bytes'] / base['bytes'] - 1:+.1%}")
            lines.append(
                f"| {kind} | {size} | {row['encoder']} | {row['ms_per_frame_cpu']:.2f} | "
                f"{row['ms_per_frame_wall']:.2f} | {row['frames_per_s_per_worker']:,.0f} | "
                f"{row['bytes']:,} | {versus} | {row['exact']} |"
            )
    print("\n" + "\n".join(lines))
