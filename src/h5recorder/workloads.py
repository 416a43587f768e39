"""Realistic steps for the demo, the benchmarks and the tests.

Frames are real photographs (the ones scikit-image ships) tiled into a canvas, cut into crops
that pan across it, with Gaussian sensor noise: they compress like camera frames do (barely),
not like constant arrays. A bank of frames is made once, so producing a step costs nothing
next to recording it.

Three workloads, by name (:data:`WORKLOADS`):

- ``seed``: one 224x224x3 frame, an instruction, a 3-vector, a gripper flag, two 3-vectors;
- ``rig``: three 640x480x3 cameras, one 480x640 uint16 depth image, 30 joint floats;
- ``hd``: two 1280x720x3 cameras (``cameras``: 1 to 4), one 720x1280 uint16 depth image,
  30 joint floats;
- ``proprio``: 50 floats and a timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["WORKLOADS", "Workload", "photo_frames", "render_frames", "workload"]

_PHOTOS = ("astronaut", "coffee", "rocket", "chelsea", "immunohistochemistry", "hubble_deep_field")
_INSTRUCTIONS = (
    "pick up the red block",
    "open the drawer",
    "place the cup on the shelf",
    "push the button",
    "wipe the table",
)


def _canvas() -> np.ndarray[Any, Any]:
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError(
            "realistic frames need scikit-image's photographs: pip install 'h5recorder[demo]'"
        ) from error
    tiles = []
    for name in _PHOTOS:
        image = getattr(data, name)()
        tiles.append(
            image[:400, :600]
            if image.shape[0] >= 400
            else np.pad(image, ((0, 400 - image.shape[0]), (0, 0), (0, 0)), mode="reflect")[:, :600]
        )
    tiles = [np.pad(t, ((0, 0), (0, 600 - t.shape[1]), (0, 0)), mode="reflect") for t in tiles]
    return np.concatenate([np.concatenate(tiles[:3], axis=1), np.concatenate(tiles[3:], axis=1)])


def photo_frames(
    count: int, height: int, width: int, channels: int = 3, seed: int = 0, noise: float = 3.0
) -> np.ndarray[Any, Any]:
    """``count`` crops panning across real photographs, with sensor noise (uint8).

    ``channels`` is 3 (RGB), 4 (RGBA, opaque alpha with noise) or 1 (gray, returned HxW).
    """
    canvas = _canvas().astype(np.float32)
    rng = np.random.default_rng(seed)
    rows, cols = canvas.shape[0] - height, canvas.shape[1] - width
    if rows < 0 or cols < 0:
        raise ValueError(f"frames of {height}x{width} do not fit the {canvas.shape[:2]} canvas")
    frames = np.empty((count, height, width, 3), np.uint8)
    phase = rng.uniform(0, 2 * np.pi, 2)
    for i in range(count):
        t = i / max(1, count)
        top = int((0.5 + 0.5 * np.sin(2 * np.pi * t + phase[0])) * rows)
        left = int((0.5 + 0.5 * np.sin(4 * np.pi * t + phase[1])) * cols)
        crop = canvas[top : top + height, left : left + width]
        noisy = crop + rng.normal(0.0, noise, crop.shape).astype(np.float32)
        frames[i] = np.clip(noisy, 0, 255).astype(np.uint8)
    if channels == 1:
        return (frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(
            np.uint8
        )
    if channels == 4:
        alpha = np.clip(rng.normal(250, 3, (count, height, width, 1)), 0, 255).astype(np.uint8)
        return np.concatenate([frames, alpha], axis=3)
    return frames


def render_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray[Any, Any]:
    """``count`` frames of a clean simulator render (uint8 RGB): boxes sliding over a flat
    floor, no noise. They compress many times over, as renders do and camera frames do not.
    """
    rng = np.random.default_rng(seed)
    floor = rng.integers(40, 160, 3)
    boxes = [
        (rng.integers(0, 256, 3), max(2, height // 4), max(2, width // 5), rng.uniform(0.3, 2))
        for _ in range(3)
    ]
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frame = frames[i]
        frame[:] = floor
        for number, (color, box_h, box_w, speed) in enumerate(boxes):
            top = int(i * speed / 3 + number * height / 3) % max(1, height - box_h)
            left = int(i * speed + number * width / 3) % max(1, width - box_w)
            frame[top : top + box_h, left : left + box_w] = color
    return frames


def depth_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray[Any, Any]:
    """uint16 depth in millimetres made from the photographs' luminance, with noise."""
    gray = photo_frames(count, height, width, channels=1, seed=seed, noise=1.0)
    rng = np.random.default_rng(seed + 1)
    depth = 400.0 + gray.astype(np.float32) * 12.0 + rng.normal(0, 2.0, gray.shape)
    clipped: np.ndarray[Any, Any] = np.clip(depth, 0, 65535).astype(np.uint16)
    return clipped


