"""mbodied's own ``Replayer`` (mbodied 1.5.1) reads what h5recorder writes.

Run with ``tox -e compat``: it installs mbodied, which the default run does not have.

- Every space type is recorded with ``h5recorder.Recorder``, closed, and read back with
  ``mbodied.data.replaying.Replayer``: its ``size`` and the number of samples it yields are
  the number of steps, and every value it yields is the one recorded, with the space's dtype.
- The same steps recorded with mbodied's own ``Recorder`` replay to the same values, and the
  two files hold the same groups, datasets, dtypes, shapes and layout attributes.
- A fresh interpreter that imports only mbodied (no h5recorder, no hdf5plugin), as a user's
  replay script does, reads the file.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from mbodied.data.recording import Recorder as MbodiedRecorder
from mbodied.data.replaying import Replayer
from mbodied.types.sample import Sample
from mbodied.types.sense.vision import Image as MbodiedImage

from h5recorder import Recorder

ROOTS = ("observation", "action", "state", "supervision")

def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _box_values(space: spaces.Box, count: int, seed: int) -> list[Any]:
    """``count`` distinct values inside ``space``, as the arrays a robot loop would pass."""
    rng = _rng(seed)
    dtype = np.dtype(space.dtype)
    values = []
    for index in range(count):
        if dtype.kind == "b":
            value = rng.integers(0, 2, space.shape).astype(bool)
        elif dtype.kind in "iu":
            low = max(int(space.low.min()), -1000)
            high = min(int(space.high.max()), 1000)
            value = rng.integers(low, high + 1, space.shape).astype(dtype)
        else:
            value = (rng.uniform(-1, 1, space.shape) * (index + 1)).astype(dtype)
        values.append(value)
    return values


# (space, one value per step). Values differ from step to step, so a row read at the wrong
# index, or a fill value, cannot pass.
SPACE_CASES = [
    pytest.param(spaces.Box(-1, 1, (3,), np.float32),
                 [np.array([0.5, -0.25, 1.0], np.float32),
                  np.array([-1.0, 0.125, 0.0], np.float32),
                  np.array([0.75, 0.5, -0.5], np.float32)], id="box-float32-vector"),
    pytest.param(spaces.Box(-10, 10, (), np.float64), [1.5, -2.25, 9.0], id="box-float64-scalar"),
    pytest.param(spaces.Box(-100, 100, (), np.int64), [7, -3, 0], id="box-int64-scalar"),
    pytest.param(spaces.Box(-5, 5, (), np.int8),
                 [np.int8(-5), np.int8(4), np.int8(0)], id="box-int8-scalar"),
    pytest.param(spaces.Box(0, 255, (6, 8, 3), np.uint8),
                 _box_values(spaces.Box(0, 255, (6, 8, 3), np.uint8), 3, 1), id="box-uint8-image"),
    pytest.param(spaces.Box(0, 4095, (5, 7), np.uint16),
                 _box_values(spaces.Box(0, 4095, (5, 7), np.uint16), 3, 2), id="box-uint16-depth"),
    pytest.param(spaces.Box(-1000, 1000, (2, 3), np.int16),
                 _box_values(spaces.Box(-1000, 1000, (2, 3), np.int16), 3, 3),
                 id="box-int16-matrix"),
    pytest.param(spaces.Box(-1000, 1000, (4,), np.int32),
                 _box_values(spaces.Box(-1000, 1000, (4,), np.int32), 3, 4), id="box-int32"),
    pytest.param(spaces.Box(-1, 1, (2, 2, 2), np.float64),
                 _box_values(spaces.Box(-1, 1, (2, 2, 2), np.float64), 3, 5), id="box-float64-3d"),
    pytest.param(spaces.Box(0, 1, (3,), np.bool_),
                 [np.array([True, False, True]), np.array([False, False, True]),
                  np.array([True, True, False])], id="box-bool"),
    pytest.param(spaces.Box(-1, 1, (2,), np.float16),
                 [np.array([0.5, -0.25], np.float16), np.array([1.0, 0.0], np.float16)],
                 id="box-float16"),
    pytest.param(spaces.Discrete(5), [0, 4, 2], id="discrete"),
    pytest.param(spaces.Discrete(3, start=-1), [-1, 1, 0], id="discrete-start"),
    pytest.param(spaces.MultiDiscrete([3, 4, 5]),
                 [np.array([0, 3, 4]), np.array([2, 0, 1]), np.array([1, 1, 1])],
                 id="multidiscrete"),
    pytest.param(spaces.MultiDiscrete([[2, 3], [4, 5]]),
                 [np.array([[1, 2], [3, 4]]), np.array([[0, 0], [0, 1]])],
                 id="multidiscrete-2d"),
    pytest.param(spaces.MultiBinary(4),
                 [np.array([1, 0, 1, 1], np.int8), np.array([0, 0, 0, 1], np.int8),
                  np.array([1, 1, 0, 0], np.int8)], id="multibinary"),
    pytest.param(spaces.MultiBinary([2, 3]),
                 [np.array([[1, 0, 1], [0, 1, 0]], np.int8),
                  np.array([[0, 0, 0], [1, 1, 1]], np.int8)], id="multibinary-2d"),
    pytest.param(spaces.Text(40),
                 ["pick up the red cup", "ü ∑ 漢字 déjà vu ✓", "x"], id="text"),
    pytest.param(spaces.Tuple((spaces.Discrete(3), spaces.Discrete(4))),
                 [(0, 3), (2, 1), (1, 0)], id="tuple-discrete"),
    pytest.param(spaces.Tuple((spaces.Discrete(3), spaces.Box(0, 1, (2,), np.float32))),
                 [(1, np.array([0.5, 0.25], np.float32)), (2, np.array([0.0, 1.0], np.float32))],
                 id="tuple-mixed"),
    pytest.param(spaces.Tuple((spaces.Dict({"x": spaces.Discrete(4)}),
                               spaces.Dict({"x": spaces.Discrete(4)}))),
                 [({"x": 1}, {"x": 2}), ({"x": 3}, {"x": 0})],
                 id="tuple-of-dicts"),
    pytest.param(spaces.Dict({
        "pose": spaces.Box(-1, 1, (3,), np.float32),
        "grip": spaces.Dict({"open": spaces.Discrete(2),
                             "force": spaces.Box(0, 10, (), np.float64),
                             "deep": spaces.Dict({"label": spaces.Text(20),
                                                  "bits": spaces.MultiBinary(2)})}),
    }), [
        {"pose": np.array([0.1, 0.2, 0.3], np.float32),
         "grip": {"open": 1, "force": 2.5,
                  "deep": {"label": "a", "bits": np.array([1, 0], np.int8)}}},
        {"pose": np.array([-0.1, 0.0, 0.9], np.float32),
         "grip": {"open": 0, "force": 0.0,
                  "deep": {"label": "bé", "bits": np.array([0, 1], np.int8)}}},
    ], id="nested-dict"),
]

# Every space above that the Replayer reads today, in one nested observation.
ALL_SPACES = spaces.Dict({
    "image": spaces.Box(0, 255, (6, 8, 3), np.uint8),
    "joints": spaces.Box(-1, 1, (7,), np.float32),
    "force": spaces.Box(-10, 10, (), np.float64),
    "count": spaces.Box(0, 1000, (), np.int64),
    "mode": spaces.Discrete(4),
    "grid": spaces.MultiDiscrete([3, 4]),
    "contacts": spaces.MultiBinary(3),
    "instruction": spaces.Text(60),
    "arm": spaces.Dict({
        "wrist": spaces.Box(-1, 1, (2, 2), np.float64),
        "gripper": spaces.Dict({"closed": spaces.Discrete(2),
                                "width": spaces.Box(0, 1, (), np.float32)}),
    }),
})


def _all_spaces_step(index: int) -> dict[str, Any]:
    rng = _rng(100 + index)
    return {
        "image": rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
        "joints": rng.uniform(-1, 1, 7).astype(np.float32),
        "force": float(index) * 0.5 - 3.0,
        "count": index * 10,
        "mode": index % 4,
        "grid": np.array([index % 3, index % 4]),
        "contacts": np.array([index % 2, 1, 0], np.int8),
        "instruction": f"step {index}: place the block ✓",
        "arm": {
            "wrist": rng.uniform(-1, 1, (2, 2)),
            "gripper": {"closed": index % 2, "width": np.float32(index / 10)},
        },
    }


# -- helpers ------------------------------------------------------------------------------


def _expected_dtype(space: spaces.Space[Any]) -> np.dtype[Any]:
    if isinstance(space, spaces.Discrete):
        return np.dtype(np.int64)
    return np.dtype(space.dtype)  # type: ignore[arg-type]


def _tuple_items(replayed: Any, length: int, where: str) -> list[Any]:
    """The elements of a replayed Tuple.

    h5recorder stores a Tuple as ``{"item": [v0, v1, ...]}``; the Replayer unpacks it
    (``Sample.unpack(to_dicts=True)``) into one ``{"item": v}`` per element.
    """
    assert isinstance(replayed, list), f"{where}: expected a list, got {type(replayed).__name__}"
    assert len(replayed) == length, f"{where}: {len(replayed)} elements, expected {length}"
    assert all(isinstance(item, dict) and set(item) == {"item"} for item in replayed), where
    return [item["item"] for item in replayed]


def assert_replayed(replayed: Any, space: spaces.Space[Any], recorded: Any, where: str) -> None:
    """``replayed`` (what the Replayer yielded) is ``recorded``, with ``space``'s dtype."""
    if isinstance(space, spaces.Dict):
        assert isinstance(replayed, dict), f"{where}: expected a dict, got {replayed!r:.80}"
        assert set(replayed) == set(space.spaces), where
        for key, sub in space.spaces.items():
            assert_replayed(replayed[key], sub, recorded[key], f"{where}/{key}")
    elif isinstance(space, spaces.Text):
        assert isinstance(replayed, str), f"{where}: expected str, got {replayed!r:.80}"
        assert replayed == recorded, where
    elif isinstance(space, spaces.Tuple):
        items = _tuple_items(replayed, len(space.spaces), where)
        for index, (item, sub, value) in enumerate(zip(items, space.spaces, recorded, strict=True)):
            del sub
            assert item == json.loads(json.dumps(_jsonable(value))), f"{where}[{index}]"
    else:
        array = np.asarray(replayed)
        assert array.dtype == _expected_dtype(space), f"{where}: dtype {array.dtype}"
        assert array.shape == tuple(space.shape or ()), f"{where}: shape {array.shape}"
        np.testing.assert_array_equal(array, np.asarray(getattr(recorded, "array", recorded)),
                                      err_msg=where)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return np.asarray(value).tolist()


