"""The reader: ``h5recorder.open`` on files of this version, earlier ones, mbodied's, crashed
ones, and files it cannot use."""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import h5recorder
from h5recorder import ReadError, Recorder
from tests.test_reliability import KEYS, LEAF_SPACES, sample_value

DATA = Path(__file__).parent / "data"


def _golden() -> Any:
    spec = importlib.util.spec_from_file_location("golden", DATA / "make_golden_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_same_value(read: Any, recorded: Any, where: str) -> None:
    """``read`` equals ``recorded``: same type family, dtype and shape for arrays."""
    if isinstance(recorded, dict):
        assert isinstance(read, dict) and sorted(read) == sorted(recorded), where
        for key, value in recorded.items():
            assert_same_value(read[key], value, f"{where}/{key}")
    elif isinstance(recorded, tuple | list):
        assert isinstance(read, tuple) and len(read) == len(recorded), (where, read)
        for position, (mine, theirs) in enumerate(zip(read, recorded, strict=True)):
            assert_same_value(mine, theirs, f"{where}[{position}]")
    elif isinstance(recorded, str):
        assert read == recorded, where
    else:
        expected = np.asarray(recorded)
        got = np.asarray(read)
        assert got.shape == expected.shape, (where, got.shape, expected.shape)
        if expected.dtype.kind == "f":
            assert got.dtype == expected.dtype, (where, got.dtype, expected.dtype)
        np.testing.assert_array_equal(got, expected, err_msg=where)


RICH_SPACE = spaces.Dict(
    {
        "image": spaces.Box(0, 255, (24, 32, 3), np.uint8),
        "depth": spaces.Box(0, 9000, (24, 32), np.uint16),
        "joints": spaces.Box(
            np.array([-1.0, -2.0, -3.0], np.float32), np.array([1.0, 2.0, 3.5], np.float32)
        ),
        "instruction": spaces.Text(40, min_length=0, charset="abcdefghijklmnopqrstuvwxyz 0123"),
        "mode": spaces.Discrete(5, start=-2),
        "buttons": spaces.MultiDiscrete([3, 4], start=[1, -1]),
        "contacts": spaces.MultiBinary(4),
        "pair": spaces.Tuple([spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32)]),
        "arm": spaces.Dict({"torque": spaces.Box(-50, 50, (7,), np.float64)}),
    }
)
ACTION_SPACE = spaces.Box(-1, 1, (7,), np.float32)


