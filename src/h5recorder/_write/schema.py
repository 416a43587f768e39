"""Spaces to a flat plan of leaf columns, and values to what those columns hold.

A :class:`Plan` is built once per file from gymnasium spaces (declared, or inferred from the
first step). It lists every leaf column with its dtype, shape and how a value is checked, and
it creates the groups, datasets and attributes of the file layout (written down in
``_format.attrs``; mbodied's readers read it, see "Compared with mbodied's Recorder" in the README).

``Plan.collect`` is the caller's side of ``record()``: it walks one step, checks every value
and leaves the converted values in a preallocated list, raising :class:`StepError` before
anything is copied. It never touches h5py.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
from gymnasium import spaces

from .._format.attrs import ROOTS, SPACE_ATTRIBUTE, TIME_ATTRIBUTE
from .._format.codecs import Codec, parse_compression
from .._format.spaces import TEXT_MAX_LENGTH, space_from_json, space_to_json
from ..errors import SchemaError, StepError, StepTypeError

__all__ = [
    "Group",
    "Leaf",
    "Plan",
    "create_dataset_for_space_dict",
    "dataset_options",
    "infer_space",
    "json_schema",
    "space_from_json",
    "space_to_json",
    "to_mapping",
]

MISSING: Any = object()
TIME_COLUMNS = ("monotonic_ns", "wall_ns")
TIME_SELF_LINK = "_self"
TIME_CLOCK = (
    "monotonic_ns: time.perf_counter_ns() when record() stored the step (CLOCK_MONOTONIC on "
    "Linux, the clock of time.monotonic_ns()); wall_ns: the same instant on the wall clock "
    "(time.time_ns(), Unix epoch), from the offset between the two clocks when the row "
    "was written"
)
STRING_DTYPE = h5py.string_dtype("utf-8")
STRING_CHUNK_ROWS = 1024
DEFAULT_CHUNK_BYTES = 1 << 20
# Small leaves fill a chunk slowly; every commit rewrites the partly filled chunk at the end of
# the file, so a cap on their rows bounds how much a slow recording leaves behind.
MAX_CHUNK_ROWS = 1024

_SPACE_KINDS: dict[type, str] = {
    spaces.Box: "box",
    spaces.Discrete: "discrete",
    spaces.MultiDiscrete: "multidiscrete",
    spaces.MultiBinary: "multibinary",
    spaces.Text: "text",
    spaces.Tuple: "tuple",
}


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, str):
        return f"str of length {len(value)}"
    return f"{type(value).__name__} {value!r:.60}"


@dataclass(eq=False)
class Leaf:
    """One column of the file: a dataset, its ring column and how its values are checked."""

    path: tuple[str, ...]
    space: spaces.Space[Any]
    kind: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    index: int = 0
    chunk_rows: int = 1
    name: str = field(init=False)
    plain: bool = field(init=False)
    fill: Any = field(init=False)

    def __post_init__(self) -> None:
        self.name = "/".join(self.path)
        self.plain = self.kind == "box"  # no check beyond shape and dtype
        self.fill = "" if self.is_string else np.zeros(self.shape, self.dtype)
        if self.kind == "discrete":
            self._low = int(self.space.start)  # type: ignore[attr-defined]
            self._high = self._low + int(self.space.n)  # type: ignore[attr-defined]
        elif self.kind == "multidiscrete":
            self._low_arr = np.asarray(self.space.start)  # type: ignore[attr-defined]
            self._high_arr = self._low_arr + np.asarray(self.space.nvec)  # type: ignore[attr-defined]
        self.coerce: Callable[[Any], Any] = getattr(self, f"_coerce_{self.kind}")

    @property
    def is_string(self) -> bool:
        return self.kind in ("text", "tuple")

    @property
    def is_image(self) -> bool:
        """uint8 or uint16 frames: HxW, or HxWxC with 1, 3 or 4 channels."""
        return (
            self.kind == "box"
            and self.dtype in (np.uint8, np.uint16)
            and (len(self.shape) == 2 or (len(self.shape) == 3 and self.shape[2] in (1, 3, 4)))
        )

    @property
    def row_bytes(self) -> int:
        if self.is_string:
            return 16
        return int(self.dtype.itemsize * math.prod(self.shape))

    @property
    def stat_width(self) -> int:
        """Statistics are kept per channel for images, per element otherwise."""
        if self.is_image:
            return self.shape[2] if len(self.shape) == 3 else 1
        return max(1, math.prod(self.shape))

    # -- value checks: each returns what the ring column stores, or raises StepError --------

    def _array(self, value: Any) -> np.ndarray[Any, Any]:
        if type(value) is np.ndarray:
            return value
        if type(value) not in _PLAIN_TYPES:
            value = unwrap(value)
            if type(value) is np.ndarray:
                return value
        if isinstance(value, str | bytes | Mapping):
            raise StepTypeError(self.name, self._expected(), _describe(value))
        if hasattr(value, "getbands"):  # a PIL image
            return np.asarray(value)
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise StepTypeError(self.name, self._expected(), _describe(value)) from error
        if array.dtype.kind not in "biuf":
            raise StepTypeError(self.name, self._expected(), _describe(value))
        return array

    def _expected(self) -> str:
        return f"shape {self.shape} and dtype {self.dtype}"

    def _coerce_box(self, value: Any) -> np.ndarray[Any, Any]:
        array = self._array(value)
        if array.shape != self.shape:
            raise StepError(self.name, f"shape {self.shape}", f"shape {array.shape}")
        if array.dtype != self.dtype:
            self._check_cast(array)
        return array

    def _check_cast(self, array: np.ndarray[Any, Any]) -> None:
        source, target = array.dtype, self.dtype
        if np.can_cast(source, target, "safe"):
            return
        if source.kind in "iu" and target.kind in "iub":
            limits = (0, 1) if target.kind == "b" else np.iinfo(target)
            low, high = (limits[0], limits[1]) if target.kind == "b" else (limits.min, limits.max)  # type: ignore[union-attr,index]
            if array.size and (array.min() < low or array.max() > high):
                bad = array.min() if array.min() < low else array.max()
                raise StepError(
                    self.name, f"values that fit {target} ({low}..{high})", f"{bad} ({source})"
                )
            return
        if source.kind in "iu" and target.kind == "f":
            return
        if source.kind == "f" and target.kind == "f":
            with np.errstate(over="ignore"):
                overflow = np.isinf(array.astype(target)) & np.isfinite(array)
            if overflow.any():
                bad = array[overflow].flat[0]
                raise StepError(self.name, f"values that fit {target}", f"{bad} ({source})")
            return
        raise StepError(
            self.name, f"dtype {target} or one that casts to it safely", f"dtype {source}"
        )

    def _integer(self, value: Any) -> int:
        if type(value) is not int:
            value = unwrap(value)
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iub":
            return int(value)
        raise StepTypeError(self.name, "an integer", _describe(value))

    def _coerce_discrete(self, value: Any) -> int:
        number = self._integer(value)
        if not self._low <= number < self._high:
            raise StepError(self.name, f"an integer in [{self._low}, {self._high})", str(number))
        return number

    def _coerce_multidiscrete(self, value: Any) -> np.ndarray[Any, Any]:
        array = self._array(value)
        if array.shape != self.shape:
            raise StepError(self.name, f"shape {self.shape}", f"shape {array.shape}")
        if array.dtype.kind not in "iub":
            raise StepError(self.name, "integers", f"dtype {array.dtype}")
        outside = (array < self._low_arr) | (array >= self._high_arr)
        if outside.any():
            raise StepError(
                self.name,
                f"integers in [{self._low_arr.tolist()}, {self._high_arr.tolist()})",
                str(array.tolist()),
            )
        return array

    def _coerce_multibinary(self, value: Any) -> np.ndarray[Any, Any]:
        array = self._array(value)
        if array.shape != self.shape:
            raise StepError(self.name, f"shape {self.shape}", f"shape {array.shape}")
        if array.dtype.kind not in "iub" or ((array != 0) & (array != 1)).any():
            raise StepError(self.name, "zeros and ones", _describe(array))
        return array

    def _coerce_text(self, value: Any) -> str:
        if type(value) is not str:
            value = unwrap(value)
        if not isinstance(value, str):
            raise StepTypeError(self.name, "a str", _describe(value))
        limit = self.space.max_length  # type: ignore[attr-defined]
        if len(value) > limit:
            raise StepError(self.name, f"a str of at most {limit} characters", _describe(value))
        return value

    def _coerce_tuple(self, value: Any) -> str:
        length = len(self.space.spaces)  # type: ignore[attr-defined]
        if not isinstance(value, tuple | list) or len(value) != length:
            raise StepTypeError(self.name, f"a tuple of {length} values", _describe(value))
        try:
            # mbodied's Replayer reads a JSON object: {"item": [...]} unpacks to one entry each
            return json.dumps({"item": [stored_json(item) for item in value]})
        except TypeError as error:
            raise StepTypeError(self.name, "values JSON can hold", _describe(value)) from error


_PLAIN_TYPES = frozenset({float, int, bool, str, list, tuple, dict, np.float32, np.float64})


def unwrap(value: Any) -> Any:
    """The value a leaf stores for a wrapped one: an mbodied ``Image`` is its ``.array``; a
    one-value wrapper (mbodied's ``JointControl(value=...)``, an ``Enum`` member, any object
    with a ``.value`` that is not a method) is its ``.value``, unwrapped again if needed.
    """
    for _ in range(8):  # a wrapper of a wrapper ...; bounded against self-referencing objects
        if isinstance(value, np.ndarray | np.generic | str | bytes | Mapping):
            return value
        array = getattr(value, "array", None)
        if array is not None and not callable(array):
            value = array
            continue
        inner = getattr(value, "value", None)
        if inner is not None and not callable(inner) and inner is not value:
            value = inner
            continue
        return value
    return value


def stored_json(value: Any) -> Any:
    """A Tuple's item in JSON's types, as the file stores it: exact, so NaN and infinities
    stay floats (json writes NaN and Infinity and reads them back); reports use
    :func:`h5recorder._format.attrs.jsonable` instead."""
    value = unwrap(value)
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(key): stored_json(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [stored_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


@dataclass(eq=False)
class Group:
    """A ``Dict`` space: a group in the file whose children are groups or leaves."""

    path: tuple[str, ...]
    space: spaces.Dict
    children: dict[str, Group | Leaf]


def to_mapping(value: Any) -> Mapping[str, Any] | None:
    """A dict, or the fields of an object with ``.dict()`` / ``model_dump()``; else None."""
    if isinstance(value, Mapping):
        return value
    if hasattr(value, "model_dump") or hasattr(value, "dict"):
        fields = {
            key: item
            for key, item in getattr(value, "__dict__", {}).items()
            if not key.startswith("_")
        }
        fields.update(getattr(value, "__pydantic_extra__", None) or {})
        if fields:
            return fields
        dumped = value.model_dump() if hasattr(value, "model_dump") else value.dict()
        return dumped if isinstance(dumped, Mapping) else None
    return None


class Plan:
    """The leaf columns of one file, in a fixed order, built from the root spaces."""

    def __init__(self, root_spaces: Mapping[str, spaces.Space[Any]], chunk_bytes: int) -> None:
        self.chunk_bytes = chunk_bytes
        self.roots: dict[str, Group | Leaf] = {}
        self.leaves: list[Leaf] = []
        for name, space in root_spaces.items():
            self.roots[name] = self._node((name,), space)
        self.values: list[Any] = [None] * len(self.leaves)
        self.slots = tuple(self.roots.get(name) for name in ROOTS)
        self._fast = self._compile_fast_path()
        self.order = [
            (ROOTS.index(name), node) for name, node in self.roots.items() if name in ROOTS
        ]
        self._warned: set[str] = set()

    def _node(self, path: tuple[str, ...], space: spaces.Space[Any]) -> Group | Leaf:
        if isinstance(space, spaces.Dict):
            children = {key: self._node((*path, key), sub) for key, sub in space.spaces.items()}
            return Group(path, space, children)
        leaf = make_leaf(path, space, self.chunk_bytes)
        leaf.index = len(self.leaves)
        self.leaves.append(leaf)
        return leaf

    def collect(self, step: tuple[Any, ...], strict: bool) -> int:
        """Check one step (values in :data:`ROOTS` order); leave converted values in
        ``self.values``; return how many leaves were missing (they hold their fill value).
        """
        if self._fast(step):  # the common step, checked by straight-line code
            return 0
        return self.collect_general(step, strict)

    def forget(self) -> None:
        """Drop the values of the last step, so that no reference to them stays here."""
        values = self.values
        for index in range(len(values)):
            values[index] = None

    def collect_general(self, step: tuple[Any, ...], strict: bool) -> int:
        """:meth:`collect` for any step: missing keys, unknown keys, objects, errors."""
        for position, value in enumerate(step):
            if value is not None and self.slots[position] is None:
                raise SchemaError(
                    f"{ROOTS[position]}: this root was neither declared nor present in the "
                    "first step; declare its space when creating the recorder"
                )
        missing = 0
        for position, node in self.order:
            missing += self._collect(node, step[position], strict)
        return missing

    def _compile_fast_path(self) -> Callable[[tuple[Any, ...]], bool]:
        """Straight-line code for a step of plain dicts holding every key of the plan.

        It stores each value (arrays of the exact shape and dtype as they are, others through
        the leaf's own check, which raises as usual) and returns True; anything else (a root
        that is not a dict, a missing, extra or ``None`` value) returns False before storing
        anything, and :meth:`collect_general` takes the step.
        """
        names: dict[str, Any] = {"ndarray": np.ndarray, "MISSING": MISSING}
        lines = ["def fast(step):"]
        checks: list[str] = []
        stores: list[str] = []
        counter = iter(range(10**9))

        def visit(node: Group | Leaf, expression: str) -> None:
            if isinstance(node, Leaf):
                value = f"v{next(counter)}"
                checks.append(f"    {value} = {expression}")
                checks.append(f"    if {value} is None or {value} is MISSING: return False")
                leaf = f"leaf{node.index}"
                names[leaf] = node
                names[f"dtype{node.index}"] = node.dtype
                names[f"shape{node.index}"] = node.shape
                if node.plain:
                    stores.append(
                        f"    values[{node.index}] = {value} if (type({value}) is ndarray and "
                        f"{value}.dtype is dtype{node.index} and {value}.shape == "
                        f"shape{node.index}) else {leaf}.coerce({value})"
                    )
                else:
                    stores.append(f"    values[{node.index}] = {leaf}.coerce({value})")
                return
            mapping = f"d{next(counter)}"
            checks.append(f"    {mapping} = {expression}")
            checks.append(
                f"    if type({mapping}) is not dict or len({mapping}) != {len(node.children)}: "
                "return False"
            )
            for key, child in node.children.items():
                name = f"k{next(counter)}"
                names[name] = key  # bound, not spelled out: any str subclass is a key
                visit(child, f"{mapping}.get({name}, MISSING)")

        for position, node in enumerate(self.slots):
            if node is None:
                checks.append(f"    if step[{position}] is not None: return False")
            else:
                visit(node, f"step[{position}]")
        names["values"] = self.values
        lines += checks + stores + ["    return True"]
        exec("\n".join(lines), names)
        fast: Callable[[tuple[Any, ...]], bool] = names["fast"]
        return fast

    def _collect(self, node: Group | Leaf, value: Any, strict: bool) -> int:
        values = self.values
        if type(node) is Leaf:
            if value is None or value is MISSING:
                values[node.index] = node.fill
                return 1
            values[node.index] = node.coerce(value)
            return 0
        assert isinstance(node, Group)
        if value is None:
            return sum(self._collect(child, None, strict) for child in node.children.values())
        mapping = value if type(value) is dict else to_mapping(value)
        if mapping is None:
            raise StepTypeError(
                "/".join(node.path), "a dict or an object with .dict()", _describe(value)
            )
        missing = 0
        found = 0
        get = mapping.get
        for key, child in node.children.items():
            item = get(key, MISSING)
            if item is MISSING or item is None:
                missing += self._collect(child, None, strict)
                found += item is None
                continue
            found += 1
            missing += self._collect(child, item, strict)
        if found != len(mapping):
            self._unknown(node, mapping, strict)
        return missing

    def _unknown(self, node: Group, mapping: Mapping[str, Any], strict: bool) -> None:
        for key in mapping:
            if key in node.children:
                continue
            name = "/".join((*node.path, str(key)))
            if strict:
                raise StepError(name, f"one of the keys {sorted(node.children)}", repr(key))
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"key {name!r} is not in the recorded space; skipped", stacklevel=5)

    def root_spaces(self) -> dict[str, spaces.Space[Any]]:
        return {name: node.space for name, node in self.roots.items()}


def make_leaf(path: tuple[str, ...], space: spaces.Space[Any], chunk_bytes: int) -> Leaf:
    kind = _SPACE_KINDS.get(type(space))
    if kind is None:
        for base, name in _SPACE_KINDS.items():
            if isinstance(space, base):
                kind = name
                break
    if kind is None:
        raise SchemaError(
            f"{'/'.join(path)}: cannot record a {type(space).__name__} space; expected one of "
            "Dict, Box, Discrete, MultiDiscrete, MultiBinary, Text, Tuple"
        )
    if kind in ("text", "tuple"):
        dtype: np.dtype[Any] = np.dtype(object)
        shape: tuple[int, ...] = ()
    elif kind == "discrete":
        dtype, shape = np.dtype(np.int64), ()
    else:
        dtype, shape = np.dtype(space.dtype), tuple(space.shape or ())
    leaf = Leaf(path, space, kind, dtype, shape)
    if leaf.is_string:
        leaf.chunk_rows = STRING_CHUNK_ROWS
    else:
        rows = max(1, chunk_bytes // max(1, leaf.row_bytes))
        leaf.chunk_rows = rows if leaf.is_image else min(rows, MAX_CHUNK_ROWS)
    return leaf


# -- inference ----------------------------------------------------------------------------


def infer_space(value: Any, key: str = "value") -> spaces.Space[Any]:
    """The space of one value, keeping its dtype (uint8 stays uint8, int stays int64).

    An object with ``.array`` (mbodied ``Image``) is a ``Box`` of that array, whatever its
    other fields; a one-value wrapper (fields ``{"value": v}``, mbodied ``JointControl``) is
    the space of ``v``; other objects with ``.dict()`` / ``model_dump()`` (mbodied ``Sample``)
    are a ``Dict`` of their fields; numbers, lists, numpy values, PIL images and objects with
    ``__array__`` are a ``Box`` of their array.
    """
    array_attribute = getattr(value, "array", None)
    if array_attribute is not None and not callable(array_attribute):
        return infer_space(array_attribute, key)
    mapping = None if isinstance(value, np.ndarray | np.generic) else to_mapping(value)
    if mapping is not None and not isinstance(value, Mapping) and list(mapping) == ["value"]:
        return infer_space(mapping["value"], key)
    if mapping is not None:
        return spaces.Dict(
            {k: infer_space(v, f"{key}/{k}") for k, v in mapping.items() if v is not None}
        )
    if isinstance(value, str):
        return spaces.Text(TEXT_MAX_LENGTH)
    if isinstance(value, bool | np.bool_):
        return spaces.Discrete(2)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise SchemaError(f"{key}: cannot infer a space from {_describe(value)}") from error
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise SchemaError(f"{key}: cannot infer a space from {_describe(value)}")
    if array.dtype.kind == "f":
        low, high = -np.inf, np.inf
    else:
        info = np.iinfo(array.dtype)
        low, high = info.min, info.max
    return spaces.Box(low=low, high=high, shape=array.shape, dtype=array.dtype)


# -- the file layout ----------------------------------------------------------------------


def json_schema(space: spaces.Space[Any]) -> dict[str, Any]:
    """A JSON Schema describing the values of ``space``."""
    if isinstance(space, spaces.Dict):
        return {
            "type": "object",
            "properties": {key: json_schema(sub) for key, sub in space.spaces.items()},
        }
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return {"type": "integer", "minimum": start, "maximum": start + int(space.n) - 1}
    if isinstance(space, spaces.Text):
        return {"type": "string", "minLength": space.min_length, "maxLength": space.max_length}
    if isinstance(space, spaces.Tuple):
        items = [json_schema(sub) for sub in space.spaces]
        return {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }
    if isinstance(space, spaces.MultiBinary | spaces.MultiDiscrete | spaces.Box):
        item: dict[str, Any]
        dtype = np.dtype(space.dtype)
        item = {"type": "number" if dtype.kind == "f" else "integer", "dtype": str(dtype)}
        if isinstance(space, spaces.MultiBinary):
            item.update(minimum=0, maximum=1)
        for size in reversed(tuple(space.shape or ())):
            item = {"type": "array", "items": item, "minItems": size, "maxItems": size}
        return item
    raise SchemaError(f"no JSON Schema for a {type(space).__name__} space")


def space_attributes(space: spaces.Space[Any]) -> dict[str, Any]:
    """The attributes the reference layout puts on the group or dataset of ``space``."""
    attrs: dict[str, Any] = {"space_type": type(space).__name__}
    if isinstance(space, spaces.Box):
        attrs["low"] = space.low.flat[0]
        attrs["high"] = space.high.flat[0]
        attrs["shape"] = np.asarray(space.shape, dtype=np.int64)
    elif isinstance(space, spaces.Discrete):
        attrs["n"] = int(space.n)
        attrs["string_values"] = np.zeros(0)  # the reference writes it, empty, on every Discrete
    elif isinstance(space, spaces.MultiDiscrete):
        attrs["nvec"] = np.asarray(space.nvec)
    elif isinstance(space, spaces.MultiBinary):
        attrs["n"] = np.asarray(space.n)
    elif isinstance(space, spaces.Tuple):
        attrs["tuple_length"] = len(space.spaces)
    elif isinstance(space, spaces.Text):
        attrs["max_length"] = int(space.max_length)
    attrs["json_schema"] = json.dumps(json_schema(space))
    attrs[SPACE_ATTRIBUTE] = json.dumps(space_to_json(space))
    return attrs


def time_leaves(chunk_bytes: int) -> list[Leaf]:
    """The per-step time columns: int64 nanoseconds, one row per recorded step."""
    clock = spaces.Box(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (), np.int64)
    return [make_leaf((TIME_ATTRIBUTE, name), clock, chunk_bytes) for name in TIME_COLUMNS]


def create_time_layout(
    file: h5py.File, leaves: list[Leaf], compression: str | None, level: int | None
) -> list[h5py.Dataset]:
    """Create the time columns in a group that the root does not link to.

    mbodied's ``Replayer`` yields one value per root key, and readers compare the groups
    and datasets with mbodied's layout: a visible time group would change both. The group
    links to itself (which keeps it alive), and the root attribute ``recorder_time`` holds
    an object reference to it: ``file[file.attrs[TIME_ATTRIBUTE]]["monotonic_ns"]``.
    Tools that copy a file by walking its links (h5repack, h5copy) leave it behind.
    """
    group = file.create_group(TIME_ATTRIBUTE)
    datasets = [
        create_leaf_dataset(group, leaf.path[-1], leaf, compression, level) for leaf in leaves
    ]
    group.attrs["clock"] = TIME_CLOCK
    group[TIME_SELF_LINK] = group
    file.attrs[TIME_ATTRIBUTE] = group.ref
    del file[TIME_ATTRIBUTE]
    return datasets


def leaf_codec(leaf: Leaf, compression: str | None, level: int | None) -> Codec | None:
    """The codec a leaf's chunks are stored with (None: raw); see ``_format.codecs``."""
    return parse_compression(compression, level).codec_for(
        leaf.is_string, leaf.is_image, leaf.row_bytes, leaf.dtype.itemsize
    )


