"""Chunk codecs on real frames: compression MB/s (one thread) and ratio.

Frames are moving, noisy crops of real photographs (``h5recorder.workloads``): the seed
workload's 224x224 RGB frames, the rig's 640x480 RGB frames and its 480x640 uint16 depth.
They are cut into chunks of about 1 MiB of whole frames, as the recorder cuts them, and each
chunk is compressed in memory the way each codec is used:

- ``none``: a copy (``bytes``), for scale;
- ``gzip 1``: ``zlib.compress(level=1)``, the deflate of HDF5's gzip filter;
- ``lzf``: ``imagecodecs.lzf_encode`` (liblzf, as h5py's lzf filter), skipped without it;
- ``blosc2 lz4|zstd N``: the recorder's own path (``_format.codecs.Codec("blosc2")``:
  shuffle, typesize of the dtype, one thread, a cframe that hdf5plugin reads back);
- ``portable N``: the recorder's deflate (``Codec("deflate", fast=True)``: HDF5's byte
  shuffle for multi-byte types, then ISA-L's deflate at level N, which any HDF5 reader
  inflates); what ``compression="portable"`` stores every leaf with, and the default
  (``"blosc2"``) the small ones with.

Besides frames, the small leaves of a recording: 7 joint positions (float32, a random walk)
and the per-step time (int64 nanoseconds, 1 kHz with jitter), 1024 rows a chunk.

Figures: MB/s of raw input, ratio raw / compressed. Each case loops over its chunks for at
least ``MIN_SECONDS``. A table of every case is printed at the end (``-s``).

    pytest benchmarks/test_codecs.py -q -s
"""

from __future__ import annotations

import importlib.util
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from bench_support import report

from h5recorder._format.codecs import Codec
from h5recorder.workloads import depth_frames, photo_frames

MIN_SECONDS = 0.15
CHUNK_BYTES = 1 << 20
CODECS = [
    "none", "gzip 1", "lzf",
    *(f"blosc2 {codec} {level}" for codec in ("lz4", "zstd") for level in range(1, 6)),
    *(f"portable {level}" for level in range(4)),
]


def _joints() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(14)
    return np.cumsum(rng.normal(0, 0.01, (8192, 7)), axis=0).astype(np.float32)


def _time() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(15)
    return (np.cumsum(rng.normal(1e6, 2e4, 8192)) + 1.7e18).astype(np.int64)


FRAMES = {
    "224x224 RGB": lambda: photo_frames(48, 224, 224, seed=11),
    "640x480 RGB": lambda: photo_frames(12, 480, 640, seed=12),
    "480x640 depth u16": lambda: depth_frames(12, 480, 640, seed=13),
    "joints 7 x f32": _joints,
    "time i64": _time,
}
_table: dict[tuple[str, str], tuple[float, float]] = {}


@pytest.fixture(scope="module", params=list(FRAMES))
def chunks(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[np.ndarray[Any, Any]]]]:
    frames = FRAMES[request.param]()
    rows = max(1, CHUNK_BYTES // frames[0].nbytes)
    if frames[0].nbytes < 1024:
        rows = 1024  # small leaves: the recorder's MAX_CHUNK_ROWS
    yield request.param, [
        np.ascontiguousarray(frames[i : i + rows]) for i in range(0, len(frames), rows)
    ]


def _compressor(codec: str) -> Callable[[np.ndarray[Any, Any]], bytes]:
    if codec == "none":
        return lambda chunk: chunk.tobytes()
    if codec == "gzip 1":
        return lambda chunk: zlib.compress(chunk, 1)
    if codec == "lzf":
        if importlib.util.find_spec("imagecodecs") is None:
            pytest.skip("lzf needs imagecodecs")
        import imagecodecs

        return lambda chunk: bytes(imagecodecs.lzf_encode(chunk.tobytes()))
    if codec.startswith("portable"):
        level = int(codec.split()[1])
        bytewise = Codec("deflate", level=level, fast=True).encoder()
        shuffled = Codec("deflate", level=level, shuffle=True, fast=True).encoder()
        assert bytewise is not None and shuffled is not None
        return lambda chunk: (shuffled if chunk.dtype.itemsize > 1 else bytewise)(chunk)
    else:
        _, name, level = codec.split()
        encode = Codec("blosc2", name, int(level)).encoder(threads=1)
    assert encode is not None
    return encode


@pytest.mark.parametrize("codec", CODECS)
def test_codec(benchmark: Any, chunks: tuple[str, list[np.ndarray[Any, Any]]],
               codec: str) -> None:
    frames, blocks = chunks
    compress = _compressor(codec)
    benchmark.group = f"codecs on real frames ({frames})"
    raw = sum(block.nbytes for block in blocks)
    measured: dict[str, float] = {}

    def run() -> None:
        passes, packed = 0, 0
        started = time.perf_counter()
        while True:
            packed = sum(len(compress(block)) for block in blocks)
            passes += 1
            elapsed = time.perf_counter() - started
            if elapsed >= MIN_SECONDS:
                break
        measured.update(mb_per_s=passes * raw / elapsed / 1e6, ratio=raw / packed)

    benchmark.pedantic(run, rounds=1, iterations=1)
    _table[(frames, codec)] = (measured["mb_per_s"], measured["ratio"])
    report(benchmark, f"{codec}, {frames}", {
        "chunks": len(blocks),
        "mb_per_s": round(measured["mb_per_s"]),
        "ratio": round(measured["ratio"], 3),
    })
    assert measured["ratio"] > 0.9  # no codec grows real frames by more than its headers


def test_codec_table() -> None:
    """Prints every codec case above as one markdown table (MB/s, ratio)."""
    if not _table:
        pytest.skip("no codec case ran")
    kinds = [kind for kind in FRAMES if any(k == kind for k, _ in _table)]
    lines = [
        "| codec | " + " | ".join(f"{kind} MB/s | ratio" for kind in kinds) + " |",
        "| --- | " + " | ".join("---: | ---:" for _ in kinds) + " |",
    ]
    for codec in CODECS:
        cells = []
        for kind in kinds:
            speed, ratio = _table.get((kind, codec), (float("nan"), float("nan")))
            cells.append(f"{speed:,.0f} | {ratio:.3f}")
        lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))
    assert len(lines) == len(CODECS) + 2
