"""Checks and reporting shared by the benchmark files.

Imported by name: pytest's default import mode puts ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc2 filter, so blosc2 chunks read back
import numpy as np

from h5recorder.workloads import Workload, photo_frames, workload

_workloads: dict[str, Workload] = {}


def load_workload(name: str) -> Workload:
    """The workload called ``name``, made once per session (the rig's bank takes seconds)."""
    if name not in _workloads:
        _workloads[name] = workload(name)
    return _workloads[name]


def report(benchmark: Any, title: str, figures: dict[str, Any]) -> None:
    """Store ``figures`` in the benchmark's extra_info and print them on one line."""
    benchmark.extra_info.update(figures)
    shown = ", ".join(f"{key}={value}" for key, value in figures.items())
    print(f"\n[{title}] {shown}")


def check_file(path: Path, workload: Workload, steps: int) -> None:
    """The file holds ``steps`` rows, and its first and last frames are the ones recorded."""
    bank = workload.bank
    with h5py.File(path, "r") as file:
        assert int(file.attrs["size"]) == steps
        images = file["observation/image"]
        assert images.shape[0] >= steps
        assert np.array_equal(images[0], bank[0]["observation"]["image"])
        last = bank[(steps - 1) % len(bank)]
        assert np.array_equal(images[steps - 1], last["observation"]["image"])
        assert int(file["action/gripper_action"][steps - 1]) == last["action"]["gripper_action"]


def check_steps(path: Path, workload: Workload, steps: int) -> None:
    """``size`` is ``steps``, and every array leaf's first and last rows are the ones recorded.

    Works on any mbodied-layout file (h5recorder's, mbodied's, the naive writer's).
    """
    first, last = workload.bank[0], workload.bank[(steps - 1) % len(workload.bank)]

    def walk(group: h5py.Group, values: dict[str, Any], row: int) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                walk(group[key], value, row)
            elif isinstance(value, np.ndarray):
                assert np.array_equal(group[key][row], value), f"{group.name}/{key}[{row}]"

    with h5py.File(path, "r") as file:
        assert int(file.attrs["size"]) == steps
        for values, row in ((first, 0), (last, steps - 1)):
            for root, leaves in values.items():
                walk(file[root], leaves, row)


def lerobot_rig(bank: int, cameras: tuple[str, ...], joints: int) -> list[dict[str, Any]]:
    """``bank`` steps of the 2-camera rig LeRobot users record (640x480 photographs moving,
    with noise; float32 joint positions and targets), as ``record()`` takes them."""
    frames = [photo_frames(bank, 480, 640, seed=k) for k in range(len(cameras))]
    rng = np.random.default_rng(0)
    return [
        {
            "observation": {name: frames[k][i] for k, name in enumerate(cameras)},
            "state": {"joints": (rng.standard_normal(joints) * 0.5).astype(np.float32)},
            "action": {"joints": (rng.standard_normal(joints) * 0.5).astype(np.float32)},
        }
        for i in range(bank)
    ]


def lerobot_features(cameras: tuple[str, ...], joints: int, video: bool) -> dict[str, Any]:
    """The LeRobot features of that rig: each camera as an image (or video) feature, the
    joints as ``observation.state`` and ``action``."""
    kind = "video" if video else "image"
    features: dict[str, Any] = {
        f"observation.images.{name}": {"dtype": kind, "shape": (480, 640, 3),
                                       "names": ["height", "width", "channels"]}
        for name in cameras
    }
    features["observation.state"] = {"dtype": "float32", "shape": (joints,), "names": None}
    features["action"] = {"dtype": "float32", "shape": (joints,), "names": None}
    return features