@contextmanager
def background_threads_checked(timeout: float = 300) -> Iterator[None]:
    """Wait for the threads started inside the block; fail if any of them raised.

    The recorder may leave a thread running after ``close()`` (its kernel compiler). Joined
    here, its failure is this test's, not that of whichever test runs when it dies.
    """
    before = set(threading.enumerate())
    errors: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        errors.append(f"thread {name}: {args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook
    try:
        yield
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout)
    finally:
        threading.excepthook = previous
    assert not errors, "a background thread of the recorder failed:\n" + "\n".join(errors)


def record(tmp_path: Path, name: str, steps: list[dict[str, Any]], **kwargs: Any) -> Path:
    """Record ``steps`` (each ``{"observation": ..., "action": ...}``) with h5recorder."""
    with background_threads_checked(), Recorder(name, out_dir=str(tmp_path), **kwargs) as recorder:
        for step in steps:
            recorder.record(**step)
    return Path(recorder.filename)


def replay(path: Path, **kwargs: Any) -> tuple[Replayer, list[tuple[Any, ...]]]:
    replayer = Replayer(str(path), **kwargs)
    samples = list(replayer)
    return replayer, samples


def _walk(path: Path) -> dict[str, tuple[str, Any, dict[str, Any]]]:
    """Every object of the file: name -> (kind, (dtype, row shape, maxshape), attributes)."""
    objects: dict[str, tuple[str, Any, dict[str, Any]]] = {}
    with h5py.File(path, "r") as file:
        objects["/"] = ("file", None, dict(file.attrs))

        def visit(name: str, obj: Any) -> None:
            attrs = {key: obj.attrs[key] for key in obj.attrs}
            if isinstance(obj, h5py.Dataset):
                string = h5py.check_string_dtype(obj.dtype)
                dtype = f"str:{string.encoding}" if string else str(obj.dtype)
                objects[name] = ("dataset", (dtype, obj.shape[1:], obj.maxshape), attrs)
            else:
                objects[name] = ("group", None, attrs)

        file.visititems(visit)
    return objects


