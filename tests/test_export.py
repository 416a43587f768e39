"""h5recorder.export.to_lerobot, checked without LeRobot: the files it writes are read back with
pyarrow, pandas and Pillow and compared with what was recorded.

Episodes are recorded by the real ``Recorder`` at 100 steps per second, one with a stall of its
loop. Cameras are exported as PNG images (lossless) here; videos and LeRobot's own loader are
checked in ``test_export_lerobot.py`` (the ``lerobot`` tox env).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import h5recorder
from h5recorder._tools.cli import main
from h5recorder._tools.lerobot import Crew, grid_slots
from h5recorder.export import to_lerobot
from tests.episodes import INSTRUCTIONS, killed_episode, record_episode

pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")
Image = pytest.importorskip("PIL.Image")

RATE = 100
STEPS = (60, 70, 80)
STALL = (1, (25, 0.2))  # episode 1 pauses 0.2 s (20 frames) before its step 25


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("episodes")
    values = [
        record_episode(folder, f"episode_{k}", steps, seed=k, rate=RATE,
                       stall=STALL[1] if k == STALL[0] else None)
        for k, steps in enumerate(STEPS)
    ]
    return folder, values


@pytest.fixture(scope="module")
def exported(recorded: tuple[Path, list[dict[str, Any]]],
             tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder, _ = recorded
    return to_lerobot(folder, tmp_path_factory.mktemp("lerobot") / "out", video=False,
                      progress=False, workers=2)


def _info(root: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((root / "meta/info.json").read_text())
    return info


def _rows(root: Path) -> Any:
    files = sorted((root / "data").glob("*/*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def _expected_features(height: int, width: int) -> dict[str, Any]:
    """What the spaces of ``tests.episodes`` map to, written out by hand."""
    return {
        "observation.images.image": {"dtype": "image", "shape": [height, width, 3],
                                     "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [7],
                              "names": [f"joints_{i}" for i in range(7)]},
        "action": {"dtype": "float32", "shape": [4], "names": [f"action_{i}" for i in range(4)]},
        "observation.gripper": {"dtype": "int64", "shape": [1], "names": ["gripper"]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def test_info_features_shapes_dtypes_names(exported: Any) -> None:
    info = _info(exported.root)
    assert info["codebase_version"] == "v3.0"
    assert info["features"] == _expected_features(24, 32)
    assert info["total_episodes"] == len(STEPS) and info["total_frames"] == sum(STEPS)
    assert info["fps"] == RATE and info["splits"] == {"train": f"0:{len(STEPS)}"}
    assert info["video_path"] is None
    assert info["total_tasks"] == len(pd.read_parquet(exported.root / "meta/tasks.parquet"))
    assert exported.left_out == {} and exported.skipped == {}


def test_rows_equal_what_was_recorded(exported: Any,
                                      recorded: tuple[Path, list[dict[str, Any]]]) -> None:
    rows = _rows(exported.root)
    tasks = pd.read_parquet(exported.root / "meta/tasks.parquet")
    task_of = {int(index): str(text) for text, index in tasks["task_index"].items()}
    assert len(rows) == sum(STEPS)
    for k, values in enumerate(recorded[1]):
        mine = rows[rows["episode_index"] == k]
        assert len(mine) == STEPS[k]
        np.testing.assert_array_equal(np.stack(mine["observation.state"]),
                                      values["observation/joints"])
        np.testing.assert_array_equal(np.stack(mine["action"]),
                                      values["action"].astype(np.float32))
        np.testing.assert_array_equal(mine["observation.gripper"], values["observation/gripper"])
        assert [task_of[i] for i in mine["task_index"]] == list(values["observation/instruction"])
        for row, image in enumerate(mine["observation.images.image"]):
            assert image["path"] is None
            decoded = np.asarray(Image.open(io.BytesIO(image["bytes"])))
            np.testing.assert_array_equal(decoded, values["observation/image"][row])
    np.testing.assert_array_equal(rows["index"], np.arange(sum(STEPS)))
    assert set(task_of.values()) <= set(INSTRUCTIONS)


def test_timestamps_follow_recorded_time(exported: Any,
                                         recorded: tuple[Path, list[dict[str, Any]]]) -> None:
    """Each row's timestamp is its step's recorded time, on LeRobot's frame grid: the slot
    nearest it, or, when the step before took that slot, the next free one; a stall of the loop
    is a gap in the timestamps. The slots are worked out here one step at a time from the
    recorded times, so a loaded machine that delays steps changes the times, not the check."""
    rows = _rows(exported.root)
    for k, path in enumerate(sorted(recorded[0].glob("*.h5"))):
        with h5recorder.open(path) as episode:
            assert episode.time is not None
            seconds = episode.time.seconds()
        mine = rows[rows["episode_index"] == k]
        stamps = mine["timestamp"].to_numpy()
        assert stamps.dtype == np.float32
        np.testing.assert_array_equal(mine["frame_index"], np.arange(STEPS[k]))
        expected, taken = [], -1
        for t in seconds.tolist():
            nearest = round(t * RATE)
            taken = nearest if nearest > taken else taken + 1
            expected.append(taken)
        np.testing.assert_array_equal(stamps, (np.array(expected) / RATE).astype(np.float32))
        off = stamps.astype(np.float64) - seconds
        assert np.all(off > -0.5 / RATE - 1e-6)  # never before its time by more than half a frame
        if k == STALL[0]:
            gap = stamps[STALL[1][0]] - stamps[STALL[1][0] - 1]
            assert gap >= STALL[1][1], "the stall is hidden"


def test_stats_come_from_the_stored_statistics(exported: Any,
                                               recorded: tuple[Path, list[dict[str, Any]]]) -> None:
    stats = json.loads((exported.root / "meta/stats.json").read_text())
    merged = h5recorder.dataset(recorded[0]).stats
    frames = sum(STEPS)
    joints = merged["observation/joints"]
    for key in ("min", "max", "mean", "std", "q01", "q10", "q50", "q90", "q99"):
        np.testing.assert_allclose(stats["observation.state"][key], joints[key], rtol=1e-12)
    image = merged["observation/image"]
    for key in ("min", "max", "mean", "std", "q01", "q50", "q99"):
        got = np.asarray(stats["observation.images.image"][key])
        assert got.shape == (3, 1, 1)
        np.testing.assert_allclose(got.ravel(), np.asarray(image[key]) / 255.0)
    for key in stats:
        assert stats[key]["count"] == [frames], key
    everything = np.concatenate([v["observation/joints"] for v in recorded[1]])
    np.testing.assert_allclose(stats["observation.state"]["mean"], everything.mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    assert stats["index"]["max"] == [frames - 1] and stats["frame_index"]["min"] == [0]
    assert set(stats) == set(_expected_features(24, 32))


def test_episodes_metadata(exported: Any) -> None:
    table = pq.read_table(exported.root / "meta/episodes/chunk-000/file-000.parquet")
    episodes = table.to_pylist()
    assert [e["episode_index"] for e in episodes] == list(range(len(STEPS)))
    assert [e["length"] for e in episodes] == list(STEPS)
    starts = np.cumsum((0, *STEPS))
    assert [e["dataset_from_index"] for e in episodes] == starts[:-1].tolist()
    assert [e["dataset_to_index"] for e in episodes] == starts[1:].tolist()
    assert [e["data/file_index"] for e in episodes] == list(range(len(STEPS)))
    rows = _rows(exported.root)
    for e in episodes:
        mine = rows[rows["episode_index"] == e["episode_index"]]
        tasks = pd.read_parquet(exported.root / "meta/tasks.parquet")
        used = set(tasks.index[tasks["task_index"].isin(set(mine["task_index"]))])
        assert set(e["tasks"]) == used
        assert e["stats/observation.state/count"] == [e["length"]]


def test_unhealthy_episodes_are_left_out_unless_asked(tmp_path: Path) -> None:
    folder = tmp_path / "episodes"
    folder.mkdir()
    record_episode(folder, "good", 40, seed=3, rate=RATE)
    killed, values = killed_episode(folder, steps=120)
    done = to_lerobot(folder, tmp_path / "out", video=False, progress=False)
    assert list(done.skipped) == [str(killed)] and done.skipped[str(killed)]
    assert done.episodes == (folder / "good.h5",) and done.frames == 40
    both = to_lerobot(folder, tmp_path / "all", video=False, progress=False, fps=RATE,
                      include_unhealthy=True)
    assert both.skipped == {} and both.frames == 40 + 120
    assert any("unhealthy" in note for note in both.notes)
    stats = json.loads((tmp_path / "all/meta/stats.json").read_text())
    assert stats["observation.state"]["count"] == [40]  # only the good one stored statistics
    assert stats["index"]["count"] == [160]
    rows = _rows(tmp_path / "all")
    np.testing.assert_array_equal(np.stack(rows[rows["episode_index"] == 1]["observation.state"]),
                                  values["observation/joints"])


def test_command_line(recorded: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main(["export", "lerobot", str(recorded[0]), str(out), "--images",
                 "--task", "wipe the table", "--fps", str(RATE), "--workers", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"{len(STEPS)} episodes, {sum(STEPS)} frames at {RATE} fps" in printed
    assert "not exported: observation/instruction" in printed
    tasks = pd.read_parquet(out / "meta/tasks.parquet")
    assert list(tasks.index) == ["wipe the table"]
    assert main(["export", "lerobot", str(recorded[0]), str(out), "--images"]) == 2


def _dies_once(marker: str) -> int:
    """A job whose first run kills its worker process, as the kernel's OOM killer would."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)
    return os.getpid()


