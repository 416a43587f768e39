"""PNG encoders, and which one writes each kind of frame: the choice is made here only.

Every encoder writes a standard PNG that decodes to exactly the frame (a uint16 frame as a
16-bit PNG). They differ in speed and, by a few percent, in file size. Measured per frame on
real photographs moving with noise (``benchmarks/png_encoders.md``), the fastest one that is
installed is taken for each kind (``encoder="auto"``):

==========  ======================================  ==========================================
kind        preference                              why
==========  ======================================  ==========================================
RGB         fpng, isal, imagecodecs, Pillow         fpng: about 9x imagecodecs, files +5%
RGBA        isal, imagecodecs, Pillow               fpng's files are 12% larger here
gray        isal, imagecodecs, Pillow               fpng cannot write gray
16-bit      isal, imagecodecs, Pillow               fpng cannot write 16-bit
==========  ======================================  ==========================================

``isal`` is this module's own PNG writer: the ``UP`` filter in numpy, deflate by ISA-L
(``isal``, level 1) and the chunk checksums by ISA-L's crc32. ``imagecodecs`` is libpng
with zlib's run-length strategy and the ``SUB`` filter; ``pillow`` always installs. fpng
writes RGB at ``compress_level`` 1 only (it has one setting); other levels go to the next.

This module imports numpy and nothing of the package beyond :mod:`h5recorder.errors` and
:mod:`h5recorder._write.files`, so worker processes stay small; the encoder libraries are imported
when first used.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import SchemaError
from ..files import replace_file

__all__ = [
    "ENCODERS",
    "KINDS",
    "check_image",
    "choose_encoders",
    "encode_png",
    "png_bytes",
    "write_png",
]

ENCODERS = ("auto", "fpng", "isal", "imagecodecs", "pillow")
"""``auto`` takes, for each kind of frame, the fastest encoder installed (see the module's
table); a named one is used for every kind it can write, ``auto``'s choice for the others."""

KINDS = ("RGB", "RGBA", "L", "I;16")
"""PNG modes of the frames that can be saved (Pillow's names): RGB, RGBA, gray, 16-bit gray."""

_PREFERENCE: dict[str, tuple[str, ...]] = {
    "RGB": ("fpng", "isal", "imagecodecs", "pillow"),
    "RGBA": ("isal", "imagecodecs", "pillow"),
    "L": ("isal", "imagecodecs", "pillow"),
    "I;16": ("isal", "imagecodecs", "pillow"),
}
_MODULES = {"fpng": "fpng", "isal": "isal", "imagecodecs": "imagecodecs", "pillow": "PIL"}
_FPNG_LEVELS = (1,)

_ACCEPTED = "HxWx3 uint8 (RGB), HxWx4 uint8 (RGBA), HxW or HxWx1 uint8 (gray) or HxW uint16"
_Z_RLE = 3  # zlib's run-length strategy: at level 1, 1.4x faster and files 8% smaller
_PNG_FILTER_SUB = 16  # one cheap filter instead of trying all five on every row
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {"L": 0, "I;16": 0, "RGB": 2, "RGBA": 6}


def check_image(name: str, shape: Sequence[int], dtype: Any) -> str:
    """Check that frames of ``shape`` and ``dtype`` can be saved as PNG; return the PNG mode.

    The modes are ``"RGB"`` (HxWx3 uint8), ``"RGBA"`` (HxWx4 uint8), ``"L"`` (HxW or HxWx1
    uint8) and ``"I;16"`` (HxW or HxWx1 uint16, a 16-bit PNG, exact). Anything else (floats,
    other channel counts, 16-bit color) raises :class:`~h5recorder.errors.SchemaError`
    naming ``name``.
    """
    dims = tuple(int(n) for n in shape)
    try:
        kind = np.dtype(dtype)
    except TypeError as error:
        raise SchemaError(
            f"{name}: cannot save as PNG: expected {_ACCEPTED}, got dtype {dtype!r}"
        ) from error
    mode = None
    if len(dims) in (2, 3) and min(dims) > 0:
        gray = len(dims) == 2 or dims[2] == 1
        if kind == np.uint8:
            mode = "L" if gray else {3: "RGB", 4: "RGBA"}.get(dims[2])
        elif kind.kind == "u" and kind.itemsize == 2 and gray:
            mode = "I;16"
    if mode is None:
        seen = "x".join(map(str, dims)) if dims else "a scalar"
        raise SchemaError(f"{name}: cannot save as PNG: expected {_ACCEPTED}, got {seen} {kind}")
    return mode


def _installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name]) is not None