def assert_same_sample(mine: Any, theirs: Any, where: str) -> None:
    """``mine`` equals the ``Replayer``'s ``theirs``: same keys, strings, and arrays of the
    same shape, dtype and values."""
    if isinstance(theirs, dict):
        assert isinstance(mine, dict) and set(mine) == set(theirs), where
        for key in theirs:
            assert_same_sample(mine[key], theirs[key], f"{where}/{key}")
    elif isinstance(theirs, str):
        assert mine == theirs, where
    else:
        assert np.asarray(mine).shape == np.asarray(theirs).shape, where
        assert np.asarray(mine).dtype == np.asarray(theirs).dtype, where
        np.testing.assert_array_equal(mine, theirs, err_msg=where)


# -- mbodied's Replayer reads every space type ---------------------------------------------


@pytest.mark.parametrize("placement", ["in-dict", "bare-root"])
@pytest.mark.parametrize(("space", "values"), SPACE_CASES)
def test_replayer_reads_each_space(
    tmp_path: Path, space: spaces.Space[Any], values: list[Any], placement: str
) -> None:
    if placement == "in-dict":
        observation_space: spaces.Space[Any] = spaces.Dict({"value": space})
        steps = [{"observation": {"value": value}} for value in values]
    else:
        # h5recorder also takes a bare (non-Dict) root space: a dataset named after the root.
        observation_space = space
        steps = [{"observation": value} for value in values]
    path = record(tmp_path, "space", steps, observation_space=observation_space)

    replayer, samples = replay(path)
    try:
        assert replayer.file_keys == ["observation"]
        assert replayer.size == len(values)
        assert len(samples) == len(values)
        for index, (sample, step) in enumerate(zip(samples, steps, strict=True)):
            assert isinstance(sample, tuple) and len(sample) == 1
            assert_replayed(sample[0], observation_space, step["observation"], f"step {index}")
        # Random access gives the same rows.
        last = len(values) - 1
        assert_replayed(replayer.read_sample(last)[0], observation_space,
                        steps[last]["observation"], "read_sample(last)")
    finally:
        replayer.close()