def rich_steps(frames: np.ndarray, count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(5)
    steps = []
    for index in range(count):
        steps.append(
            {
                "observation": {
                    "image": frames[index % len(frames)][:24, :32],
                    "depth": rng.integers(0, 9001, (24, 32)).astype(np.uint16),
                    "joints": rng.uniform(-1, 1, 3).astype(np.float32),
                    "instruction": f"step {index} of the episode"[: 40],
                    "mode": int(index % 5 - 2),
                    "buttons": np.array([1 + index % 3, -1 + index % 4]),
                    "contacts": rng.integers(0, 2, 4).astype(np.int8),
                    "pair": (index % 3, rng.uniform(-1, 1, 2).astype(np.float32)),
                    "arm": {"torque": rng.normal(0, 10, 7)},
                },
                "action": rng.uniform(-1, 1, 7).astype(np.float32),
            }
        )
    return steps


@pytest.fixture
def rich_file(tmp_path, frames) -> tuple[Path, list[dict[str, Any]]]:
    steps = rich_steps(frames, 150)
    with Recorder(
        "rich", out_dir=str(tmp_path), observation_space=RICH_SPACE, action_space=ACTION_SPACE,
        image_keys_to_save=["image", "depth"], chunk_bytes=16 << 10,
    ) as recorder:
        for step in steps:
            recorder.record(**step)
    return recorder.filename, steps


def test_open_reads_spaces_steps_columns_and_batches(rich_file):
    path, steps = rich_file
    with h5recorder.open(path) as episode:
        assert len(episode) == len(steps)
        assert episode.spaces == {"observation": RICH_SPACE, "action": ACTION_SPACE}
        assert episode.space == spaces.Dict({"observation": RICH_SPACE, "action": ACTION_SPACE})
        assert "observation/arm/torque" in episode.keys() and episode.keys()[-1] == "action"
        for index in (0, 1, 77, len(steps) - 1, -1):
            assert_same_value(episode[index], steps[index], f"step {index}")
        for index, step in enumerate(episode):
            assert_same_value(step, steps[index], f"iterated step {index}")
        assert index == len(steps) - 1

        image = episode["observation/image"]
        assert image.shape == (150, 24, 32, 3) and image.dtype == np.uint8
        expected = np.stack([step["observation"]["image"] for step in steps])
        np.testing.assert_array_equal(image[10:40], expected[10:40])
        np.testing.assert_array_equal(image[-3:], expected[-3:])
        np.testing.assert_array_equal(image[::7], expected[::7])
        np.testing.assert_array_equal(image[[5, 2, 5, -1]], expected[[5, 2, 5, -1]])
        np.testing.assert_array_equal(image[3, 1:4], expected[3, 1:4])
        np.testing.assert_array_equal(np.asarray(image), expected)
        assert list(episode["observation/instruction"][2:4]) == [
            steps[2]["observation"]["instruction"], steps[3]["observation"]["instruction"]
        ]
        with pytest.raises(IndexError, match="out of range for 150 steps"):
            image[150]
        with pytest.raises(KeyError, match="not a leaf"):
            episode["observation/nothing"]

        keys = ["observation/joints", "observation/pair", "action"]
        seen = 0
        for batch in episode.batches(size=64, keys=keys):
            assert set(batch) == {"step", "monotonic_ns", "wall_ns", *keys}
            for row, step_number in enumerate(batch["step"]):
                step = steps[int(step_number)]
                np.testing.assert_array_equal(batch["action"][row], step["action"])
                assert_same_value(batch["observation/pair"][row], step["observation"]["pair"],
                                  f"batch pair {step_number}")
            seen += len(batch["step"])
        assert seen == len(steps)
        whole = list(episode.batches())
        assert sum(len(batch["step"]) for batch in whole) == len(steps)


def test_frames_stats_and_health_of_a_clean_file(rich_file):
    path, steps = rich_file
    with h5recorder.open(path) as episode:
        frames = episode.frames
        assert set(frames) == {"observation/image", "observation/depth"}
        assert [p.name for p in frames["observation/image"]] == [f"{i}.png" for i in range(150)]
        from PIL import Image

        decoded = np.asarray(Image.open(frames["observation/depth"][42]))
        np.testing.assert_array_equal(decoded, steps[42]["observation"]["depth"])
        joints = np.stack([step["observation"]["joints"] for step in steps]).astype(np.float64)
        stats = episode.stats["observation/joints"]
        assert int(stats["count"]) == 150
        np.testing.assert_allclose(stats["mean"], joints.mean(axis=0), rtol=1e-6)
        health = episode.health
        assert health.ok and health.closed is True, health.problems
        assert episode.status is not None and episode.status["steps"] == 150
        assert episode.version == h5recorder.__version__
        assert episode.options is not None and episode.options["chunk_bytes"] == 16 << 10


def test_each_step_keeps_its_time_and_replayer_sees_the_same_roots(tmp_path):
    space = spaces.Dict({"x": spaces.Box(-1, 1, (2,), np.float64)})
    before = time.time_ns()
    pauses = []
    with Recorder("timed", out_dir=str(tmp_path), observation_space=space) as recorder:
        for index in range(40):
            pause = 0.002 if index % 2 else 0.006
            pauses.append(pause)
            recorder.record({"x": np.array([index, -index]) / 100})
            time.sleep(pause)
    after = time.time_ns()
    with h5recorder.open(recorder.filename) as episode:
        assert episode.time is not None
        mono = np.asarray(episode.time.monotonic_ns)
        wall = np.asarray(episode.time.wall_ns)
        gaps = np.diff(mono) / 1e9
        assert (gaps >= np.array(pauses[:-1]) * 0.95).all(), gaps
        # the odd steps waited 6 ms, the even ones 2 ms: the stamps show which is which
        assert np.median(gaps[0::2]) > np.median(gaps[1::2]) + 0.003, gaps
        assert before <= wall[0] <= wall[-1] <= after
        np.testing.assert_allclose(np.diff(wall), np.diff(mono), atol=2e6)
        seconds = episode.time.seconds()
        assert seconds[0] == 0 and abs(seconds[-1] - (mono[-1] - mono[0]) / 1e9) < 1e-9
        batch = next(episode.batches())
        np.testing.assert_array_equal(batch["monotonic_ns"], mono)
    with h5py.File(recorder.filename, "r") as file:
        # mbodied's Replayer yields one value per root key: the time adds none
        assert list(file.keys()) == ["observation"]
        names: list[str] = []
        file.visit(names.append)
        assert names == ["observation", "observation/x"]
        group = file[file.attrs["recorder_time"]]
        np.testing.assert_array_equal(group["monotonic_ns"][: file.attrs["size"]], mono)


def test_slicing_reads_only_the_chunks_it_needs(tmp_path):
    """A slice never touches a chunk outside it: one chunk is damaged on disk, and every
    selection that avoids it still reads."""
    space = spaces.Dict({"x": spaces.Box(-np.inf, np.inf, (256,), np.float64)})
    rng = np.random.default_rng(2)
    values = rng.normal(size=(400, 256))
    with Recorder("chunks", out_dir=str(tmp_path), observation_space=space,
                  chunk_bytes=32 << 10, compression=None) as recorder:
        for row in values:
            recorder.record({"x": row})
    with h5py.File(recorder.filename, "r") as file:
        dataset = file["observation/x"]
        rows = dataset.chunks[0]
        assert rows == 16
        info = dataset.id.get_chunk_info_by_coord((5 * rows, 0))
    with open(recorder.filename, "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)  # NaNs where chunk 5 was
    with h5recorder.open(recorder.filename) as episode:
        column = episode["observation/x"]
        np.testing.assert_array_equal(column[: 5 * rows], values[: 5 * rows])
        np.testing.assert_array_equal(column[6 * rows : 300], values[6 * rows : 300])
        np.testing.assert_array_equal(column[[3, 200, 399]], values[[3, 200, 399]])
        assert np.isnan(column[5 * rows + 3]).all()
        assert np.isnan(column[4 * rows : 7 * rows]).any()


@pytest.mark.parametrize(
    "compression", ["blosc2", "blosc2:zstd", None, "portable", "gzip", "lzf"]
)
def test_ranges_read_back_exactly_whatever_the_codec(tmp_path, frames, compression, monkeypatch):
    """Every range of rows reads back as recorded: whole chunks, parts of chunks, the raw
    last chunk. Files of blosc2, deflate (shuffled or not) or no filter are read chunk by
    chunk without HDF5's pipeline (the test forbids it), lzf through it."""
    rng = np.random.default_rng(5)
    count = 700
    images = frames[np.arange(count) % len(frames), :16, :20]
    noise = rng.integers(0, 3, images.shape, dtype=np.uint8)
    images = images // 4 * 4 + noise  # photographs, a little noisy: some chunks compress
    walk = np.cumsum(rng.normal(0, 0.01, (count, 12)), axis=0)
    flags = rng.integers(-3, 4, (count, 64)).astype(np.int8)
    space = spaces.Dict({
        "image": spaces.Box(0, 255, images.shape[1:], np.uint8),
        "walk": spaces.Box(-np.inf, np.inf, (12,), np.float64),
        "flags": spaces.Box(-3, 3, (64,), np.int8),
        "note": spaces.Text(12),
    })  # fmt: skip
    with Recorder("codec", out_dir=str(tmp_path), observation_space=space, chunk_bytes=8 << 10,
                  compression=compression, image_keys_to_save=[]) as recorder:  # fmt: skip
        for i in range(count):
            recorder.record({"image": images[i], "walk": walk[i], "flags": flags[i],
                             "note": f"step {i}"})  # fmt: skip
    recorded = {"observation/image": images, "observation/walk": walk, "observation/flags": flags}
    if compression != "lzf":
        monkeypatch.setattr(h5recorder._read.episode, "DIRECT_CHUNK_BYTES", 0)  # small chunks too

        def forbidden(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("read through HDF5's filter pipeline")

        monkeypatch.setattr(h5py.Dataset, "read_direct", forbidden)
    ranges = [(0, count), (1, count - 1), (3, 4), (count - 1, count)]
    ranges += [tuple(sorted(int(v) for v in rng.integers(0, count + 1, 2))) for _ in range(12)]
    with h5recorder.open(recorder.filename) as episode:
        for name, values in recorded.items():
            column = episode[name]
            assert column.chunk_rows < count // 4  # many chunks, the last one partly filled
            for start, stop in ranges:
                np.testing.assert_array_equal(column[start:stop], values[start:stop],
                                              err_msg=f"{name}[{start}:{stop}]")  # fmt: skip
            into = np.empty((5, *values.shape[1:]), values.dtype)
            assert column.read(10, 15, out=into) is into
            np.testing.assert_array_equal(into, values[10:15])
            with pytest.raises(ValueError, match=f"{name}: out must be"):
                column.read(10, 16, out=into)
        assert list(episode["observation/note"][5:8]) == ["step 5", "step 6", "step 7"]
        with pytest.raises(ValueError, match="text is read into new arrays"):
            episode["observation/note"].read(0, 2, out=np.empty(2, object))
        batches = list(episode.batches(64))
        np.testing.assert_array_equal(
            np.concatenate([b["observation/walk"] for b in batches]), walk
        )


class _StaleLookups:
    """A dataset whose chunk lookups describe every chunk as a full raw one: what a reader
    in the recording process sees when the writer rewrites a chunk compressed between the
    lookup and the read."""

    def __init__(self, dataset: h5py.Dataset, chunk_bytes: int) -> None:
        self.dataset = dataset
        self.chunk_bytes = chunk_bytes
        self.id = self

    def get_chunk_info_by_coord(self, coord: tuple[int, ...]) -> Any:
        info = self.dataset.id.get_chunk_info_by_coord(coord)
        return info._replace(filter_mask=1, size=self.chunk_bytes)

    def read_direct_chunk(self, *args: Any, **kwargs: Any) -> Any:
        return self.dataset.id.read_direct_chunk(*args, **kwargs)

    def read_direct(self, *args: Any, **kwargs: Any) -> None:
        self.dataset.read_direct(*args, **kwargs)


def test_a_chunk_rewritten_between_lookup_and_read_still_reads_right(tmp_path, monkeypatch):
    """The direct chunk reads decide on the bytes they read, not on the lookup before."""
    monkeypatch.setattr(h5recorder._read.episode, "DIRECT_CHUNK_BYTES", 0)
    rng = np.random.default_rng(8)
    flags = rng.integers(-2, 3, (600, 64)).astype(np.int8)  # compresses: chunks stored blosc2
    space = spaces.Dict({"flags": spaces.Box(-3, 3, (64,), np.int8)})
    with Recorder("stale", out_dir=str(tmp_path), observation_space=space, chunk_bytes=4 << 10,
                  image_keys_to_save=[]) as recorder:  # fmt: skip
        for row in flags:
            recorder.record({"flags": row})
    with h5recorder.open(recorder.filename) as episode:
        column = episode["observation/flags"]
        masks = {column.dataset.id.get_chunk_info_by_coord((first, 0)).filter_mask
                 for first in range(0, 600, column.chunk_rows)}  # fmt: skip
        assert masks == {0, 1}  # compressed chunks, and the raw last one
        np.testing.assert_array_equal(column[:], flags)
        column._chunks.dataset = _StaleLookups(column.dataset, column._chunks.chunk_bytes)
        for start, stop in [(0, 600), (5, 333), (64, 128)]:
            np.testing.assert_array_equal(column[start:stop], flags[start:stop])


def test_threads_sharing_a_column_read_their_own_rows(tmp_path, monkeypatch):
    """Four threads read parts of chunks of one column at once (as a data loader's threads
    may): each gets exactly its rows."""
    import threading

    monkeypatch.setattr(h5recorder._read.episode, "DIRECT_CHUNK_BYTES", 0)
    rng = np.random.default_rng(9)
    values = np.cumsum(rng.integers(-2, 3, (3000, 256)), axis=0).astype(np.int16)
    space = spaces.Dict({"x": spaces.Box(-(2**15), 2**15 - 1, (256,), np.int16)})
    with Recorder("threads", out_dir=str(tmp_path), observation_space=space,
                  chunk_bytes=64 << 10, image_keys_to_save=[]) as recorder:  # fmt: skip
        for row in values:
            recorder.record({"x": row})
    wrong: list[tuple[int, int]] = []
    with h5recorder.open(recorder.filename) as episode:
        column = episode["observation/x"]
        rows = column.chunk_rows

        def read(seed: int) -> None:
            picks = np.random.default_rng(seed)
            for _ in range(150):
                start = int(picks.integers(0, 3000 - rows))
                stop = start + int(picks.integers(1, rows))  # inside one or two chunks
                if not np.array_equal(column[start:stop], values[start:stop]):
                    wrong.append((start, stop))

        threads = [threading.Thread(target=read, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert wrong == []


def test_the_recording_process_reads_its_own_frames_while_it_records(tmp_path):
    """``h5recorder.open`` on the file being recorded, in the recording process: every step
    before the open reads back exactly, through the direct chunk reads (frames of 1 MiB
    chunks: raw partial chunks rewritten at each commit, full chunks compressed or raw)."""
    from h5recorder.workloads import photo_frames

    frames = photo_frames(16, 120, 160, seed=1)
    space = spaces.Dict({"image": spaces.Box(0, 255, (120, 160, 3), np.uint8),
                         "i": spaces.Box(0, 10**9, (), np.int64)})  # fmt: skip
    opened = 0
    with Recorder("own", out_dir=str(tmp_path), observation_space=space, image_keys_to_save=[],
                  commit_interval=0.02) as recorder:  # fmt: skip
        for i in range(1500):
            recorder.record({"image": frames[i % 16], "i": i})
            if i % 97 == 0:
                with h5recorder.open(recorder.filename) as episode:
                    assert len(episode) == i + 1
                    column = episode["observation/image"]
                    images = column[: i + 1]
                    assert column._chunks is not None  # the direct path, not HDF5's pipeline
                    expected = frames[np.arange(i + 1) % 16]
                    np.testing.assert_array_equal(images, expected, err_msg=f"open at step {i}")
                    opened += 1
    assert opened == 16


BOUNDED_BOXES = st.builds(
    lambda low, width: spaces.Box(
        np.array(low, np.float32), np.array(low, np.float32) + np.array(width, np.float32)
    ),
    st.lists(st.integers(-9, 0), min_size=2, max_size=2),
    st.lists(st.integers(1, 9), min_size=2, max_size=2),
)
READ_LEAVES = st.one_of(
    LEAF_SPACES,
    BOUNDED_BOXES,
    st.builds(lambda nvec, start: spaces.MultiDiscrete(nvec, start=[start] * len(nvec)),
              st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(-4, 4)),
    st.builds(lambda n, low: spaces.Text(n, min_length=low, charset="xyz019 abc"),
              st.integers(2, 10), st.integers(0, 2)),
    st.builds(lambda items: spaces.Tuple(items),
              st.lists(st.one_of(st.builds(spaces.Discrete, st.integers(1, 9)),
                                 st.just(spaces.Box(-1, 1, (2,), np.float32)),
                                 st.just(spaces.Text(8))), min_size=1, max_size=3)),
)
READ_SPACES = st.recursive(
    st.dictionaries(KEYS, READ_LEAVES, min_size=1, max_size=4).map(spaces.Dict),
    lambda children: st.dictionaries(KEYS, st.one_of(READ_LEAVES, children), min_size=1,
                                     max_size=3).map(spaces.Dict),
    max_leaves=8,
)


def sample_any(space: spaces.Space[Any], rng: np.random.Generator) -> Any:
    if isinstance(space, spaces.Tuple):
        return tuple(sample_any(sub, rng) for sub in space.spaces)
    if isinstance(space, spaces.Dict):
        return {key: sample_any(sub, rng) for key, sub in space.spaces.items()}
    return sample_value(space, rng)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(observation=READ_SPACES, action=st.one_of(st.none(), READ_SPACES, READ_LEAVES),
       count=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_random_nested_spaces_read_back_exactly(tmp_path_factory, observation, action, count,
                                                seed):
    tmp = tmp_path_factory.mktemp("read")
    rng = np.random.default_rng(seed)
    roots = {name: space for name, space in
             {"observation": observation, "action": action}.items() if space is not None}
    steps = [{name: sample_any(space, rng) for name, space in roots.items()}
             for _ in range(count)]
    with Recorder("prop", out_dir=str(tmp), image_keys_to_save=[], chunk_bytes=1024,
                  **{f"{name}_space": space for name, space in roots.items()}) as recorder:
        for step in steps:
            recorder.record(**step)
    with h5recorder.open(recorder.filename) as episode:
        assert episode.spaces == roots
        assert len(episode) == count
        for index, step in enumerate(episode):
            assert_same_value(step, steps[index], f"step {index}")
        index = int(rng.integers(count))
        assert_same_value(episode[index], steps[index], f"episode[{index}]")
        rows = 0
        for batch in episode.batches(size=7):
            rows += len(batch["step"])
        assert rows == count


def test_files_written_by_mbodied_read_below_size():
    """Written once by mbodied 1.5.1's own Recorder (``tests/data/make_golden_files.py``): its
    datasets hold 16 rows for 10 steps."""
    golden = _golden()
    path = DATA / "mbodied_1_5_1.h5"
    with h5py.File(path, "r") as file:
        assert file["observation/image"].shape[0] == 16 and int(file.attrs["size"]) == 10
    with h5recorder.open(path) as episode:
        assert len(episode) == golden.STEPS
        assert episode.spaces == {
            "observation": golden.observation_space(), "action": golden.action_space()
        }
        for index, step in enumerate(episode):
            expected = golden.steps()[index]
            for root in ("observation", "action"):
                for key, value in expected[root].items():
                    assert_same_value(step[root][key], value, f"{root}/{key}[{index}]")
        assert episode["observation/depth"].shape == (10, 6, 8)
        assert episode.time is None and episode.version is None
        health = episode.health
        assert health.closed is None
        assert health.rows_past_size["observation/image"] == 6
        assert any("over-allocates" in problem for problem in health.problems)


def test_files_of_the_first_version_read_without_time():
    golden = _golden()
    with h5recorder.open(DATA / "h5recorder_0_1_0.h5") as episode:
        assert episode.version == "0.1.0"
        assert len(episode) == golden.STEPS and episode.time is None
        assert episode.spaces == {
            "observation": golden.observation_space(), "action": golden.action_space()
        }
        for index in range(golden.STEPS):
            expected = golden.steps()[index]
            step = episode[index]
            for root in ("observation", "action"):
                for key, value in expected[root].items():
                    assert_same_value(step[root][key], value, f"{root}/{key}[{index}]")
        assert episode.health.ok and episode.health.closed is None
        assert episode.stats["observation/gripper"]["value_counts"].tolist() == [4, 3, 3]
        batch = next(episode.batches())
        assert "monotonic_ns" not in batch and len(batch["step"]) == golden.STEPS


CRASH_CHILD = """
import sys
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder
space = spaces.Dict({"x": spaces.Box(-np.inf, np.inf, (8,), np.float64), "note": spaces.Text(9)})
recorder = Recorder("crash", out_dir=sys.argv[1], observation_space=space,
                    commit_interval=0.05, chunk_bytes=4096)
for i in range(10**9):
    recorder.record({"x": np.arange(8) + i, "note": f"n{i}"})
    if i == 3000:
        recorder.flush()  # a commit on disk before the kill, however slow this machine is
        print("ready", flush=True)
"""


def kill_crash_child(out_dir: Path, after: float) -> Path:
    """Run CRASH_CHILD, kill -9 it ``after`` seconds into its recording; return its file."""
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, str(out_dir)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(after)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    return out_dir / "crash.h5"


def test_a_killed_recording_opens_as_it_is(tmp_path):
    path = kill_crash_child(tmp_path, 0.3)
    with h5recorder.open(path) as episode:
        steps = len(episode)
        assert steps > 0
        x = np.asarray(episode["observation/x"])
        np.testing.assert_array_equal(x, np.arange(8) + np.arange(steps)[:, None])
        assert episode[steps - 1]["observation"]["note"] == f"n{steps - 1}"
        assert len(np.asarray(episode.time.monotonic_ns)) == steps
        health = episode.health
        assert health.closed is False and not health.ok
        assert any("recover" in problem for problem in health.problems), health.problems


def test_files_it_cannot_use_raise_clear_errors(tmp_path, rich_file):
    with pytest.raises(ReadError, match="no such file"):
        h5recorder.open(tmp_path / "absent.h5")
    with pytest.raises(ReadError, match="is a folder"):
        h5recorder.open(tmp_path)
    text = tmp_path / "notes.h5"
    text.write_text("not a recording\n" * 100)
    with pytest.raises(ReadError, match="not an HDF5 file"):
        h5recorder.open(text)
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(ReadError, match="no observation, action, state or supervision"):
        h5recorder.open(empty)
    path, _ = rich_file
    cut = tmp_path / "cut.h5"
    shutil.copy(path, cut)
    with open(cut, "r+b") as raw:
        raw.truncate(cut.stat().st_size // 3)
    with pytest.raises(ReadError, match="truncated"):
        h5recorder.open(cut)
    assert issubclass(ReadError, OSError)


def test_an_unmarked_space_attribute_is_rebuilt_from_the_reference_attributes(tmp_path):
    """Files whose datasets lack ``recorder_space`` (earlier versions) still give spaces."""
    space = spaces.Dict({"mode": spaces.Discrete(4, start=2), "pos": spaces.Box(-2, 2, (3,))})
    with Recorder("old", out_dir=str(tmp_path), observation_space=space) as recorder:
        recorder.record({"mode": 3, "pos": np.zeros(3, np.float32)})
    with h5py.File(recorder.filename, "r+") as file:
        for name in ("observation", "observation/mode", "observation/pos"):
            del file[name].attrs["recorder_space"]
    with h5recorder.open(recorder.filename) as episode:
        assert episode.spaces["observation"] == space
        assert json.loads(json.dumps(episode[0]["observation"]["mode"].item())) == 3