def dataset_options(leaf: Leaf, compression: str | None, level: int | None) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords for the filters a leaf is written with."""
    codec = leaf_codec(leaf, compression, level)
    return {} if codec is None else codec.dataset_options()


def create_leaf_dataset(
    parent: h5py.Group, key: str, leaf: Leaf, compression: str | None, level: int | None
) -> h5py.Dataset:
    dtype = STRING_DTYPE if leaf.is_string else leaf.dtype
    dataset = parent.create_dataset(
        key,
        shape=(0, *leaf.shape),
        maxshape=(None, *leaf.shape),
        chunks=(leaf.chunk_rows, *leaf.shape),
        dtype=dtype,
        **dataset_options(leaf, compression, level),
    )
    dataset.attrs.update(space_attributes(leaf.space))
    return dataset


def create_dataset_for_space_dict(
    space_dict: spaces.Space[Any],
    group: h5py.Group,
    *,
    compression: str | None = "blosc2",
    compression_level: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> None:
    """Create the datasets (and subgroups) for ``space_dict`` inside ``group``.

    Parameters
    ----------
    space_dict
        A ``gymnasium.spaces.Dict``: each nested ``Dict`` becomes a subgroup, every other
        space a resizable dataset of shape ``(0, *space.shape)`` with the layout attributes
        (``space_type``, ``low``/``high``/``shape``, ``n``, ``nvec``, ``tuple_length``,
        ``max_length``, ``json_schema``). Any other space becomes one dataset named
        ``"value"`` inside ``group``.
    group
        An open, writable h5py group.
    compression, compression_level, chunk_bytes
        Filter and chunk size of the datasets (keyword-only; the defaults are the recorder's).
    """
    group.attrs.update(space_attributes(space_dict))
    if not isinstance(space_dict, spaces.Dict):
        leaf = make_leaf((group.name or "/", "value"), space_dict, chunk_bytes)
        create_leaf_dataset(group, "value", leaf, compression, compression_level)
        return
    for key, space in space_dict.spaces.items():
        if isinstance(space, spaces.Dict):
            create_dataset_for_space_dict(
                space,
                group.create_group(key),
                compression=compression,
                compression_level=compression_level,
                chunk_bytes=chunk_bytes,
            )
        else:
            leaf = make_leaf((key,), space, chunk_bytes)
            create_leaf_dataset(group, key, leaf, compression, compression_level)


def create_layout(
    file: h5py.File, plan: Plan, roots: list[str], compression: str | None, level: int | None
) -> dict[int, h5py.Dataset]:
    """Create the given roots of ``plan`` in ``file``; return datasets by leaf index."""
    datasets: dict[int, h5py.Dataset] = {}

    def build(parent: h5py.Group, key: str, node: Group | Leaf) -> None:
        if isinstance(node, Leaf):
            datasets[node.index] = create_leaf_dataset(parent, key, node, compression, level)
            return
        group = parent.create_group(key)
        group.attrs.update(space_attributes(node.space))
        for child_key, child in node.children.items():
            build(group, child_key, child)

    for name in roots:
        build(file, name, plan.roots[name])
    return datasets