@pytest.mark.parametrize("compression", ["blosc2", "gzip", "lzf", None])
def test_replayer_reads_all_roots(tmp_path: Path, compression: str | None) -> None:
    action_space = spaces.Box(-1, 1, (4,), np.float32)
    state_space = spaces.Dict({"position": spaces.Box(-5, 5, (3,), np.float64),
                               "phase": spaces.Discrete(3)})
    supervision_space = spaces.Dict({"reward": spaces.Box(-1, 1, (), np.float32),
                                     "note": spaces.Text(30)})
    steps = [
        {
            "observation": _all_spaces_step(index),
            "action": np.linspace(-1, 1, 4, dtype=np.float32) * (index / 10),
            "state": {"position": np.arange(3, dtype=np.float64) + index, "phase": index % 3},
            "supervision": {"reward": np.float32(index / 100), "note": f"ok {index}"},
        }
        for index in range(25)
    ]
    path = record(tmp_path, "all_roots", steps, observation_space=ALL_SPACES,
                  action_space=action_space, state_space=state_space,
                  supervision_space=supervision_space, compression=compression)

    replayer, samples = replay(path)
    try:
        assert replayer.file_keys == list(ROOTS)
        assert replayer.size == len(steps) == len(samples)
        roots = dict(zip(ROOTS, (ALL_SPACES, action_space, state_space, supervision_space),
                         strict=True))
        for index, (sample, step) in enumerate(zip(samples, steps, strict=True)):
            assert len(sample) == len(ROOTS)
            for position, (root, space) in enumerate(roots.items()):
                assert_replayed(sample[position], space, step[root], f"step {index} {root}")

        # get_structure: (size, *shape) and the space's dtype for every dataset.
        structure = replayer.get_structure()
        assert structure["observation"]["image"] == ((len(steps), 6, 8, 3), np.dtype(np.uint8))
        assert structure["observation"]["force"] == ((len(steps),), np.dtype(np.float64))
        assert structure["observation"]["mode"] == ((len(steps),), np.dtype(np.int64))
        assert structure["observation"]["arm"]["gripper"]["width"] == (
            (len(steps),), np.dtype(np.float32))
        assert structure["action"] == ((len(steps), 4), np.dtype(np.float32))
        assert structure["observation"]["instruction"][0] == (len(steps),)

        # get_stats reads every dataset, strings included.
        stats = replayer.get_stats()[""]
        joints = np.stack([step["observation"]["joints"] for step in steps])
        np.testing.assert_array_equal(stats["observation"]["joints"]["min"], joints.min(axis=0))
        np.testing.assert_array_equal(stats["observation"]["joints"]["max"], joints.max(axis=0))
        assert stats["observation"]["instruction"]["unique"] == len(steps)
        assert stats["supervision"]["note"]["unique"] == len(steps)

        # pack_one / sample(index): a Sample with one attribute per root.
        packed = replayer.sample(3)
        assert isinstance(packed, Sample)
        assert_replayed(packed.observation, ALL_SPACES, steps[3]["observation"], "sample(3)")
    finally:
        replayer.close()