def _always_dies() -> None:
    os._exit(1)


class _NoBar:
    def update(self, count: int) -> None:
        pass


def test_a_dead_worker_costs_a_rebuilt_pool_not_the_export(tmp_path: Path) -> None:
    channel = multiprocessing.get_context("spawn").Queue()
    crew = Crew(2, channel, _NoBar())
    try:
        jobs = [crew.submit(_dies_once, str(tmp_path / "marker")) for _ in range(3)]
        pids = [crew.result(job) for job in jobs]
        assert crew.rebuilds == 1 and all(isinstance(pid, int) for pid in pids)
        doomed = crew.submit(_always_dies)
        with pytest.raises(RuntimeError, match="died 3 times"):
            crew.result(doomed)
    finally:
        crew.close()
        channel.close()


def test_never_writes_over_its_own_episodes(recorded: tuple[Path, list[dict[str, Any]]]) -> None:
    folder = recorded[0]
    before = sorted(folder.iterdir())
    with pytest.raises(ValueError, match="holds the episodes"):
        to_lerobot(folder, folder, video=False, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="holds the episodes"):
        to_lerobot(folder, folder.parent, video=False, overwrite=True, progress=False)
    assert sorted(folder.iterdir()) == before


def test_steps_recorded_close_together_move_to_the_next_free_slots() -> None:
    """A loop that fell behind and caught up records several steps within one frame: each takes
    the slot after the one before, and the grid is back on time once the loop is."""
    seconds = np.array([0.0, 0.011, 0.0505, 0.0507, 0.0509, 0.052, 0.08, 0.0899, 0.3])
    np.testing.assert_array_equal(grid_slots(seconds, 100), [0, 1, 5, 6, 7, 8, 9, 10, 30])
