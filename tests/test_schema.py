"""Layout, attributes, value kinds and inference, through real files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from PIL import Image

from h5recorder import Recorder, create_dataset_for_space_dict

from .conftest import check_roundtrip

ALL_SPACES = spaces.Dict(
    {
        "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
        "depth": spaces.Box(0, 65535, (48, 64), np.uint16),
        "joints": spaces.Box(-1.0, 1.0, (7,), np.float32),
        "scalar": spaces.Box(-np.inf, np.inf, (), np.float64),
        "counter": spaces.Box(0, 1000, (2, 2), np.int32),
        "flag": spaces.Discrete(2),
        "shifted": spaces.Discrete(5, start=-2),
        "buttons": spaces.MultiDiscrete([3, 4]),
        "bits": spaces.MultiBinary(4),
        "instruction": spaces.Text(20),
        "pair": spaces.Tuple((spaces.Discrete(3), spaces.Box(0, 1, (2,), np.float32))),
        "nested": spaces.Dict({"inner": spaces.Box(0, 1, (2,), np.float64)}),
    }
)


def all_steps(frames: np.ndarray, count: int = 10) -> list[dict]:
    rng = np.random.default_rng(7)
    steps = []
    for i in range(count):
        steps.append(
            {
                "observation": {
                    "image": frames[i],
                    "depth": (frames[i, :, :, 0].astype(np.uint16) * 200 + i),
                    "joints": rng.uniform(-1, 1, 7).astype(np.float32),
                    "scalar": float(rng.normal()),
                    "counter": rng.integers(0, 1000, (2, 2)).astype(np.int32),
                    "flag": i % 2,
                    "shifted": i % 5 - 2,
                    "buttons": np.array([i % 3, i % 4]),
                    "bits": rng.integers(0, 2, 4).astype(np.int8),
                    "instruction": f"step {i}",
                    "pair": (i % 3, rng.uniform(0, 1, 2).astype(np.float32)),
                    "nested": {"inner": rng.uniform(0, 1, 2)},
                }
            }
        )
    return steps


LEAVES = {
    f"observation/{key}": ("observation", key) for key in ALL_SPACES.spaces if key != "nested"
}
LEAVES["observation/nested/inner"] = ("observation", "nested", "inner")


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 1024])  # 1024: one frame per chunk
@pytest.mark.parametrize("compression", ["blosc2", "blosc2:zstd", "gzip", "lzf", None])
def test_every_space_type_round_trips(tmp_path, frames, compression, chunk_bytes):
    file = check_roundtrip(
        tmp_path,
        {"observation_space": ALL_SPACES},
        all_steps(frames),
        LEAVES,
        compression=compression,
        chunk_bytes=chunk_bytes,
    )
    file.close()


def test_layout_and_attributes_follow_the_reference(tmp_path, frames):
    file = check_roundtrip(
        tmp_path, {"observation_space": ALL_SPACES}, all_steps(frames, 3), LEAVES
    )
    with file:
        assert file["observation"].attrs["space_type"] == "Dict"
        assert json.loads(file["observation"].attrs["json_schema"])["type"] == "object"
        image = file["observation/image"]
        assert image.dtype == np.uint8 and image.maxshape == (None, 48, 64, 3)
        assert image.attrs["space_type"] == "Box"
        assert image.attrs["low"] == 0 and image.attrs["high"] == 255
        assert tuple(image.attrs["shape"]) == (48, 64, 3)
        assert file["observation/scalar"].shape == (3,)
        assert file["observation/flag"].dtype == np.int64
        assert file["observation/flag"].attrs["n"] == 2
        assert list(file["observation/buttons"].attrs["nvec"]) == [3, 4]
        assert file["observation/bits"].attrs["n"] == 4
        assert file["observation/bits"].dtype == np.int8
        assert file["observation/instruction"].attrs["max_length"] == 20
        assert h5py.check_string_dtype(file["observation/instruction"].dtype).encoding == "utf-8"
        assert file["observation/pair"].attrs["tuple_length"] == 2
        assert json.loads(file["observation/pair"][0])["item"][0] == 0
        assert file["observation/nested"].attrs["space_type"] == "Dict"
        schema = json.loads(file["observation/shifted"].attrs["json_schema"])
        assert schema == {"type": "integer", "minimum": -2, "maximum": 2}
        assert file["observation/image"].chunks[0] > 1, "chunks hold many rows"


def test_create_dataset_for_space_dict_is_usable_alone(tmp_path):
    with h5py.File(tmp_path / "alone.h5", "w") as file:
        create_dataset_for_space_dict(ALL_SPACES, file.create_group("observation"))
        assert file["observation/nested/inner"].shape == (0, 2)
        assert file["observation/joints"].attrs["space_type"] == "Box"
        assert file["observation/instruction"].attrs["max_length"] == 20


class SampleLike:
    """Stands in for mbodied's Sample: fields as attributes, and .dict()."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def dict(self):
        return dict(self.__dict__)