@pytest.mark.parametrize("count", [0, 1, 1023, 1024, 2500])
def test_replayer_size_across_chunks(tmp_path: Path, count: int) -> None:
    """``size`` and the rows the Replayer yields, at chunk boundaries (1024 rows)."""
    space = spaces.Dict({"t": spaces.Box(0, 1e6, (), np.int64), "label": spaces.Text(20),
                         "v": spaces.Box(-1, 1, (3,), np.float32)})
    steps = [{"observation": {"t": index, "label": str(index),
                              "v": np.full(3, index / 4096, np.float32)}}
             for index in range(count)]
    path = record(tmp_path, "chunks", steps, observation_space=space)

    replayer, samples = replay(path)
    try:
        assert replayer.size == count
        assert len(samples) == count
        assert [int(sample[0]["t"]) for sample in samples] == list(range(count))
        assert [sample[0]["label"] for sample in samples] == [str(i) for i in range(count)]
        for index, sample in enumerate(samples):
            np.testing.assert_array_equal(sample[0]["v"], np.full(3, index / 4096, np.float32))
    finally:
        replayer.close()


def test_replayer_reads_inferred_spaces(tmp_path: Path) -> None:
    """No space declared: h5recorder infers one from the first step; the Replayer reads it."""
    frame = _rng(7).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    steps = [
        {"observation": {"image": frame + index, "instruction": f"go {index}",
                         "done": bool(index % 2)},
         "action": {"x": float(index), "joints": [index, index + 1, index + 2]}}
        for index in range(4)
    ]
    path = record(tmp_path, "inferred", steps)

    replayer, samples = replay(path)
    try:
        assert replayer.size == len(samples) == len(steps)
        for sample, step in zip(samples, steps, strict=True):
            observation, action = sample
            np.testing.assert_array_equal(observation["image"], step["observation"]["image"])
            assert observation["image"].dtype == np.uint8
            assert observation["instruction"] == step["observation"]["instruction"]
            assert int(observation["done"]) == int(step["observation"]["done"])
            assert float(action["x"]) == step["action"]["x"]
            np.testing.assert_array_equal(action["joints"], step["action"]["joints"])
    finally:
        replayer.close()


