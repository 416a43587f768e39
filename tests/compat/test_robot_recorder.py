"""mbodied's own client of the Recorder, ``RobotRecorder``, records through h5recorder.

``SimRobot.init_recorder()`` builds a ``RobotRecorder``, whose queue thread calls
``Recorder.record(observation={"image": ..., "instruction": ...}, action=HandControl,
state=HandControl)`` while the robot's thread moves. With h5recorder in place of mbodied's
Recorder, every step it queued replays exactly with mbodied's ``Replayer``: images,
instructions, actions (``JointControl`` grasp included) and states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mbodied.robots.robot_recording
import numpy as np
import pytest
from gymnasium import spaces
from mbodied.data.replaying import Replayer
from mbodied.robots import SimRobot
from mbodied.types.motion.control import HandControl
from mbodied.types.sense.vision import Image

from h5recorder import Recorder
from h5recorder.workloads import photo_frames


class CameraSimRobot(SimRobot):
    """SimRobot whose camera pans across real photographs (mbodied's reads a file relative
    to the working folder)."""

    def __init__(self) -> None:
        super().__init__(execution_time=0.4)
        self.frames = photo_frames(64, 224, 224, seed=5)
        self.shots = 0

    def capture(self, **_: Any) -> Image:
        self.shots += 1
        return Image(self.frames[self.shots % len(self.frames)])


def _flat(control: HandControl) -> list[float]:
    return [float(value) for value in control.flatten()]


def _replayed(control: dict[str, Any]) -> list[float]:
    """A replayed HandControl (a dict of its leaves) in ``flatten()`` order."""
    pose = control["pose"]
    return [float(pose[key]) for key in ("x", "y", "z", "roll", "pitch", "yaw")] + [
        float(control["grasp"])
    ]


def test_robot_recorder_queue_replays_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(mbodied.robots.robot_recording, "Recorder", Recorder)
    robot = CameraSimRobot()
    robot.init_recorder(
        frequency_hz=20,
        recorder_kwargs={
            "name": "sim_record.h5",
            "observation_space": spaces.Dict(
                {"image": Image(size=(224, 224)).space(), "instruction": spaces.Text(1000)}
            ),
            "action_space": HandControl().space(),
            "out_dir": str(tmp_path),
        },
    )
    robot_recorder = robot.robot_recorder
    assert isinstance(robot_recorder.recorder, Recorder)
    queued: list[tuple[Any, ...]] = []
    put = robot_recorder.recording_queue.put
    monkeypatch.setattr(
        robot_recorder.recording_queue, "put", lambda item: (queued.append(item), put(item))
    )

    moves = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], [-0.05, 0.1, 0.0, 0.2, -0.1, 0.3, 0.2]]
    with robot.record("pick up the fork"):
        for move in moves:
            robot.do(HandControl.unflatten(move))
    robot.start_recording("put it down")
    robot.do(HandControl.unflatten([0.02, -0.3, 0.1, 0.0, 0.0, -0.2, 0.9]))
    robot.stop_recording()
    robot_recorder.recording_queue.join()  # every queued step went through record()
    recorder = robot_recorder.recorder
    assert recorder.index == len(queued) >= 6
    recorder.close()

    replayer = Replayer(str(recorder.filename))
    try:
        assert replayer.size == len(queued)
        samples = list(replayer)
        assert len(samples) == len(queued)
        for index, ((observation, action, state), (image, task, act, pose)) in enumerate(
            zip(samples, queued, strict=True)
        ):
            where = f"step {index}"
            np.testing.assert_array_equal(observation["image"], image.array, err_msg=where)
            assert observation["image"].dtype == np.uint8
            assert observation["instruction"] == task, where
            assert _replayed(action) == pytest.approx(_flat(act), rel=1e-6), where
            assert action["grasp"].dtype == np.float32, where
            assert action["grasp"] == np.float32(act.grasp.value), where
            assert _replayed(state) == _flat(pose), where
        assert {task for _, task, _, _ in queued} == {"pick up the fork", "put it down"}
    finally:
        replayer.close()
