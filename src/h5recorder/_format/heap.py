"""HDF5's global heap, checked with plain reads before HDF5 is let read from it.

Variable-length data (the rows of a ``Text`` or ``Tuple`` leaf, every ``str`` attribute such
as ``recorder_status``) lives in global heap collections, the one structure of the file that
carries no checksum. HDF5 2.0 believes what it finds there: a collection in which an object
reads index 0 and size 0 (a page zeroed by a power cut) makes its parser loop for ever, and an
object larger than the string that refers to it is copied past the end of the string's buffer.

:class:`HeapCheck` finds the heap IDs that a dataset's rows or an object's attributes hold, and
walks each collection they name before HDF5 does: the signature ``GCOL``, version 1, a size
of at least 4 KiB that ends inside the file, and objects that each move the walk forward and
stay inside the collection. The object a heap ID names must be there, with the size the ID's
length gives it. Where the IDs come from:

- a dataset's rows: its raw chunks (``read_direct_chunk``, whose filters are undone here:
  deflate, shuffle, fletcher32, blosc2), or the bytes of a contiguous dataset;
- attributes: the object's header (which HDF5 has already checked against its checksum, as it
  has the fractal heap and B-tree of attributes stored densely), parsed for attribute messages.
  An attribute that names an object its collection does not hold passes: HDF5 refuses to read
  it with an error (a commit cut short leaves ``recorder_status`` so, and the reader takes it
  as absent); an object of another size does not (HDF5 would copy it whole into a buffer of
  the size the attribute gives).

Each collection is walked once per :class:`HeapCheck` (it costs a read of the collection, a
few KiB). Everything refused raises :class:`ReadError` naming the dataset or attribute, what
was expected and what was found. What cannot be checked (a compact dataset, a filter other
than those above, variable-length data inside a compound, a region reference) is refused too:
a recorder never writes it, and HDF5 would read it unchecked.
"""

from __future__ import annotations

import math
import os
import struct
import weakref
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import h5py
import numpy as np

from ..errors import ReadError

__all__ = ["HeapCheck", "Reader"]

Reader = Callable[[int, int], bytes]  # (offset from the start of the file, count) -> bytes

COLLECTION_MIN = 4096  # HDF5 makes no collection smaller
MAX_HEADER_BLOCKS = 4096  # continuation blocks of one object header
MAX_BTREE_NODES = 1 << 16
MAX_NESTING = 8  # indirect blocks of a fractal heap, inside one another
HUGE_PREFIX = 4096  # of a large attribute, the part that holds its name, type and shape
UNDEFINED = -1

# object header message types
NIL, ATTRIBUTE, CONTINUATION, ATTRIBUTE_INFO = 0, 12, 16, 21
# datatype classes
COMPOUND, REFERENCE, ENUM, VLEN, ARRAY = 6, 7, 8, 9, 10
# filters HeapCheck undoes
DEFLATE, SHUFFLE, FLETCHER32, BLOSC2 = 1, 2, 3, 32026


class _Short(Exception):
    """A structure ended before what it declares (caught and reported as a ReadError)."""


def _number(data: bytes, at: int, size: int) -> int:
    """The little-endian number of ``size`` bytes at ``at``."""
    if at < 0 or at + size > len(data):
        raise _Short()
    return int.from_bytes(data[at : at + size], "little")