def test_replayer_reads_mbodied_types_and_saves_frames(tmp_path: Path) -> None:
    """Steps given as mbodied ``Sample`` and ``Image`` objects; the Replayer's PNG export."""
    space = spaces.Dict({"image": spaces.Box(0, 255, (6, 8, 3), np.uint8),
                         "instruction": spaces.Text(30)})
    frames = _box_values(spaces.Box(0, 255, (6, 8, 3), np.uint8), 3, 11)
    steps = [{"observation": Sample(image=MbodiedImage(frame), instruction=f"look {index}"),
              "action": Sample(x=np.float64(index))}
             for index, frame in enumerate(frames)]
    path = record(tmp_path, "typed", steps, observation_space=space,
                  action_space=spaces.Dict({"x": spaces.Box(-10, 10, (), np.float64)}))

    replayer, samples = replay(path, image_keys_to_save=["observation/image"])
    try:
        assert replayer.size == len(samples) == len(frames)
        for index, (observation, action) in enumerate(samples):
            np.testing.assert_array_equal(observation["image"], frames[index])
            assert observation["instruction"] == f"look {index}"
            assert action["x"] == float(index)
        for index, frame in enumerate(frames):
            from PIL import Image as PILImage

            with PILImage.open(Path(replayer.get_frames_path()) / f"image_{index}.png") as png:
                np.testing.assert_array_equal(np.asarray(png), frame)
    finally:
        replayer.close()


def test_replayer_reads_both_files_after_reset(tmp_path: Path) -> None:
    space = spaces.Dict({"k": spaces.Discrete(10), "v": spaces.Box(-1, 1, (2,), np.float32)})
    with background_threads_checked(), \
            Recorder("episode", out_dir=str(tmp_path), observation_space=space) as recorder:
        for index in range(3):
            recorder.record(observation={"k": index, "v": np.full(2, index / 4, np.float32)})
        recorder.reset()
        for index in range(5):
            recorder.record(observation={"k": 9 - index, "v": np.full(2, -index / 4, np.float32)})
    episodes = sorted(tmp_path.glob("episode*.h5"))
    assert len(episodes) == 2
    moved = next(path for path in episodes if path.name != "episode.h5")

    first, first_samples = replay(moved)
    second, second_samples = replay(tmp_path / "episode.h5")
    try:
        assert first.size == len(first_samples) == 3
        assert [int(sample[0]["k"]) for sample in first_samples] == [0, 1, 2]
        assert second.size == len(second_samples) == 5
        assert [int(sample[0]["k"]) for sample in second_samples] == [9, 8, 7, 6, 5]
        assert second_samples[0][0]["k"].dtype == np.int64
        np.testing.assert_array_equal(second_samples[4][0]["v"], np.full(2, -1.0, np.float32))
    finally:
        first.close()
        second.close()


# -- against mbodied's own Recorder ---------------------------------------------------------

# The spaces mbodied's Recorder can record: Dict roots only, and no Tuple (it raises on a
# mixed Tuple and writes every element of any other Tuple as null).
COMPARED_OBSERVATION = ALL_SPACES
COMPARED_ACTION = spaces.Dict({"delta": spaces.Box(-1, 1, (3,), np.float32),
                               "grasp": spaces.Discrete(2),
                               "bits": spaces.MultiBinary([2, 3])})
