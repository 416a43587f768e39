"""How a leaf's chunks are stored: the one parse of ``compression``, the codec it gives each
leaf, the filter pipeline that codec puts on the dataset, and how a whole chunk is encoded so
that the pipeline decodes it.

The writer compresses whole chunks itself and stores the bytes with ``write_direct_chunk``;
a reader decodes them through the dataset's filters. So each codec here is both: the h5py
keywords that describe the pipeline (:meth:`Codec.dataset_options`) and the encoder that
produces what that pipeline reads back (:meth:`Codec.encoder`).

The settings (``Options.compression``):

- ``"blosc2"`` (default; ``"blosc2:lz4"``, ``"blosc2:zstd"``): images and rows over
  :data:`SMALL_ROW_BYTES` as blosc2 (filter 32026, decoded by hdf5plugin); the other leaves
  (joints, actions, flags, time) with shuffle and deflate, filters every HDF5 build has,
  encoded fast by ISA-L. A reader without hdf5plugin reads every leaf but the big ones.
- ``"portable"``: every leaf with shuffle (multi-byte types) and deflate through ISA-L: any
  HDF5 reader (MATLAB, h5dump, a plain h5py) reads every leaf.
- ``"gzip"``: deflate at zlib's level, ``"lzf"``: h5py's LZF (h5py readers only).
- ``None``: stored raw.

Variable-length strings (``Text``, ``Tuple``) are stored raw in every setting: their chunks
hold references into HDF5's heap, which no filter makes smaller.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SchemaError

__all__ = [
    "BLOSC2_FILTER",
    "DEFLATE_FILTER",
    "EVERY_BUILD",
    "FILTER_NAMES",
    "SHUFFLE_FILTER",
    "SMALL_ROW_BYTES",
    "Codec",
    "Compression",
    "filters_of",
    "parse_compression",
]

BLOSC2_FILTER = 32026  # registered with The HDF Group; hdf5plugin decodes it
DEFLATE_FILTER = 1  # in every HDF5 build
SHUFFLE_FILTER = 2  # in every HDF5 build
SMALL_ROW_BYTES = 4096  # rows up to this size (not images) are deflated under "blosc2"
FAST_DEFLATE_LEVELS = range(4)  # ISA-L's levels; its output is standard zlib
FILTER_NAMES = {
    1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset",
    32000: "lzf", 32026: "blosc2",
}  # fmt: skip
# filters every HDF5 build decodes (szip is optional in builds; lzf is h5py's own)
EVERY_BUILD = frozenset({1, 2, 3, 5, 6})

Encoder = Callable[[np.ndarray[Any, Any]], bytes]


@dataclass(frozen=True)
class Codec:
    """One leaf's filter pipeline: ``filter`` is ``"blosc2"``, ``"deflate"`` or ``"lzf"``;
    ``inner`` is blosc2's codec; ``level`` the level of blosc2 or deflate; ``shuffle`` a byte
    shuffle before deflate (HDF5's filter 2; blosc2 shuffles inside its own frame); ``fast``
    deflate through ISA-L rather than zlib."""

    filter: str
    inner: str = "lz4"
    level: int = 1
    shuffle: bool = False
    fast: bool = False

    def dataset_options(self) -> dict[str, Any]:
        """h5py ``create_dataset`` keywords for this pipeline."""
        if self.filter == "blosc2":
            import hdf5plugin

            return dict(
                hdf5plugin.Blosc2(
                    cname=self.inner,  # type: ignore[arg-type]  # checked by hdf5plugin
                    clevel=self.level,
                    filters=hdf5plugin.Blosc2.SHUFFLE,
                )
            )
        if self.filter == "deflate":
            return {"compression": "gzip", "compression_opts": self.level, "shuffle": self.shuffle}
        return {"compression": "lzf"}

    def encoder(self, threads: int = 1) -> Encoder | None:
        """A function from a whole chunk's rows to the bytes the pipeline decodes them from;
        None for LZF, which HDF5's own pipeline writes. Every encoder releases the GIL while
        it compresses (blosc2 once told to; ISA-L and zlib do on their own)."""
        if self.filter == "blosc2":
            return _blosc2_encoder(self.inner, self.level, threads)
        if self.filter == "deflate":
            return _deflate_encoder(self.level, self.shuffle, self.fast)
        return None


def filters_of(dataset: Any) -> list[int]:
    """The filter ids of an h5py dataset's pipeline, in order (empty: stored raw)."""
    plist = dataset.id.get_create_plist()
    return [int(plist.get_filter(i)[0]) for i in range(plist.get_nfilters())]


def _blosc2_encoder(inner: str, level: int, threads: int) -> Encoder:
    import blosc2

    # Without this, python-blosc2 holds the GIL while it compresses and the caller stalls.
    blosc2.set_releasegil(True)
    codec = {"lz4": blosc2.Codec.LZ4, "zstd": blosc2.Codec.ZSTD}[inner]

    def encode(rows: np.ndarray[Any, Any]) -> bytes:
        cparams = {
            "codec": codec,
            "clevel": level,
            "typesize": rows.dtype.itemsize,
            "nthreads": threads,
            "filters": [blosc2.Filter.SHUFFLE],
        }
        schunk = blosc2.SChunk(chunksize=rows.nbytes, cparams=cparams)
        schunk.append_data(rows)
        return schunk.to_cframe()  # type: ignore[no-any-return]  # one chunk, one frame

    return encode


def _deflate_encoder(level: int, shuffle: bool, fast: bool) -> Encoder:
    if fast:
        from isal import isal_zlib

        compress = isal_zlib.compress
    else:
        compress = zlib.compress

    def encode(rows: np.ndarray[Any, Any]) -> bytes:
        data = np.ascontiguousarray(rows)
        if shuffle:  # HDF5's shuffle: byte j of every element, then byte j+1 ...
            data = data.reshape(-1).view(np.uint8).reshape(-1, rows.dtype.itemsize).T.copy()
        return compress(data.reshape(-1).view(np.uint8), level)

    return encode


@dataclass(frozen=True)
class Compression:
    """The ``compression`` option, parsed (see the module docstring): ``setting`` is
    ``"blosc2"``, ``"portable"``, ``"gzip"``, ``"lzf"`` or None; ``inner`` blosc2's codec;
    ``level`` the level of the setting's own codec."""

    setting: str | None
    inner: str = "lz4"
    level: int = 1

    def codec_for(self, is_string: bool, is_image: bool, row_bytes: int, itemsize: int) -> (
        Codec | None
    ):
        """The codec of one leaf; None: stored raw."""
        if self.setting is None or is_string:
            return None
        shuffle = itemsize > 1
        if self.setting == "blosc2":
            if is_image or row_bytes > SMALL_ROW_BYTES:
                return Codec("blosc2", self.inner, self.level)
            return Codec("deflate", level=1, shuffle=shuffle, fast=True)
        if self.setting == "portable":
            return Codec("deflate", level=self.level, shuffle=shuffle, fast=True)
        if self.setting == "gzip":
            return Codec("deflate", level=self.level)
        return Codec("lzf")


def parse_compression(compression: str | None, level: int | None) -> Compression:
    """Parse ``compression`` (see ``Options``); a level of None picks 1 (blosc2, portable,
    gzip). A blosc2 codec other than lz4 and zstd is passed on as given (hdf5plugin checks it).
    """
    if compression is None:
        return Compression(None)
    chosen = 1 if level is None else level
    if compression.startswith("blosc2"):
        return Compression("blosc2", compression.partition(":")[2] or "lz4", chosen)
    if compression == "portable":
        if chosen not in FAST_DEFLATE_LEVELS:
            raise SchemaError(
                f"compression_level: 'portable' takes 0 to {FAST_DEFLATE_LEVELS[-1]}, got {level}"
            )
        return Compression("portable", level=chosen)
    if compression == "gzip":
        return Compression("gzip", level=chosen)
    if compression == "lzf":
        return Compression("lzf")
    raise SchemaError(
        "compression: expected 'blosc2', 'blosc2:lz4', 'blosc2:zstd', 'portable', 'gzip', "
        f"'lzf' or None, got {compression!r}"
    )