def _enc_size(value: int) -> int:
    """Bytes HDF5 uses to encode numbers up to ``value``."""
    return max(1, (max(1, value).bit_length() - 1) // 8 + 1)


class _Attribute:
    """An attribute message: its name, and what its datatype and dataspace say of its data."""

    def __init__(self, message: bytes) -> None:
        version = message[0]
        flags = message[1] if version > 1 else 0
        name_size = _number(message, 2, 2)
        type_size = _number(message, 4, 2)
        space_size = _number(message, 6, 2)
        at = 9 if version == 3 else 8
        if version not in (1, 2, 3):
            raise ReadError(f"an attribute message of version {version} (expected 1 to 3)")

        def field(size: int) -> bytes:
            nonlocal at
            value = message[at : at + size]
            if len(value) != size:
                raise _Short()
            at += -(-size // 8) * 8 if version == 1 else size
            return value

        self.name = field(name_size).split(b"\0", 1)[0].decode("utf-8", "replace")
        self.datatype = field(type_size)
        self.dataspace = field(space_size)
        self.shared = flags & 3
        self.data = message[at:]

    def count(self, length_size: int) -> int:
        """Elements, from the dataspace message."""
        space = self.dataspace
        version, rank = space[0], space[1]
        if version == 1:
            dims_at = 8
        elif version == 2:
            if space[3] == 2:  # null
                return 0
            dims_at = 4
        else:
            raise ReadError(f"a dataspace message of version {version} (expected 1 or 2)")
        return math.prod(_number(space, dims_at + length_size * i, length_size)
                         for i in range(rank))


class HeapCheck:
    """The global heap collections of one open file, walked before HDF5 reads from them.

    ``read_at(offset, count)`` reads the file as HDF5 sees it (from its first byte, the user
    block included), ``length`` is its size in bytes.
    """

    def __init__(self, file: h5py.File, read_at: Reader | None = None,
                 length: int | None = None) -> None:
        plist = file.id.get_create_plist()
        self.base = int(plist.get_userblock())
        self.offset_size, self.length_size = (int(size) for size in plist.get_sizes())
        if read_at is None:
            if file.driver == "sec2":
                fd = int(file.id.get_vfd_handle())
            else:
                fd = os.open(file.filename, os.O_RDONLY)
                weakref.finalize(self, os.close, fd)
            length = os.fstat(fd).st_size

            def read_at(offset: int, count: int) -> bytes:
                return os.pread(fd, count, offset)

        assert length is not None
        self._read = read_at
        self.length = length
        self._collections: dict[int, dict[int, int]] = {}  # address -> {index: size}
        self._checked: set[tuple[Any, ...]] = set()

    # -- reading --------------------------------------------------------------------------

    def _read_exact(self, address: int, count: int, what: str) -> bytes:
        """``count`` bytes at the HDF5 address ``address`` (relative to the superblock)."""
        start = self.base + address
        if address < 0 or count < 0 or start + count > self.length:
            raise ReadError(f"{what} at address {address} ({count} bytes) ends past the end of "
                            f"the file ({self.length} bytes)")
        data = self._read(start, count)
        if len(data) != count:
            raise ReadError(f"{what} at address {address}: read {len(data)} of {count} bytes")
        return data

    def _address(self, data: bytes, at: int) -> int:
        value = _number(data, at, self.offset_size)
        return UNDEFINED if value == (1 << (8 * self.offset_size)) - 1 else value

    # -- collections ----------------------------------------------------------------------

    def collection(self, address: int, where: str, fresh: bool = False) -> dict[int, int]:
        """The size of each object (by index) of the collection at ``address``, after walking
        it as HDF5 will."""
        known = self._collections.get(address)
        if known is not None and not fresh:
            return known
        what = f"{where}: the global heap collection"
        head = self._read_exact(address, 8 + self.length_size, what)
        if head[:4] != b"GCOL" or head[4] != 1:
            raise ReadError(f"{what} at address {address}: expected the signature GCOL, version "
                            f"1, found {head[:5]!r}")
        size = _number(head, 8, self.length_size)
        if size < COLLECTION_MIN:
            raise ReadError(f"{what} at address {address}: expected at least {COLLECTION_MIN} "
                            f"bytes, its header says {size}")
        data = self._read_exact(address, size, what)
        sizes: dict[int, int] = {}
        object_header = 8 + self.length_size
        at = 8 + self.length_size
        layout = "<H6x" + {2: "H", 4: "I", 8: "Q"}.get(self.length_size, "Q")
        if self.length_size not in (2, 4, 8):
            raise ReadError(f"{what}: lengths of {self.length_size} bytes (expected 2, 4 or 8)")
        while at + object_header <= size:  # fewer bytes at the end are free space
            index, length = struct.unpack_from(layout, data, at)
            need = length if index == 0 else object_header + -(-length // 8) * 8
            if need < object_header or at + need > size:
                raise ReadError(f"{what} at address {address}: the object at byte {at} (index "
                                f"{index}, {length} bytes) does not fit in the collection's "
                                f"{size} bytes")
            if index:
                if index in sizes:
                    raise ReadError(f"{what} at address {address}: object {index} twice")
                sizes[index] = length
            at += need
        self._collections[address] = sizes
        return sizes

    def references(self, raw: bytes, count: int, unit: int, where: str,
                   missing_ok: bool = False) -> None:
        """Check ``count`` heap IDs in ``raw`` (each: length, collection address, index),
        each naming an object of ``length * unit`` bytes. With ``missing_ok``, an object the
        collection does not hold passes (HDF5 refuses to read it, and says so)."""
        size = 4 + self.offset_size + 4
        if len(raw) < count * size:
            raise ReadError(f"{where}: expected {count} heap references ({count * size} bytes), "
                            f"found {len(raw)} bytes")
        if self.offset_size not in (4, 8):
            raise ReadError(f"{where}: file addresses of {self.offset_size} bytes (expected 4 "
                            "or 8)")
        layout = "<IQI" if self.offset_size == 8 else "<III"
        current, table = -1, {}
        for length, address, index in struct.iter_unpack(layout, raw[: count * size]):
            if not address:
                continue  # no data: an empty or null string
            if address != current:
                current, table = address, self.collection(address, where)
            wanted = length * unit
            if table.get(index, -1) != wanted:
                table = self.collection(address, where, fresh=True)  # a recorder added to it?
                seen = table.get(index, -1)
                if seen != wanted and not (missing_ok and seen < 0):
                    raise ReadError(
                        f"{where}: refers to object {index} of {wanted} bytes in the global heap "
                        f"collection at address {address}, which holds "
                        + ("no such object" if seen < 0 else f"{seen} bytes there")
                    )

    # -- datatypes -------------------------------------------------------------------------

    def _unit(self, kind: h5py.h5t.TypeID, where: str) -> int | None:
        """Bytes per element of the heap objects a datatype's data refers to (a string: 1);
        None when it refers to none."""
        cls = kind.get_class()
        if cls == h5py.h5t.STRING:
            return 1 if kind.is_variable_str() else None
        if cls == h5py.h5t.VLEN:
            base = kind.get_super()
            if self._unit(base, where) is not None or base.get_class() == h5py.h5t.REFERENCE:
                raise ReadError(f"{where}: variable-length data inside variable-length data "
                                "cannot be checked before it is read")
            return int(base.get_size())
        if cls in (h5py.h5t.COMPOUND, h5py.h5t.ARRAY) and (
            kind.detect_class(h5py.h5t.VLEN) or _has_variable_string(kind)
        ):
            raise ReadError(f"{where}: variable-length data inside a {_class_name(cls)} cannot "
                            "be checked before it is read")
        if cls == h5py.h5t.REFERENCE and kind != h5py.h5t.STD_REF_OBJ:
            raise ReadError(f"{where}: a region reference (stored in the global heap) cannot "
                            "be checked before it is read")
        return None

    # -- dataset rows -----------------------------------------------------------------------

    def rows(self, dataset: h5py.Dataset, start: int, stop: int, where: str,
             limit: int | None = None) -> None:
        """Check the heap objects rows ``[start, stop)`` of ``dataset`` refer to: the rows of
        each chunk they lie in, below ``limit`` (default ``stop``), each chunk once."""
        if stop <= start:
            return
        unit = self._unit(dataset.id.get_type(), where)
        if unit is None:
            return
        per_row = math.prod(dataset.shape[1:])
        size = 4 + self.offset_size + 4
        layout = dataset.id.get_create_plist().get_layout()
        key = h5py.h5o.get_info(dataset.id).addr
        limit = stop if limit is None else max(stop, limit)
        if layout == h5py.h5d.CONTIGUOUS:  # checked from the first row, as one chunk
            if (key, 0, limit) in self._checked:
                return
            offset = dataset.id.get_offset()
            if offset is not None:
                raw = self._read_exact(int(offset) - self.base, limit * per_row * size,
                                       f"{where}: the rows")
                self.references(raw, limit * per_row, unit, where)
            self._checked.add((key, 0, limit))
            return
        if layout != h5py.h5d.CHUNKED or tuple(dataset.chunks[1:]) != tuple(dataset.shape[1:]):
            raise ReadError(f"{where}: variable-length rows stored otherwise than in chunks of "
                            "whole rows cannot be checked before they are read")
        rows = int(dataset.chunks[0])
        zeros = (0,) * (dataset.ndim - 1)
        for first in range(start - start % rows, stop, rows):
            last = min(first + rows, limit)
            if (key, first, last) in self._checked:
                continue
            coord = (first, *zeros)
            if dataset.id.get_chunk_info_by_coord(coord).byte_offset is not None:
                mask, stored = dataset.id.read_direct_chunk(coord)
                raw = self._unfilter(dataset, mask, stored, rows * per_row * size, where)
                self.references(raw, (last - first) * per_row, unit,
                                f"{where}, rows {first} to {last - 1}")
            self._checked.add((key, first, last))

    def _unfilter(self, dataset: h5py.Dataset, mask: int, data: bytes, size: int,
                  where: str) -> bytes:
        plist = dataset.id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
        for position in reversed(range(len(filters))):
            if mask & (1 << position):
                continue
            code, values = filters[position][0], filters[position][2]
            try:
                data = _undo(code, values, data, size)
            except ReadError as error:
                raise ReadError(f"{where}: {error}") from error
            except (zlib.error, ValueError, RuntimeError) as error:
                raise ReadError(f"{where}: a chunk cannot be decoded ({error})") from error
        if len(data) != size:
            raise ReadError(f"{where}: expected a chunk of {size} bytes, found {len(data)}")
        return data

    # -- attributes ------------------------------------------------------------------------

    def attributes(self, node: h5py.Group | h5py.Dataset, where: str) -> None:
        """Check the heap objects ``node``'s attributes refer to."""
        address = h5py.h5o.get_info(node.id).addr
        if ("attributes", address) in self._checked:
            return
        try:
            for attribute in self._attribute_messages(address, where):
                place = f"{where}:{attribute.name}" if where != "/" else attribute.name
                unit = self._attribute_unit(node, attribute, place)
                if unit is None:
                    continue
                if attribute.shared & 2:
                    raise ReadError(f"{place}: a shared dataspace cannot be checked")
                # an attribute that names no object is what a commit cut short leaves of
                # recorder_status; HDF5 refuses to read it (the reader takes it as absent)
                self.references(attribute.data, attribute.count(self.length_size), unit, place,
                                missing_ok=True)
        except (_Short, IndexError) as error:
            raise ReadError(f"{where}: its object header ends inside a message") from error
        self._checked.add(("attributes", address))

    def _attribute_unit(self, node: h5py.HLObject, attribute: _Attribute,
                        where: str) -> int | None:
        datatype = attribute.datatype
        cls = datatype[0] & 0x0F if datatype and not attribute.shared & 1 else None
        if cls == VLEN and datatype[1] & 0x0F == 1:
            return 1  # a string
        if cls not in (VLEN, COMPOUND, ARRAY, REFERENCE, ENUM, None):
            return None  # numbers, fixed strings, opaque: nothing in the heap
        try:
            kind = h5py.h5a.open(node.id, attribute.name.encode()).get_type()
        except (KeyError, RuntimeError, OSError) as error:
            raise ReadError(f"{where}: the attribute cannot be opened ({error})") from error
        return self._unit(kind, where)

    def _attribute_messages(self, address: int, where: str) -> Iterator[_Attribute]:
        for kind, message in self._messages(address, where):
            if kind == ATTRIBUTE:
                yield _Attribute(message)
            elif kind == ATTRIBUTE_INFO:
                yield from self._dense(message, where)

    def _messages(self, address: int, where: str) -> list[tuple[int, bytes]]:
        """Every message of the object header at ``address``, continuation blocks included."""
        what = f"{where}: the object header"
        first = self._read_exact(address, min(512, max(0, self.length - self.base - address)),
                                 what)
        blocks: list[tuple[int, int, int]] = []  # address, start, end of the messages
        if first[:4] == b"OHDR":
            version, flags = first[4], first[5]
            if version != 2:
                raise ReadError(f"{what} at {address}: version {version}, expected 2")
            at = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
            width = 1 << (flags & 3)
            chunk = _number(first, at, width)
            at += width
            blocks.append((address, at, at + chunk))
            order = 2 if flags & 0x04 else 0
        elif first[:1] == b"\x01":
            blocks.append((address, 16, 16 + _number(first, 8, 4)))
            order = 0
        else:
            raise ReadError(f"{what} at {address}: expected OHDR or version 1, found "
                            f"{first[:4]!r}")
        version = 1 if first[:1] == b"\x01" else 2
        messages: list[tuple[int, bytes]] = []
        seen: set[int] = set()
        while blocks:
            block, start, end = blocks.pop(0)
            if block in seen or len(seen) > MAX_HEADER_BLOCKS:
                raise ReadError(f"{what}: its continuation blocks loop")
            seen.add(block)
            data = self._read_exact(block, end, what)
            if block != address and version == 2 and data[:4] != b"OCHK":
                raise ReadError(f"{what}: a continuation block at {block} without OCHK")
            at = start
            head = 8 if version == 1 else 4 + order
            while at + head <= end:
                if version == 1:
                    kind, size = _number(data, at, 2), _number(data, at + 2, 2)
                else:
                    kind, size = data[at], _number(data, at + 1, 2)
                at += head
                if at + size > end:
                    raise ReadError(f"{what}: a message of {size} bytes runs past its block")
                message = data[at : at + size]
                at += size
                if kind == CONTINUATION:
                    target = self._address(message, 0)
                    length = _number(message, self.offset_size, self.length_size)
                    if version == 2:
                        blocks.append((target, 4, length - 4))
                    else:
                        blocks.append((target, 0, length))
                elif kind != NIL:
                    messages.append((kind, message))
        return messages

    # -- attributes stored densely: a fractal heap, indexed by a v2 B-tree --------------------

    def _dense(self, message: bytes, where: str) -> Iterator[_Attribute]:
        flags = message[1]
        at = 2 + (2 if flags & 1 else 0)
        heap_address = self._address(message, at)
        names = self._address(message, at + self.offset_size)
        if heap_address == UNDEFINED or names == UNDEFINED:
            return
        heap = _FractalHeap(self, heap_address, where)
        for record in self._btree(names, where)[1]:
            if record[heap.id_length] & 2:
                raise ReadError(f"{where}: an attribute shared across objects cannot be checked")
            address, length, data = heap.object(record[: heap.id_length])
            attribute = _Attribute(data)
            if len(data) < length and self._attribute_needs_data(attribute):
                attribute = _Attribute(self._read_exact(address, length, heap.what))
            yield attribute

    def _attribute_needs_data(self, attribute: _Attribute) -> bool:
        """Whether the data of an attribute read in part may refer to the heap."""
        datatype = attribute.datatype
        return not datatype or bool(attribute.shared & 1) or (datatype[0] & 0x0F) in (
            VLEN, COMPOUND, ARRAY, REFERENCE)

    def _btree(self, address: int, where: str) -> tuple[int, list[bytes]]:
        """The type and every record of the v2 B-tree at ``address``."""
        what = f"{where}: the attribute index"
        o = self.offset_size
        header = self._read_exact(address, 16 + o + 2 + self.length_size + 4, what)
        if header[:4] != b"BTHD":
            raise ReadError(f"{what} at {address}: expected BTHD, found {header[:4]!r}")
        node_size, record = _number(header, 6, 4), _number(header, 10, 2)
        depth = _number(header, 12, 2)
        root, root_records = self._address(header, 16), _number(header, 16 + o, 2)
        if not 10 < node_size <= 1 << 20 or not 0 < record < node_size or depth > 16:
            raise ReadError(f"{what}: nodes of {node_size} bytes, records of {record}, depth "
                            f"{depth}")
        most = [(node_size - 10) // record]
        count_size = _enc_size(most[0])
        total_size = [0]
        totals = [most[0]]
        for level in range(1, depth + 1):
            pointer = o + count_size + total_size[level - 1]
            most.append((node_size - 10 - pointer) // (record + pointer))
            totals.append((most[level] + 1) * totals[level - 1] + most[level])
            total_size.append(_enc_size(totals[level]))
        found: list[bytes] = []
        pending = [(root, root_records, depth)] if root != UNDEFINED else []
        visited = 0
        while pending:
            node, count, level = pending.pop()
            visited += 1
            if visited > MAX_BTREE_NODES or count > most[level]:
                raise ReadError(f"{what}: a node of {count} records (at most {most[level]})")
            data = self._read_exact(node, node_size, what)
            if data[:4] != (b"BTLF" if level == 0 else b"BTIN"):
                raise ReadError(f"{what}: a node at {node} reads {data[:4]!r}")
            found += [data[6 + i * record : 6 + (i + 1) * record] for i in range(count)]
            if level:
                at = 6 + count * record
                for _ in range(count + 1):
                    child = self._address(data, at)
                    records = _number(data, at + o, count_size)
                    at += o + count_size + (total_size[level - 1] if level > 1 else 0)
                    pending.append((child, records, level - 1))
        return header[5], found


class _FractalHeap:
    """The managed objects of a fractal heap (where densely stored attributes live)."""

    def __init__(self, check: HeapCheck, address: int, where: str) -> None:
        self.check = check
        self.what = f"{where}: the attribute heap"
        o, ll = check.offset_size, check.length_size
        data = check._read_exact(address, 22 + 12 * ll + 3 * o + 12, self.what)
        if data[:4] != b"FRHP":
            raise ReadError(f"{self.what} at {address}: expected FRHP, found {data[:4]!r}")
        self.id_length = _number(data, 5, 2)
        filtered = _number(data, 7, 2)
        managed_most = _number(data, 10, 4)
        self.huge_tree = check._address(data, 14 + ll)
        self._huge: dict[int, tuple[int, int]] | None = None
        self._blocks: dict[int, bytes] = {}  # direct blocks read, by address
        self._tables: dict[int, list[tuple[int, int, int, int]]] = {}
        at = 14 + 10 * ll + 2 * o
        self.width = _number(data, at, 2)
        self.start_block = _number(data, at + 2, ll)
        self.direct_most = _number(data, at + 2 + ll, ll)
        heap_bits = _number(data, at + 2 + 2 * ll, 2)
        self.root = check._address(data, at + 6 + 2 * ll)
        self.root_rows = _number(data, at + 6 + 2 * ll + o, 2)
        if filtered or not 0 < self.id_length < 64 or self.width < 1 or heap_bits > 64 or (
            self.start_block < 1 or self.start_block & (self.start_block - 1)
            or self.direct_most < self.start_block or self.direct_most & (self.direct_most - 1)
        ):
            raise ReadError(f"{self.what}: a layout that cannot be read (filters {filtered}, "
                            f"width {self.width}, blocks {self.start_block}..{self.direct_most})")
        self.offset_bytes = -(-heap_bits // 8)
        self.length_bytes = min(-(-(self.direct_most.bit_length() - 1) // 8),
                                _enc_size(managed_most))
        self.direct_rows = (self.direct_most.bit_length() - self.start_block.bit_length()) + 2

    def object(self, heap_id: bytes) -> tuple[int, int, bytes]:
        """The address and length of an object, and its bytes (of a huge object, the first
        :data:`HUGE_PREFIX`)."""
        kind = (heap_id[0] >> 4) & 3
        if heap_id[0] >> 6:
            raise ReadError(f"{self.what}: a heap ID of version {heap_id[0] >> 6}")
        if kind == 2:  # tiny: the object is in the ID
            data = heap_id[1 : 2 + (heap_id[0] & 0x0F)]
            return UNDEFINED, len(data), data
        if kind == 1:
            address, length = self._huge_object(_number(heap_id, 1, len(heap_id) - 1))
            prefix = self.check._read_exact(address, min(length, HUGE_PREFIX), self.what)
            return address, length, prefix
        if kind != 0:
            raise ReadError(f"{self.what}: a heap ID of type {kind}")
        offset = _number(heap_id, 1, self.offset_bytes)
        length = _number(heap_id, 1 + self.offset_bytes, self.length_bytes)
        if self.root == UNDEFINED:
            raise ReadError(f"{self.what}: no root block")
        if self.root_rows == 0:
            block, block_offset, size = self.root, 0, self.start_block
        else:
            block, block_offset, size = self._find(self.root, self.root_rows, 0, offset, 0)
        if not (block_offset <= offset and offset + length <= block_offset + size):
            raise ReadError(f"{self.what}: an object at heap offset {offset} ({length} bytes) "
                            "outside its block")
        if block not in self._blocks:
            self._blocks[block] = self.check._read_exact(block, size, self.what)
        start = offset - block_offset
        return block + start, length, self._blocks[block][start : start + length]

    def _huge_object(self, number: int) -> tuple[int, int]:
        """Where the huge object ``number`` lies (its B-tree holds address, length, number)."""
        if self._huge is None:
            if self.huge_tree == UNDEFINED:
                raise ReadError(f"{self.what}: a huge object, but no index of them")
            kind, records = self.check._btree(self.huge_tree, self.what)
            if kind != 1:
                raise ReadError(f"{self.what}: huge objects indexed by a B-tree of type {kind} "
                                "(expected 1: neither filtered nor stored in the ID)")
            o, ll = self.check.offset_size, self.check.length_size
            self._huge = {
                _number(record, o + ll, len(record) - o - ll): (
                    self.check._address(record, 0), _number(record, o, ll))
                for record in records
            }
        if number not in self._huge:
            raise ReadError(f"{self.what}: no huge object {number}")
        return self._huge[number]

    def _row_size(self, row: int) -> int:
        return self.start_block if row == 0 else self.start_block << (row - 1)

    def _find(self, block: int, rows: int, block_offset: int, offset: int,
              nesting: int) -> tuple[int, int, int]:
        """The direct block holding heap ``offset`` (its address, heap offset and size),
        below the indirect block at ``block``."""
        if nesting > MAX_NESTING or rows > 64:
            raise ReadError(f"{self.what}: indirect blocks nested too deep")
        for child, position, size, row in self._table(block, rows, block_offset):
            if position <= offset < position + size:
                if child == UNDEFINED:
                    break
                if row < self.direct_rows:
                    return child, position, size
                child_rows = size.bit_length() - (self.start_block * self.width).bit_length() + 1
                return self._find(child, child_rows, position, offset, nesting + 1)
        raise ReadError(f"{self.what}: no block holds heap offset {offset}")

    def _table(self, block: int, rows: int, block_offset: int) -> list[tuple[int, int, int, int]]:
        """The children of the indirect block at ``block``: address, heap offset, size, row."""
        if block in self._tables:
            return self._tables[block]
        check = self.check
        o = check.offset_size
        data = check._read_exact(block, 5 + o + self.offset_bytes + rows * self.width * o,
                                 self.what)
        if data[:4] != b"FHIB":
            raise ReadError(f"{self.what}: an indirect block at {block} reads {data[:4]!r}")
        at = 5 + o + self.offset_bytes
        position = block_offset
        table = []
        for row in range(rows):
            size = self._row_size(row)
            for _ in range(self.width):
                table.append((check._address(data, at), position, size, row))
                at += o
                position += size
        self._tables[block] = table
        return table


def _undo(code: int, values: tuple[int, ...], data: bytes, size: int) -> bytes:
    """One filter undone, the result at most ``size`` bytes."""
    if code == DEFLATE:
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, size + 1)
        if len(out) > size or not inflater.eof:
            raise ReadError(f"a deflated chunk does not hold {size} bytes")
        return out
    if code == SHUFFLE:
        item = int(values[0]) if values else 1
        if item <= 1 or len(data) % item:
            return data
        return np.frombuffer(data, np.uint8).reshape(item, -1).T.tobytes()
    if code == FLETCHER32:
        return data[:-4]
    if code == BLOSC2:
        import blosc2

        frame = blosc2.schunk_from_cframe(bytes(data), copy=True)
        if frame.nbytes != size:
            raise ReadError(f"a blosc2 chunk of {frame.nbytes} bytes, expected {size}")
        return b"".join(bytes(frame.decompress_chunk(i)) for i in range(frame.nchunks))
    raise ReadError(f"a chunk through filter {code} cannot be checked before it is read")


def _class_name(cls: int) -> str:
    return {h5py.h5t.COMPOUND: "compound", h5py.h5t.ARRAY: "array"}.get(cls, str(cls))


def _has_variable_string(kind: h5py.h5t.TypeID) -> bool:
    cls = kind.get_class()
    if cls == h5py.h5t.STRING:
        return bool(kind.is_variable_str())
    if cls == h5py.h5t.COMPOUND:
        return any(_has_variable_string(kind.get_member_type(i))
                   for i in range(kind.get_nmembers()))
    if cls == h5py.h5t.ARRAY:
        return _has_variable_string(kind.get_super())
    return False