COMPARED_TUPLE = spaces.Dict({"pair": spaces.Tuple((spaces.Discrete(3), spaces.Discrete(4)))})


def _compared_steps(count: int) -> list[dict[str, Any]]:
    return [{"observation": _all_spaces_step(index),
             "action": {"delta": np.full(3, index / 8, np.float32), "grasp": index % 2,
                        "bits": np.eye(2, 3, index % 2, dtype=np.int8)}}
            for index in range(count)]


def _record_both(tmp_path: Path, spaces_by_root: dict[str, Any],
                 steps: list[dict[str, Any]]) -> tuple[Path, Path]:
    reference = MbodiedRecorder("mbodied", out_dir=str(tmp_path / "mbodied"), **spaces_by_root)
    for step in steps:
        reference.record(**step)
    reference.close()
    ours = record(tmp_path / "h5recorder", "h5recorder", steps, **spaces_by_root)
    return Path(reference.filename), ours


def test_same_values_as_mbodied_recorder(tmp_path: Path) -> None:
    """The same steps, recorded by each recorder, replay to identical values and dtypes."""
    steps = _compared_steps(6)
    reference, ours = _record_both(tmp_path, {"observation_space": COMPARED_OBSERVATION,
                                              "action_space": COMPARED_ACTION}, steps)
    reference_replayer, expected = replay(reference)
    replayer, samples = replay(ours)
    try:
        assert replayer.file_keys == reference_replayer.file_keys
        assert replayer.size == reference_replayer.size == len(steps)
        assert len(samples) == len(expected)

        for index, (got, want) in enumerate(zip(samples, expected, strict=True)):
            for position, root in enumerate(replayer.file_keys):
                assert_same_sample(got[position], want[position], f"step {index} {root}")
    finally:
        reference_replayer.close()
        replayer.close()


# Attributes h5recorder adds on top of the reference layout (readers ignore them): running
# statistics on each dataset, counters and options on the file.
ADDED_ATTRIBUTE_PREFIXES = ("stats_", "recorder_")


