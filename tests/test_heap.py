"""``_format.heap``: the global heap collections variable-length data refers to are walked with
plain reads before HDF5 reads them.

Files are built with h5py in the layouts HDF5 writes (attributes in the object header or dense,
large ones as huge heap objects, old-style headers, chunked and contiguous text, filters), then
their collections are damaged in place. The checks never let HDF5 read a damaged collection, so
these tests run in the test process.
"""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5recorder import ReadError
from h5recorder._format.heap import HeapCheck

TEXT = h5py.string_dtype()


def _build(path: Path, libver: str | tuple[str, str] = ("v108", "latest"),
           userblock: int = 0) -> None:
    with h5py.File(path, "w", libver=libver, userblock_size=userblock) as file:
        file.attrs["status"] = '{"steps": 3}'
        file.attrs["names"] = ["a", "bb", ""]
        file.attrs["empty"] = ""
        group = file.create_group("observation")
        text = group.create_dataset("instruction", (300,), TEXT, chunks=(128,), maxshape=(None,),
                                    compression="gzip")
        text[:] = [f"pick up block {i}" for i in range(300)]
        group.create_dataset("notes", data=np.array(["x", "", "yyy"], dtype=TEXT))
        dense = group.create_dataset("joints", data=np.zeros((4, 3)))
        for i in range(12):  # past 8 attributes: stored densely
            dense.attrs[f"number_{i}"] = i
            dense.attrs[f"text_{i}"] = f"value {i}" * (i + 1)
        dense.attrs["blob"] = np.arange(20000, dtype=np.uint8)  # a huge heap object


def _check_all(path: Path) -> HeapCheck:
    with h5py.File(path, "r") as file:
        heap = HeapCheck(file)
        heap.attributes(file, "/")
        for name in ("observation", "observation/instruction", "observation/notes",
                     "observation/joints"):
            heap.attributes(file[name], name)
        for name in ("observation/instruction", "observation/notes"):
            dataset = file[name]
            heap.rows(dataset, 0, dataset.shape[0], name)
        return heap


def _collections(path: Path) -> list[int]:
    data = path.read_bytes()
    found, at = [], data.find(b"GCOL")
    while at >= 0:
        found.append(at)
        at = data.find(b"GCOL", at + 1)
    return found


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)


@pytest.mark.parametrize(
    ("libver", "userblock"),
    [(("v108", "latest"), 0), (("v108", "latest"), 4096), ("earliest", 0)],
    ids=["latest", "user-block", "earliest"],
)
def test_every_layout_of_a_healthy_file_passes(tmp_path: Path, libver: str, userblock: int
                                               ) -> None:
    path = tmp_path / "healthy.h5"
    _build(path, libver, userblock)
    heap = _check_all(path)
    assert heap._collections, "no collection was walked"
    with h5py.File(path, "r") as file:  # and HDF5 reads what was checked
        assert file.attrs["status"] == '{"steps": 3}'
        assert file["observation/instruction"][299] == b"pick up block 299"


def _first_object(path: Path) -> int:
    """The offset of the first object of the first collection after the user block."""
    return _collections(path)[0] + 16


def test_an_object_of_index_0_and_size_0_is_refused(tmp_path: Path) -> None:
    """HDF5's parser of the collection would never move past it."""
    path = tmp_path / "loop.h5"
    _build(path)
    _patch(path, _first_object(path), bytes(16))
    with pytest.raises(ReadError, match="does not fit in the collection"):
        _check_all(path)


def test_an_object_running_past_its_collection_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.h5"
    _build(path)
    at = _first_object(path)
    _patch(path, at + 8, struct.pack("<Q", 1 << 40))
    with pytest.raises(ReadError, match="does not fit in the collection"):
        _check_all(path)


def test_a_collection_without_its_signature_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signature.h5"
    _build(path)
    _patch(path, _collections(path)[0], b"XXXX")
    with pytest.raises(ReadError, match="expected the signature GCOL"):
        _check_all(path)


def test_a_collection_said_to_end_past_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "size.h5"
    _build(path)
    _patch(path, _collections(path)[0] + 8, struct.pack("<Q", 1 << 30))
    with pytest.raises(ReadError, match="past the end of the file"):
        _check_all(path)


def test_an_object_larger_than_its_string_is_refused(tmp_path: Path) -> None:
    """HDF5 copies the whole object into a buffer of the string's length."""
    path = tmp_path / "larger.h5"
    _build(path)
    at = _first_object(path)
    size = struct.unpack("<Q", path.read_bytes()[at + 8 : at + 16])[0]
    _patch(path, at + 8, struct.pack("<Q", size + 1))
    with pytest.raises(ReadError, match="bytes there"):
        _check_all(path)


def test_an_attribute_naming_a_missing_object_is_left_to_hdf5(tmp_path: Path) -> None:
    """What a commit cut short leaves of ``recorder_status``: HDF5 refuses to read it."""
    path = tmp_path / "missing.h5"
    with h5py.File(path, "w", libver=("v108", "latest")) as file:
        file.attrs["status"] = "x" * 40
    at = _first_object(path)
    _patch(path, at, struct.pack("<H", 7))  # its object now has index 7
    with h5py.File(path, "r") as file:
        HeapCheck(file).attributes(file, "/")
        with pytest.raises(OSError):
            file.attrs["status"]


def test_rows_naming_a_missing_object_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w", libver=("v108", "latest")) as file:
        file.create_dataset("text", data=np.array(["one", "two"], dtype=TEXT), chunks=(2,))
    at = _first_object(path)
    _patch(path, at, struct.pack("<H", 9))
    with h5py.File(path, "r") as file, pytest.raises(ReadError, match="no such object"):
        HeapCheck(file).rows(file["text"], 0, 2, "text")


def test_what_cannot_be_checked_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "unchecked.h5"
    pair = np.dtype([("name", TEXT), ("value", np.int32)])
    with h5py.File(path, "w", libver=("v108", "latest")) as file:
        file.attrs.create("pair", np.array(("a", 1), dtype=pair))
        file.create_dataset("compact", data=np.array(["a"], dtype=TEXT),
                            dcpl=_compact())
    with h5py.File(path, "r") as file:
        heap = HeapCheck(file)
        with pytest.raises(ReadError, match="inside a compound"):
            heap.attributes(file, "/")
        with pytest.raises(ReadError, match="otherwise than in chunks"):
            heap.rows(file["compact"], 0, 1, "compact")


def _compact() -> h5py.h5p.PropDCID:
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_layout(h5py.h5d.COMPACT)
    return plist


def test_a_chunk_that_does_not_inflate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chunk.h5"
    with h5py.File(path, "w", libver=("v108", "latest")) as file:
        file.create_dataset("text", data=np.array(["one"] * 64, dtype=TEXT), chunks=(64,),
                            compression="gzip")
    with h5py.File(path, "r") as file:
        offset = file["text"].id.get_chunk_info(0).byte_offset
    _patch(path, offset, b"\xff\xff\xff\xff")
    with h5py.File(path, "r") as file, pytest.raises(ReadError, match="cannot be decoded"):
        HeapCheck(file).rows(file["text"], 0, 64, "text")
