"""Writes the small golden files that ``tests/test_read.py`` reads, once, with the writer named.

    python tests/data/make_golden_files.py mbodied      # in a venv with mbodied==1.5.1
    python tests/data/make_golden_files.py h5recorder   # h5recorder 0.1.0 before per-step time

Both record the same ten steps (``steps()``, seeded), so the tests compare what they read
against values computed again here, without mbodied installed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

HERE = Path(__file__).parent
STEPS = 10


def observation_space() -> spaces.Dict:
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, (12, 16, 3), np.uint8),
            "depth": spaces.Box(0, 4000, (6, 8), np.uint16),
            "instruction": spaces.Text(50),
            "joints": spaces.Box(-3.0, 3.0, (6,), np.float32),
            "gripper": spaces.Discrete(3),
        }
    )


def action_space() -> spaces.Dict:
    return spaces.Dict(
        {
            "delta": spaces.Box(-1.0, 1.0, (7,), np.float32),
            "grasp": spaces.Box(0.0, 1.0, (), np.float64),
        }
    )


def steps() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    found = []
    for index in range(STEPS):
        found.append(
            {
                "observation": {
                    "image": rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
                    "depth": rng.integers(0, 4001, (6, 8), dtype=np.uint16),
                    "instruction": f"pick the block {index}",
                    "joints": rng.uniform(-3, 3, 6).astype(np.float32),
                    "gripper": index % 3,
                },
                "action": {
                    "delta": rng.uniform(-1, 1, 7).astype(np.float32),
                    "grasp": float(index % 2),
                },
            }
        )
    return found


def main(writer: str) -> None:
    if writer == "mbodied":
        from mbodied.data.recording import Recorder
        name = "mbodied_1_5_1"
    else:
        from h5recorder import Recorder  # type: ignore[no-redef]
        name = "h5recorder_0_1_0"
    recorder = Recorder(
        name,
        observation_space=observation_space(),
        action_space=action_space(),
        out_dir=str(HERE),
        image_keys_to_save=[],
    )
    for step in steps():
        recorder.record(observation=step["observation"], action=step["action"])
    recorder.close()


if __name__ == "__main__":
    main(sys.argv[1])