@dataclass
class Workload:
    """Spaces of one workload and a bank of prebuilt steps to cycle through."""

    name: str
    observation_space: spaces.Dict
    action_space: spaces.Dict | None
    state_space: spaces.Dict | None
    bank: list[dict[str, Any]]
    image_keys: list[str]

    @property
    def step_bytes(self) -> int:
        def size(value: Any) -> int:
            if isinstance(value, dict):
                return sum(size(v) for v in value.values())
            if isinstance(value, np.ndarray):
                return value.nbytes
            return 8 if not isinstance(value, str) else len(value)

        return size(self.bank[0])

    def spaces(self) -> dict[str, Any]:
        return {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "state_space": self.state_space,
        }

    def steps(self, count: int) -> Iterator[dict[str, Any]]:
        """``count`` steps as keyword arguments of ``record()``."""
        bank = self.bank
        for i in range(count):
            yield bank[i % len(bank)]


def _vector(rng: np.random.Generator, size: int, scale: float = 1.0) -> np.ndarray[Any, Any]:
    return (rng.standard_normal(size) * scale).astype(np.float32)


def _camera_rig(
    name: str, cameras: int, height: int, width: int, bank_size: int, seed: int,
    rng: np.random.Generator,
) -> Workload:
    """Colour cameras and one depth image of ``height`` x ``width``, and 30 joint floats."""
    box = spaces.Box
    cams = [photo_frames(bank_size, height, width, seed=seed + k) for k in range(cameras)]
    depth = depth_frames(bank_size, height, width, seed=seed + 7)
    observation = spaces.Dict(
        {
            **{f"camera_{k}": box(0, 255, (height, width, 3), np.uint8) for k in range(cameras)},
            "depth": box(0, 65535, (height, width), np.uint16),
        }
    )
    state = spaces.Dict({"joints": box(-np.pi, np.pi, (30,), np.float32)})
    bank = [
        {
            "observation": {
                **{f"camera_{k}": cams[k][i] for k in range(cameras)},
                "depth": depth[i],
            },
            "state": {"joints": _vector(rng, 30, 0.5)},
        }
        for i in range(bank_size)
    ]
    keys = [f"camera_{k}" for k in range(cameras)] + ["depth"]
    return Workload(name, observation, None, state, bank, keys)


def workload(
    name: str, bank_size: int = 64, seed: int = 0, cameras: int | None = None
) -> Workload:
    """The workload called ``name`` (one of :data:`WORKLOADS`) with ``bank_size`` steps;
    ``cameras`` (1 to 3 for ``rig``, 1 to 4 for ``hd``, default 3 and 2) sets the number of
    colour cameras."""
    rng = np.random.default_rng(seed)
    bank: list[dict[str, Any]] = []
    box = spaces.Box
    if name == "seed":
        frames = photo_frames(bank_size, 224, 224, seed=seed)
        observation = spaces.Dict(
            {"image": box(0, 255, (224, 224, 3), np.uint8), "instruction": spaces.Text(100)}
        )
        action = spaces.Dict(
            {"gripper_position": box(-1, 1, (3,), np.float32), "gripper_action": spaces.Discrete(2)}
        )
        state = spaces.Dict(
            {"position": box(-1, 1, (3,), np.float32), "velocity": box(-1, 1, (3,), np.float32)}
        )
        for i in range(bank_size):
            bank.append(
                {
                    "observation": {
                        "image": frames[i],
                        "instruction": _INSTRUCTIONS[i * len(_INSTRUCTIONS) // bank_size],
                    },
                    "action": {"gripper_position": _vector(rng, 3, 0.3), "gripper_action": i % 2},
                    "state": {"position": _vector(rng, 3, 0.3), "velocity": _vector(rng, 3, 0.1)},
                }
            )
        return Workload(name, observation, action, state, bank, ["image"])
    if name in ("rig", "hd"):
        most, height, width = (3, 480, 640) if name == "rig" else (4, 720, 1280)
        cameras = (3 if name == "rig" else 2) if cameras is None else cameras
        if not 1 <= cameras <= most:
            raise ValueError(f"cameras: expected 1 to {most}, got {cameras}")
        if name == "hd":
            bank_size = min(bank_size, 12)  # 7.4 MB a step with two cameras
        return _camera_rig(name, cameras, height, width, bank_size, seed, rng)
    if name == "proprio":
        state = spaces.Dict(
            {
                "joints": box(-np.inf, np.inf, (50,), np.float32),
                "timestamp": box(0, np.inf, (), np.float64),
            }
        )
        for i in range(bank_size):
            bank.append({"observation": {"joints": _vector(rng, 50), "timestamp": np.float64(i)}})
        return Workload(name, state, None, None, bank, [])
    raise ValueError(f"unknown workload {name!r}; expected one of {WORKLOADS}")


WORKLOADS = ("seed", "rig", "hd", "proprio")