def _layout_pair(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spaces_by_root = {"observation_space": COMPARED_OBSERVATION, "action_space": COMPARED_ACTION,
                      "state_space": COMPARED_TUPLE}
    steps = [{**step, "state": {"pair": (index % 3, index % 4)}}
             for index, step in enumerate(_compared_steps(3))]
    reference, ours = _record_both(tmp_path, spaces_by_root, steps)
    return _walk(reference), _walk(ours)


def test_same_groups_and_datasets_as_mbodied_recorder(tmp_path: Path) -> None:
    """Same object names, kinds, dtypes (strings: variable-length UTF-8), row shapes, maxshape."""
    reference, ours = _layout_pair(tmp_path)
    assert sorted(ours) == sorted(reference)
    for name, (kind, layout, _) in reference.items():
        assert ours[name][0] == kind, name
        assert ours[name][1] == layout, f"{name}: {ours[name][1]} != reference {layout}"


def _attribute_names(objects: dict[str, Any]) -> dict[str, set[str]]:
    return {name: {key for key in attrs if not key.startswith(ADDED_ATTRIBUTE_PREFIXES)}
            for name, (_, _, attrs) in objects.items()}


def test_same_attribute_names_as_mbodied_recorder(tmp_path: Path) -> None:
    reference, ours = _layout_pair(tmp_path)
    reference_names, our_names = _attribute_names(reference), _attribute_names(ours)
    differences = {
        name: {"only mbodied": sorted(reference_names[name] - our_names[name]),
               "only h5recorder": sorted(our_names[name] - reference_names[name])}
        for name in reference_names
        if reference_names[name] != our_names[name]
    }
    assert not differences, differences


def test_same_attribute_values_as_mbodied_recorder(tmp_path: Path) -> None:
    """Every layout attribute both write has the same value (``json_schema`` differs on
    purpose: the reference writes a Python repr, h5recorder JSON Schema)."""
    reference, ours = _layout_pair(tmp_path)
    for name, (_, _, attrs) in reference.items():
        for key, value in attrs.items():
            if key in ("json_schema", "string_values") or key not in ours[name][2]:
                continue
            mine = ours[name][2][key]
            where = f"{name}.attrs[{key!r}]: h5recorder {mine!r}, mbodied {value!r}"
            if isinstance(value, str | bytes):
                assert mine == value, where
                continue
            ref_array, our_array = np.asarray(value), np.asarray(mine)
            assert ref_array.shape == our_array.shape, where
            np.testing.assert_array_equal(our_array, ref_array, err_msg=where)
            if ref_array.size:  # an empty `shape` (scalar Box): float64 there, int64 here
                assert our_array.dtype.kind == ref_array.dtype.kind, where
    assert int(ours["/"][2]["size"]) == int(reference["/"][2]["size"]) == 3


# -- a fresh interpreter with only mbodied, as a user's replay script ------------------------

_REPLAY_SCRIPT = textwrap.dedent("""
    import pickle, sys
    from mbodied.data.replaying import Replayer
    replayer = Replayer(sys.argv[1])
    samples = list(replayer)
    size = int(replayer.size)
    replayer.close()
    loaded = sorted(m for m in ("h5recorder", "hdf5plugin") if m in sys.modules)
    with open(sys.argv[2], "wb") as out:
        pickle.dump({"size": size, "samples": samples, "loaded": loaded}, out)
""")


def _replay_in_fresh_process(path: Path, tmp_path: Path, plugin_path: bool) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key != "HDF5_PLUGIN_PATH"}
    if plugin_path:
        import hdf5plugin

        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    env["TERM"] = "dumb"
    result_path = tmp_path / "replayed.pickle"
    done = subprocess.run(
        [sys.executable, "-c", _REPLAY_SCRIPT, str(path), str(result_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"Replayer failed in a fresh process:\n{done.stderr[-3000:]}"
    with open(result_path, "rb") as file:
        result: dict[str, Any] = pickle.load(file)
    # the reader imports only mbodied; the environment's hook imports hdf5plugin after h5py
    # (installed by pip with h5recorder, see h5recorder._tools.plugin_path)
    assert result["loaded"] == ["hdf5plugin"], "the reader imported h5recorder"
    return result


def _check_fresh(tmp_path: Path, plugin_path: bool, **options: Any) -> None:
    steps = [{"observation": _all_spaces_step(index)} for index in range(5)]
    path = record(tmp_path, "fresh", steps, observation_space=ALL_SPACES, **options)
    result = _replay_in_fresh_process(path, tmp_path, plugin_path)
    assert result["size"] == len(result["samples"]) == len(steps)
    for index, (sample, step) in enumerate(zip(result["samples"], steps, strict=True)):
        assert_replayed(sample[0], ALL_SPACES, step["observation"], f"step {index}")


@pytest.mark.parametrize("compression", ["gzip", "lzf", None])
def test_fresh_replayer_reads_builtin_filters(tmp_path: Path, compression: str | None) -> None:
    _check_fresh(tmp_path, plugin_path=False, compression=compression)


def test_fresh_replayer_reads_default_with_plugin_path(tmp_path: Path) -> None:
    """The default (blosc2) file, read by a process that only sets HDF5_PLUGIN_PATH."""
    _check_fresh(tmp_path, plugin_path=True)


def test_fresh_replayer_reads_default_file(tmp_path: Path) -> None:
    """The default (blosc2) file, read by a process that imports only mbodied and sets nothing:
    the recorder made hdf5plugin's filters known to this environment's interpreters."""
    _check_fresh(tmp_path, plugin_path=False)