class PydanticLike:
    def __init__(self, **fields):
        self._fields = fields

    def model_dump(self):
        return dict(self._fields)


class ImageLike:
    """Stands in for mbodied's Image: the pixels are in .array."""

    def __init__(self, array):
        self.array = array


def test_value_kinds_round_trip(tmp_path, frames):
    space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
            "pose": spaces.Box(-5, 5, (3,), np.float64),
            "grip": spaces.Discrete(2),
        }
    )
    kinds = [
        {"image": frames[0], "pose": [0.1, 0.2, 0.3], "grip": True},
        SampleLike(image=ImageLike(frames[1]), pose=np.array([1.0, 2.0, 3.0]), grip=np.int64(1)),
        PydanticLike(image=Image.fromarray(frames[2]), pose=(4.0, 5.0, -5.0), grip=0),
        {"image": frames[3].copy(order="F"), "pose": np.float32([1, 2, 3]), "grip": np.array(1)},
    ]
    with Recorder("kinds", out_dir=str(tmp_path), action_space=space) as recorder:
        for value in kinds:
            recorder.record(action=value)
    with h5py.File(recorder.filename, "r") as file:
        np.testing.assert_array_equal(file["action/image"][:], frames[:4])
        np.testing.assert_array_equal(
            file["action/pose"][:], [[0.1, 0.2, 0.3], [1, 2, 3], [4, 5, -5], [1, 2, 3]]
        )
        assert file["action/grip"][:].tolist() == [1, 1, 0, 1]


def test_inferred_spaces_keep_the_value_dtype(tmp_path, frames):
    with Recorder("inferred", out_dir=str(tmp_path)) as recorder:
        for i in range(5):
            recorder.record(
                observation={
                    "image": frames[i],
                    "text": f"go {i}",
                    "done": i == 4,
                    "count": i,
                    "speed": i * 0.5,
                    "nested": {"v": np.arange(3) + i},
                },
                action=np.float32([i, -i]),
            )
        assert recorder.root_keys == ["observation", "action"]
    with h5py.File(recorder.filename, "r") as file:
        assert file["observation/image"].dtype == np.uint8
        np.testing.assert_array_equal(file["observation/image"][:], frames[:5])
        assert file["observation/count"].dtype == np.int64
        assert file["observation/count"][:].tolist() == [0, 1, 2, 3, 4]
        assert file["observation/speed"].dtype == np.float64
        assert file["observation/done"].attrs["space_type"] == "Discrete"
        assert file["observation/done"][:].tolist() == [0, 0, 0, 0, 1]
        assert file["observation/text"].attrs["max_length"] == 1000
        assert file["observation/text"][4].decode() == "go 4"
        assert file["observation/nested/v"][4].tolist() == [4, 5, 6]
        assert file["action"].dtype == np.float32 and file["action"].shape == (5, 2)


def test_non_dict_root_space_is_a_dataset(tmp_path):
    steps = [{"action": np.float32([i, i + 1])} for i in range(4)]
    file = check_roundtrip(
        tmp_path,
        {"action_space": spaces.Box(-10, 10, (2,), np.float32)},
        steps,
        {"action": ("action",)},
    )
    with file:
        assert isinstance(file["action"], h5py.Dataset)


class _OddKey(str):
    """A str subclass whose repr is not Python that rebuilds it."""

    def __repr__(self) -> str:
        return f"<key {self!s}>"


def test_keys_of_any_str_subclass_record_and_read_back(tmp_path):
    """Keys taken from a numpy array are ``np.str_``; the fast path must not spell them out."""
    import h5recorder

    joints, grip, odd = (*np.array(["joints", "grip"]), _OddKey("it's \"odd\""))
    assert type(joints) is np.str_
    space = spaces.Dict({joints: spaces.Box(-1, 1, (3,), np.float32), grip: spaces.Discrete(2),
                         odd: spaces.Discrete(5)})
    steps = [{"observation": {joints: np.float32([i, 0, -i]) / 10, grip: i % 2, odd: i % 5}}
             for i in range(12)]
    check_roundtrip(tmp_path, {"observation_space": space}, steps,
                    {f"observation/{key}": ("observation", key) for key in (joints, grip, odd)}
                    ).close()
    with h5recorder.open(tmp_path / "roundtrip.h5") as episode:
        assert len(episode) == 12
        step = episode[7]["observation"]
        np.testing.assert_array_equal(step["joints"], np.float32([7, 0, -7]) / 10)
        assert step["grip"] == 1 and step["it's \"odd\""] == 2
        np.testing.assert_array_equal(episode["observation/grip"][:], [i % 2 for i in range(12)])