def choose_encoders(encoder: str = "auto", compress_level: int = 1) -> dict[str, str]:
    """The encoder that writes each kind (:data:`KINDS`), given the ``encoder`` option.

    Raises ``ValueError`` for a name not in :data:`ENCODERS`, or one that is not installed.
    """
    if encoder not in ENCODERS:
        raise ValueError(f"encoder: expected one of {ENCODERS}, got {encoder!r}")
    if encoder != "auto" and not _installed(encoder):
        raise ValueError(
            f"encoder={encoder!r} needs the {_MODULES[encoder]} package: pip install {encoder}"
        )
    chosen: dict[str, str] = {}
    for kind, preference in _PREFERENCE.items():
        usable = [
            name
            for name in preference
            if _installed(name) and (name != "fpng" or compress_level in _FPNG_LEVELS)
        ]
        chosen[kind] = encoder if encoder in usable else usable[0]
    return chosen


def load_encoders(chosen: Mapping[str, str]) -> None:
    """Import the libraries of ``chosen`` now (a worker does, before it says it is ready)."""
    for name in set(chosen.values()):
        if name not in _ENCODE:
            raise ValueError(f"{name!r} is not a PNG encoder")
        __import__(_MODULES[name])


def encode_png(
    frame: np.ndarray[Any, Any],
    path: str | os.PathLike[str],
    compress_level: int = 1,
    encoder: str = "auto",
) -> int:
    """Write one frame as a PNG file, through ``<path>.<random>.part`` and a rename; its size.

    ``frame`` is any array :func:`check_image` accepts; the file decodes to exactly it (a
    uint16 frame as a 16-bit PNG). ``encoder`` is one of :data:`ENCODERS`. Runs in the
    calling thread.
    """
    check_image(os.fspath(path), frame.shape, frame.dtype)
    if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level: expected an int 0-9, got {compress_level!r}")
    return write_png(
        frame, os.fspath(path), compress_level, choose_encoders(encoder, compress_level)
    )


def write_png(
    frame: np.ndarray[Any, Any], path: str, compress_level: int, chosen: Mapping[str, str]
) -> int:
    """Write ``frame`` (already checked) with the encoder ``chosen`` for its kind; its size."""
    data = png_bytes(frame, compress_level, chosen)
    replace_file(path, data)
    return len(data)


def png_bytes(frame: np.ndarray[Any, Any], compress_level: int, chosen: Mapping[str, str]) -> bytes:
    """The PNG file of ``frame`` (already checked), in memory."""
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.dtype == np.uint8:
        mode = "L" if frame.ndim == 2 else ("RGB" if frame.shape[2] == 3 else "RGBA")
    else:
        mode = "I;16"
        frame = frame.astype(np.uint16, copy=False)  # native byte order
    frame = np.ascontiguousarray(frame)
    return _ENCODE[chosen[mode]](frame, mode, compress_level)


# ---- the encoders: (frame, mode, level) -> PNG bytes ----------------------------------------


def _fpng(frame: np.ndarray[Any, Any], mode: str, level: int) -> bytes:
    import fpng

    data: bytes = fpng.fpng_ext.encode_ndarray(frame)
    return data


def _chunk(tag: bytes, data: bytes, crc32: Callable[[bytes, int], int]) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc32(data, crc32(tag, 0)))


def _isal(frame: np.ndarray[Any, Any], mode: str, level: int) -> bytes:
    from isal import isal_zlib

    height, width = frame.shape[:2]
    if mode == "I;16":
        rows = frame.astype(">u2").view(np.uint8).reshape(height, width * 2)
    else:
        rows = frame.reshape(height, -1)
    # the UP filter: each row minus the one above, byte by byte (uint8 wraps, as PNG wants);
    # a noisy camera frame compresses as well as with SUB, and this is one numpy pass
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 0] = 0
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    if level == 0:
        idat = zlib.compress(filtered.data, 0)
    else:  # ISA-L has levels 0-3, and its 0 is not "stored"
        idat = isal_zlib.compress(filtered, min(3, (level + 2) // 3))
    header = struct.pack(
        ">IIBBBBB", width, height, 16 if mode == "I;16" else 8, _COLOR_TYPE[mode], 0, 0, 0
    )
    crc32 = isal_zlib.crc32
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header, crc32),
            _chunk(b"IDAT", idat, crc32),
            _chunk(b"IEND", b"", crc32),
        )
    )


def _imagecodecs(frame: np.ndarray[Any, Any], mode: str, level: int) -> bytes:
    import imagecodecs

    try:
        data = imagecodecs.png_encode(frame, level=level, strategy=_Z_RLE, filter=_PNG_FILTER_SUB)
    except TypeError:  # a release from before those options: slower, same pixels
        data = imagecodecs.png_encode(frame, level=level)
    return bytes(data)


def _pillow(frame: np.ndarray[Any, Any], mode: str, level: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    # Pillow tries all five PNG filters on every row; the zlib strategy is all it lets us choose
    Image.fromarray(frame).save(buffer, format="PNG", compress_level=level, compress_type=_Z_RLE)
    return buffer.getvalue()


_ENCODE: dict[str, Callable[[np.ndarray[Any, Any], str, int], bytes]] = {
    "fpng": _fpng,
    "isal": _isal,
    "imagecodecs": _imagecodecs,
    "pillow": _pillow,
}
