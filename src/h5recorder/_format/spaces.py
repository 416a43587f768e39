"""Spaces as JSON, the ``recorder_space`` attribute: the writer describes each root's space
with :func:`space_to_json`, the reader rebuilds it with :func:`space_from_json`.

A format module: it imports neither the write side nor the read side, only gymnasium, numpy
and :mod:`h5recorder.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from ..errors import SchemaError

__all__ = ["TEXT_MAX_LENGTH", "space_from_json", "space_to_json"]

TEXT_MAX_LENGTH = 1000  # the longest text of a Text space that a file or a value does not bound


def _bound(values: np.ndarray[Any, Any]) -> Any:
    """A Box bound as JSON: one number when every element is the same, else nested lists."""
    flat = values.reshape(-1)
    if flat.size and (flat == flat[0]).all():
        return flat[0].item()
    return values.tolist()


def space_to_json(space: spaces.Space[Any]) -> dict[str, Any]:
    """Everything that makes ``space`` equal to another, as JSON (what the reader rebuilds).

    The reference's layout attributes keep only the first element of a Box's bounds and no
    ``start`` or character set; this description is exact. Python's ``json`` writes
    infinities as ``Infinity``, which it reads back.
    """
    kind = type(space).__name__
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(sub) for sub in space.spaces]}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "dtype": str(space.dtype),
            "shape": list(space.shape),
            "low": _bound(space.low),
            "high": _bound(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "dtype": str(space.dtype),
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(space.start).tolist(),
        }
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Text):
        return {
            "type": "Text",
            "min_length": int(space.min_length),
            "max_length": int(space.max_length),
            "charset": "".join(sorted(space.character_set)),
        }
    raise SchemaError(f"cannot describe a {kind} space")


def space_from_json(description: Mapping[str, Any]) -> spaces.Space[Any]:
    """The space :func:`space_to_json` described."""
    kind = description.get("type")
    if kind == "Dict":
        return spaces.Dict({k: space_from_json(v) for k, v in description["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([space_from_json(sub) for sub in description["spaces"]])
    if kind == "Box":
        dtype = np.dtype(description["dtype"])
        shape = tuple(description["shape"])
        low = np.asarray(description["low"], dtype=np.float64 if dtype.kind == "f" else None)
        high = np.asarray(description["high"], dtype=np.float64 if dtype.kind == "f" else None)
        return spaces.Box(
            np.broadcast_to(low, shape).astype(dtype),
            np.broadcast_to(high, shape).astype(dtype),
            shape,
            dtype,
        )
    if kind == "Discrete":
        return spaces.Discrete(int(description["n"]), start=int(description["start"]))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(
            np.asarray(description["nvec"]),
            dtype=np.dtype(description["dtype"]),
            start=np.asarray(description["start"]),
        )
    if kind == "MultiBinary":
        return spaces.MultiBinary(description["n"])
    if kind == "Text":
        return spaces.Text(
            int(description["max_length"]),
            min_length=int(description["min_length"]),
            charset=description["charset"],
        )
    raise SchemaError(f"unknown space description {kind!r}")
