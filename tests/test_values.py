"""The value types mbodied's users pass, declared and inferred, through real files.

Stand-ins for mbodied's types are pydantic models shaped as mbodied's are (pydantic comes with
the recorder's dependencies): a ``Sample`` is a model whose fields are the values; an ``Image``
is a model with the pixels in ``.array`` next to fields a leaf must not store (a base64 string,
a size); ``JointControl`` wraps one number in ``.value``.
"""

from __future__ import annotations

import base64
import enum

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict

from h5recorder import Recorder, StepError


class Sample(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="allow")


class Image(Sample):
    """Pixels in ``.array``, and fields a leaf must not store."""

    array: np.ndarray
    base64: str = ""
    size: tuple[int, int] = (0, 0)

    def __init__(self, array: np.ndarray) -> None:
        encoded = base64.b64encode(array.tobytes()).decode()
        super().__init__(array=array, base64=encoded, size=array.shape[1::-1])


class JointControl(Sample):
    value: float


class HandControl(Sample):
    pose: Sample
    grasp: JointControl


class Mode(enum.Enum):
    IDLE = 0
    MOVE = 2


class ArrayLike:
    """Any object numpy converts through ``__array__``."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self._data if dtype is None else self._data.astype(dtype)


def _hand(index: int) -> HandControl:
    pose = Sample(x=0.1 * index, y=-0.2 * index, z=0.3)
    return HandControl(pose=pose, grasp=JointControl(value=0.05 * index + 0.01))


def test_one_value_wrappers_are_stored_as_their_value(tmp_path, frames):
    """``JointControl(value=...)`` into a float32 Box, an Enum member into a Discrete, a
    wrapped string into Text, an ``Image`` into a uint8 Box; read back exactly."""
    action_space = spaces.Dict(
        {
            "pose": spaces.Dict({k: spaces.Box(-10, 10, (), np.float64) for k in "xyz"}),
            "grasp": spaces.Box(-3.14, 3.14, (), np.float32),
        }
    )
    observation_space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
            "mode": spaces.Discrete(3),
            "note": spaces.Text(40),
        }
    )
    with Recorder(
        "wrapped", out_dir=str(tmp_path), action_space=action_space,
        observation_space=observation_space,
    ) as recorder:
        for index in range(6):
            recorder.record(
                observation={
                    "image": Image(frames[index]),
                    "mode": Mode.MOVE if index % 2 else Mode.IDLE,
                    "note": Sample(value=f"step {index}"),
                },
                action=_hand(index),
            )
    with h5py.File(recorder.filename, "r") as file:
        grasp = file["action/grasp"][:]
        assert grasp.dtype == np.float32
        np.testing.assert_array_equal(
            grasp, np.float32([0.05 * index + 0.01 for index in range(6)])
        )
        np.testing.assert_array_equal(file["action/pose/x"][:], [0.1 * i for i in range(6)])
        np.testing.assert_array_equal(file["observation/image"][:], frames[:6])
        assert file["observation/mode"][:].tolist() == [0, 2, 0, 2, 0, 2]
        assert [s.decode() for s in file["observation/note"][:]] == [
            f"step {i}" for i in range(6)
        ]


def test_inference_follows_mbodied_types(tmp_path, frames):
    """No space declared: an ``Image`` is a uint8 Box of its own (non-square) shape, a
    ``Sample`` its fields, a one-value wrapper its value; numbers, numpy scalars, lists, PIL
    images and ``__array__`` objects are Boxes of their own dtype and shape."""
    wide = np.stack([np.pad(frame, ((0, 0), (0, 16), (0, 0)), mode="reflect") for frame in frames])
    steps = []
    for index in range(5):
        steps.append(
            {
                "observation": {
                    "image": Image(wide[index]),
                    "pil": PILImage.fromarray(frames[index]),
                    "instruction": f"pick {index}",
                    "depth": ArrayLike(frames[index, :, :, 0].astype(np.uint16) * 7),
                },
                "action": _hand(index),
                "state": Sample(
                    count=index, speed=index * 0.25, torque=np.float32(index / 3),
                    joints=[index, index + 1, index + 2], tick=np.int16(index),
                ),
            }
        )
    with Recorder("inferred", out_dir=str(tmp_path)) as recorder:
        for step in steps:
            recorder.record(**step)
        observation, action, _ = recorder.root_spaces
        assert observation["image"] == spaces.Box(0, 255, (48, 80, 3), np.uint8)
        assert set(observation.spaces) == {"image", "pil", "instruction", "depth"}
        assert action["grasp"] == spaces.Box(-np.inf, np.inf, (), np.float64)
        assert set(action["pose"].spaces) == {"x", "y", "z"}
    with h5py.File(recorder.filename, "r") as file:
        image = file["observation/image"]
        assert image.dtype == np.uint8 and image.shape == (5, 48, 80, 3)
        np.testing.assert_array_equal(image[:], wide[:5])
        np.testing.assert_array_equal(file["observation/pil"][:], frames[:5])
        assert file["observation/depth"].dtype == np.uint16
        np.testing.assert_array_equal(
            file["observation/depth"][:], frames[:5, :, :, 0].astype(np.uint16) * 7
        )
        assert file["action/grasp"][:].tolist() == [0.05 * i + 0.01 for i in range(5)]
        assert file["state/count"].dtype == np.int64
        assert file["state/speed"][:].tolist() == [i * 0.25 for i in range(5)]
        assert file["state/torque"].dtype == np.float32
        torque = np.float32([i / 3 for i in range(5)])
        np.testing.assert_array_equal(file["state/torque"][:], torque)
        assert file["state/joints"][:].tolist() == [[i, i + 1, i + 2] for i in range(5)]
        assert file["state/tick"].dtype == np.int16
        assert [s.decode() for s in file["observation/instruction"][:]] == [
            f"pick {i}" for i in range(5)
        ]


@pytest.mark.parametrize(
    ("space", "good", "bad", "message"),
    [
        pytest.param(spaces.MultiDiscrete([3, 4, 5]), np.array([2, 3, 4]), np.array([2, 4, 0]),
                     "integers in [[0, 0, 0], [3, 4, 5])", id="multidiscrete-equal-to-nvec"),
        pytest.param(spaces.MultiDiscrete([3, 4]), np.array([0, 0]), np.array([-1, 0]),
                     "integers in [[0, 0], [3, 4])", id="multidiscrete-negative"),
        pytest.param(spaces.MultiDiscrete([4, 4], start=[-2, 1]), np.array([-2, 4]),
                     np.array([-2, 5]), "integers in [[-2, 1], [2, 5])",
                     id="multidiscrete-start"),
        pytest.param(spaces.MultiBinary(4), np.array([1, 0, 1, 1], np.int8),
                     np.array([1, 0, 2, 1], np.int8), "zeros and ones", id="multibinary-two"),
        pytest.param(spaces.MultiBinary(3), np.array([0, 1, 0], np.int8),
                     np.array([0, -1, 0], np.int8), "zeros and ones", id="multibinary-negative"),
        pytest.param(spaces.Discrete(3, start=1), 3, 4, "an integer in [1, 4)",
                     id="discrete-equal-to-start-plus-n"),
    ],
)
def test_out_of_range_values_are_rejected_whole(tmp_path, space, good, bad, message):
    """A value outside its space raises a StepError naming the key and the range; nothing of
    the step is written and the next good step records."""
    observation_space = spaces.Dict({"v": space, "t": spaces.Box(0, 100, (), np.int64)})
    with Recorder("range", out_dir=str(tmp_path), observation_space=observation_space) as recorder:
        recorder.record(observation={"v": good, "t": 1})
        with pytest.raises(StepError) as caught:
            recorder.record(observation={"v": bad, "t": 2})
        assert "observation/v" in str(caught.value) and message in str(caught.value)
        recorder.record(observation={"v": good, "t": 3})
        assert recorder.index == 2
    with h5py.File(recorder.filename, "r") as file:
        assert int(file.attrs["size"]) == 2
        assert file["observation/t"][:].tolist() == [1, 3]
        np.testing.assert_array_equal(file["observation/v"][:], [good, good])
