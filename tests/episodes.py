"""Folders of real episode files for the tests of many episodes (dataset, Ray Data).

Each episode is recorded by the real ``Recorder`` from realistic values: photographs moving
with noise, joint trajectories as random walks, a shifted ``Discrete`` gripper state, text.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder.workloads import photo_frames

HEIGHT, WIDTH = 24, 32
INSTRUCTIONS = ("pick up the cup", "open the drawer", "wipe the table")


def observation_space() -> spaces.Dict:
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, (HEIGHT, WIDTH, 3), np.uint8),
            "joints": spaces.Box(-np.inf, np.inf, (7,), np.float32),
            "gripper": spaces.Discrete(3, start=-1),
            "instruction": spaces.Text(40),
        }
    )


def action_space() -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (4,), np.float64)


def episode_values(steps: int, seed: int) -> dict[str, np.ndarray]:
    """The columns one episode records, by dataset name."""
    rng = np.random.default_rng(seed)
    frames = photo_frames(min(steps, 64), HEIGHT, WIDTH, seed=seed)
    joints = np.cumsum(rng.normal(0, 0.02, (steps, 7)), axis=0) + rng.normal(0, 0.5, 7)
    return {
        "observation/image": frames[np.arange(steps) % len(frames)],
        "observation/joints": joints.astype(np.float32),
        "observation/gripper": rng.integers(-1, 2, steps),
        "observation/instruction": np.array(
            [INSTRUCTIONS[(seed + i // 50) % 3] for i in range(steps)], dtype=object
        ),
        "action": np.tanh(rng.normal(0, 0.6, (steps, 4))),
    }


def record_episode(
    folder: Path, name: str, steps: int, seed: int, rate: float | None = None,
    stall: tuple[int, float] | None = None, **options: Any
) -> dict[str, np.ndarray]:
    """One episode recorded flat out, or at ``rate`` steps per second; ``stall=(step,
    seconds)`` pauses the loop that long before that step, as a robot's loop sometimes does."""
    values = episode_values(steps, seed)
    with Recorder(
        name,
        out_dir=str(folder),
        observation_space=observation_space(),
        action_space=action_space(),
        image_keys_to_save=[],
        **options,
    ) as recorder:
        began = time.perf_counter()
        for i in range(steps):
            if stall is not None and i == stall[0]:
                time.sleep(stall[1])
                began += stall[1]
            while rate is not None and time.perf_counter() < began + i / rate:
                time.sleep(0.0005)
            recorder.record(
                observation={
                    "image": values["observation/image"][i],
                    "joints": values["observation/joints"][i],
                    "gripper": int(values["observation/gripper"][i]),
                    "instruction": values["observation/instruction"][i],
                },
                action=values["action"][i],
            )
    return values


_KILLED = """
import sys, time
sys.path.insert(0, sys.argv[3])
from tests.episodes import episode_values, observation_space, action_space
from h5recorder import Recorder
values = episode_values(int(sys.argv[2]), seed=99)
recorder = Recorder("killed", out_dir=sys.argv[1], observation_space=observation_space(),
                    action_space=action_space(), image_keys_to_save=[], commit_interval=0.05)
for i in range(int(sys.argv[2])):
    recorder.record(observation={"image": values["observation/image"][i],
                                 "joints": values["observation/joints"][i],
                                 "gripper": int(values["observation/gripper"][i]),
                                 "instruction": values["observation/instruction"][i]},
                    action=values["action"][i])
    time.sleep(0.001)
recorder.flush()  # committed before the kill, however long the first commit took
print("recorded", flush=True)
time.sleep(60)
"""


def killed_episode(folder: Path, steps: int = 400) -> tuple[Path, dict[str, np.ndarray]]:
    """An episode whose recorder was killed with SIGKILL after recording ``steps`` steps and
    then mended with ``h5recorder recover``: its data below ``size``, no statistics."""
    root = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(folder), str(steps), root],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "recorded"
    time.sleep(0.3)  # a few commit intervals
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    path = folder / "killed.h5"
    recover = [sys.executable, "-m", "h5recorder._tools.cli", "recover", str(path)]
    subprocess.run(recover, check=True, capture_output=True)
    return path, episode_values(steps, seed=99)


def record_rig(folder: Path, name: str, steps: int, seed: int, rate: float = 30.0,
               cameras: int = 2, stall: tuple[int, float] | None = None) -> dict[str, np.ndarray]:
    """An episode of the camera rig (``workloads.workload("rig")``: 640x480 cameras, a depth
    image, 30 joints) recorded at ``rate`` steps per second, as a robot's loop records it
    (``stall=(step, seconds)``: a pause before that step); returns the columns recorded, by
    dataset name."""
    from h5recorder.workloads import workload

    load = workload("rig", bank_size=16, seed=seed, cameras=cameras)
    rows = [load.bank[i % len(load.bank)] for i in range(steps)]
    with Recorder(name, out_dir=str(folder), image_keys_to_save=[], **load.spaces()) as recorder:
        began = time.perf_counter()
        for i, step in enumerate(rows):
            if stall is not None and i == stall[0]:
                time.sleep(stall[1])
                began += stall[1]
            while time.perf_counter() < began + i / rate:
                time.sleep(0.0005)
            recorder.record(**step)
    values = {f"observation/{key}": np.stack([row["observation"][key] for row in rows])
              for key in rows[0]["observation"]}
    values["state/joints"] = np.stack([row["state"]["joints"] for row in rows])
    return values
