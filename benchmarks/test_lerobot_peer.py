"""record() beside LeRobot's ``LeRobotDataset.add_frame``, on the rig LeRobot users record with.

The rig: two 640x480 RGB cameras (photographs panning, with sensor noise), 14 joint positions
(state) and 14 joint targets (action), float32, paced at 30 steps/s for ``--lerobot-steps``
steps (default 300: one 10 s episode), every call timed with ``perf_counter_ns``. Subjects
alternate, ``--lerobot-rounds`` rounds (default 2), all writing to the folder pytest gives:

- ``lerobot-image``: ``add_frame`` with both cameras as ``"image"`` features, the image writer
  threads LeRobot's own recording script starts (4 per camera); then ``save_episode()`` and
  ``finalize()``, timed apart. LeRobot writes each frame as a PNG at zlib level 6;
- ``lerobot-video``: the same with ``"video"`` features (PNG at level 1 while recording, then
  AV1 encoded by ``save_episode()``);
- ``h5recorder``: ``Recorder.record()`` with its defaults, PNG frames off; then ``close()``;
- ``h5recorder-png``: the same with PNG frames of both cameras (``image_keys_to_save``);
- ``h5recorder-handover``: frames off, with the opt-in hand-over of big arrays, where this
  checkout's ``Recorder`` has one (a parameter of ``__init__``, ``record`` or ``Options`` named
  like ``handover`` or ``copy``); skipped otherwise.

Reported per case: ``record()``/``add_frame`` p50, p99, p99.9 and max over every step of the
episode (its first call included, and shown apart), the steps the pacer itself started more
than half a period late (the control loop starved of CPU), the seconds to finish the episode,
the seconds to set up, and the load average before and after; then, per subject, the median
of the rounds and the ratio of its p50 and p99 to ``lerobot-image``'s. The files are checked,
never the timings: LeRobot's dataset opens with as many frames as recorded and an image read
back equals the one given (videos: every frame decodes); h5recorder's ``size`` is the steps
recorded and a frame read back (and a PNG) equals the one given.

Only in the ``lerobot`` tox env (``tox -e lerobot``; it installs torch and lerobot). There,
torchvision's wheel is a CUDA build beside a CPU torch: its C ops do not load, and its import
then stops at registering a fake kernel for an op that does not exist
(``torchvision::nms``). ``tests.lerobot_env.import_torchvision`` declares those two ops' schemas
so that the import completes; LeRobot's writing path calls none of torchvision's C ops (images go
through PIL, videos through PyAV), and reading videos back is not attempted.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import statistics
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from bench_support import lerobot_features, lerobot_rig, report
from gymnasium import spaces
from PIL import Image

from h5recorder import Options, Recorder
from h5recorder._tools.bench import paced, percentiles_us
from tests.lerobot_env import import_torchvision

RATE = 30.0
JOINTS = 14
CAMERAS = ("camera_0", "camera_1")
BANK = 32
SUBJECTS = ("lerobot-image", "lerobot-video", "h5recorder", "h5recorder-png",
            "h5recorder-handover")


pytest.importorskip("lerobot")
import_torchvision()
LeRobotDataset = pytest.importorskip("lerobot.datasets.lerobot_dataset").LeRobotDataset

_figures: dict[str, list[dict[str, Any]]] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        rounds = int(metafunc.config.getoption("--lerobot-rounds"))
        cases = [(r, s) for r in range(rounds) for s in SUBJECTS]
        metafunc.parametrize("case", cases, ids=[f"{s}-r{r}" for r, s in cases])


@pytest.fixture(scope="module")
def rig() -> list[dict[str, Any]]:
    """``BANK`` steps of the rig, as ``record()`` takes them."""
    return lerobot_rig(BANK, CAMERAS, JOINTS)


def handover() -> tuple[str, str, bool] | None:
    """Where this checkout's Recorder takes the hand-over of big arrays: ``(where, name,
    value)``, ``where`` being ``"record"`` or ``"init"``; ``None`` when it has none."""

    def pick(where: str, name: str, default: Any) -> tuple[str, str, bool] | None:
        lowered = name.lower()
        if "handover" in lowered or "hand_over" in lowered:
            return where, name, True
        if lowered == "copy" or lowered.startswith("copy_"):
            return where, name, False if default in (True, None, inspect.Parameter.empty) else True
        return None

    for name, parameter in inspect.signature(Recorder.record).parameters.items():
        if found := pick("record", name, parameter.default):
            return found
    for name, parameter in inspect.signature(Recorder.__init__).parameters.items():
        if found := pick("init", name, parameter.default):
            return found
    for field in dataclasses.fields(Options):
        if found := pick("init", field.name, field.default):
            return found
    return None


def _lerobot(rig: list[dict[str, Any]], folder: Path, steps: int, video: bool,
             figures: dict[str, Any]) -> np.ndarray[Any, Any]:
    features = lerobot_features(CAMERAS, JOINTS, video)
    root = folder / "lerobot"
    began = time.perf_counter()
    dataset = LeRobotDataset.create("local/rig", fps=int(RATE), features=features, root=root,
                                    use_videos=video, image_writer_threads=4 * len(CAMERAS))
    figures["setup_s"] = round(time.perf_counter() - began, 3)
    frames = [
        {
            **{f"observation.images.{name}": step["observation"][name] for name in CAMERAS},
            "observation.state": step["state"]["joints"],
            "action": step["action"]["joints"],
            "task": "pick up the cube",
        }
        for step in rig
    ]
    # add_frame takes keys out of the dict it is given: ``**`` makes a fresh one each step
    durations, late = paced(lambda **frame: dataset.add_frame(frame), frames, RATE, steps / RATE)
    figures["late_steps"] = late
    began = time.perf_counter()
    dataset.save_episode()
    figures["save_episode_s"] = round(time.perf_counter() - began, 3)
    began = time.perf_counter()
    dataset.finalize()
    dataset.stop_image_writer()
    figures["finalize_s"] = round(time.perf_counter() - began, 3)
    figures["finish_s"] = round(figures["save_episode_s"] + figures["finalize_s"], 3)

    written = LeRobotDataset("local/rig", root=root)
    assert written.num_frames == steps and written.num_episodes == 1
    if video:
        import av

        for name in CAMERAS:
            videos = list((root / "videos" / f"observation.images.{name}").rglob("*.mp4"))
            assert len(videos) == 1, videos
            with av.open(str(videos[0])) as container:
                assert sum(1 for _ in container.decode(video=0)) == steps
    else:
        row = steps - 1
        image = written[row][f"observation.images.{CAMERAS[1]}"]  # float CHW in [0, 1]
        back = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(back, frames[row % BANK][f"observation.images.{CAMERAS[1]}"])
    figures["frames_checked"] = steps
    return durations


def _h5recorder(rig: list[dict[str, Any]], folder: Path, steps: int, png: bool,
                hand: tuple[str, str, bool] | None,
                figures: dict[str, Any]) -> np.ndarray[Any, Any]:
    box = spaces.Box
    space = {
        "observation_space": spaces.Dict(
            {name: box(0, 255, (480, 640, 3), np.uint8) for name in CAMERAS}
        ),
        "state_space": spaces.Dict({"joints": box(-np.pi, np.pi, (JOINTS,), np.float32)}),
        "action_space": spaces.Dict({"joints": box(-np.pi, np.pi, (JOINTS,), np.float32)}),
    }
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if hand is not None:
        where, name, value = hand
        (extra if where == "record" else options)[name] = value
        figures["handover"] = f"{where}:{name}={value}"
    began = time.perf_counter()
    recorder = Recorder("rig", out_dir=str(folder), image_keys_to_save=list(CAMERAS) if png else [],
                        **space, **options)
    if png:
        assert recorder.wait_ready(timeout=120)
    figures["setup_s"] = round(time.perf_counter() - began, 3)
    record = recorder.record
    durations, late = paced(lambda **step: record(**step, **extra), rig, RATE, steps / RATE)
    figures["late_steps"] = late
    began = time.perf_counter()
    recorder.close()
    figures["close_s"] = figures["finish_s"] = round(time.perf_counter() - began, 3)

    row = steps - 1
    expected = rig[row % BANK]
    with h5py.File(folder / "rig.h5", "r") as file:
        assert int(file.attrs["size"]) == steps
        camera = file[f"observation/{CAMERAS[1]}"]
        assert np.array_equal(camera[row], expected["observation"][CAMERAS[1]])
        assert np.array_equal(file["action/joints"][row], expected["action"]["joints"])
    if png:
        for name in CAMERAS:
            pngs = list((folder / "rig_frames" / "observation" / name).glob("*.png"))
            assert len(pngs) == steps, name
        with Image.open(folder / "rig_frames" / "observation" / CAMERAS[1] / f"{row}.png") as image:
            assert np.array_equal(np.asarray(image), expected["observation"][CAMERAS[1]])
    figures["frames_checked"] = steps
    return durations


def test_rig_at_30_hz(benchmark: Any, request: pytest.FixtureRequest, rig: list[dict[str, Any]],
                      case: tuple[int, str], tmp_path: Path) -> None:
    round_, subject = case
    steps = int(request.config.getoption("--lerobot-steps"))
    hand = handover()
    if subject == "h5recorder-handover" and hand is None:
        pytest.skip("this checkout's Recorder has no hand-over of big arrays")
    os.sync()  # what the previous case left in the page cache is written back first
    figures: dict[str, Any] = {}
    load_before = os.getloadavg()[0]  # the machine is shared: what else ran, roughly
    if subject.startswith("lerobot"):
        run = lambda: _lerobot(rig, tmp_path, steps, subject == "lerobot-video", figures)  # noqa: E731
    else:
        run = lambda: _h5recorder(  # noqa: E731
            rig, tmp_path, steps, subject == "h5recorder-png",
            hand if subject == "h5recorder-handover" else None, figures,
        )
    durations = benchmark.pedantic(run, rounds=1, iterations=1)
    latency = percentiles_us(durations)
    figures = {"steps": steps, **latency, "first_us": round(float(durations[0]) / 1e3, 1),
               **figures, "load_before": round(load_before, 2),
               "load_after": round(os.getloadavg()[0], 2)}
    _figures.setdefault(subject, []).append(figures)
    report(benchmark, f"{subject} round {round_ + 1}, {steps} steps at {RATE:g} Hz", figures)


def test_summary(request: pytest.FixtureRequest) -> None:
    """Per subject, the median of its rounds; p99 over ``lerobot-image``'s p99."""
    if not _figures:
        pytest.skip("no case ran")
    keys = ("p50_us", "p99_us", "p999_us", "max_us", "finish_s")
    medians = {
        subject: {key: round(statistics.median(r[key] for r in runs), 3) for key in keys}
        | {"rounds": len(runs)}
        for subject, runs in _figures.items()
    }
    base = medians.get("lerobot-image")
    for subject, figures in medians.items():
        if base is not None:
            figures["p99_over_lerobot_image"] = round(figures["p99_us"] / base["p99_us"], 2)
            figures["p50_over_lerobot_image"] = round(figures["p50_us"] / base["p50_us"], 2)
        shown = ", ".join(f"{key}={value}" for key, value in figures.items())
        print(f"\n[median of rounds: {subject}] {shown}")
