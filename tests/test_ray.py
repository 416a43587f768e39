"""Episodes on Ray Data, with a real local Ray (one per module): rows equal the files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from h5recorder import SchemaError

from .episodes import killed_episode, record_episode

ray = pytest.importorskip("ray", reason="the Ray tests run where h5recorder[ray] is installed")

from h5recorder.ray import EpisodeDatasource, read_episodes  # noqa: E402

LENGTHS = (300, 1100, 40)
# Ray trips its own deprecation warnings (DataContext); ours stay errors elsewhere
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    where = tmp_path_factory.mktemp("ray_episodes")
    values = [
        record_episode(where, f"run_{i}", steps, seed=10 + i, chunk_bytes=16384)
        for i, steps in enumerate(LENGTHS)
    ]
    return where, values


def collect(dataset) -> dict[str, np.ndarray]:
    """Every row, sorted by (episode, step)."""
    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    columns = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
    order = np.lexsort((columns["step"], columns["episode"]))
    return {name: values[order] for name, values in columns.items()}


def test_every_row_equals_the_files_data(folder):
    where, values = folder
    rows = collect(read_episodes(where))
    assert len(rows["step"]) == sum(LENGTHS)
    for index, episode in enumerate(values):
        mine = rows["episode"] == index
        np.testing.assert_array_equal(rows["step"][mine], np.arange(LENGTHS[index]))
        for name, expected in episode.items():
            got = rows[name][mine]
            if expected.dtype == object:
                assert got.tolist() == expected.tolist(), name
            else:
                np.testing.assert_array_equal(got, expected, err_msg=name)
        stamps = rows["monotonic_ns"][mine]
        assert np.all(np.diff(stamps) > 0)  # each step's time, in order
    assert rows["observation/image"].shape[1:] == (24, 32, 3)


def test_projection_reads_only_the_asked_columns(folder, tmp_path):
    where, values = folder
    for path in sorted(where.glob("*.h5")):
        shutil.copy(path, tmp_path / path.name)
    # make every image chunk of one file unreadable: a job that reads images fails on it
    with h5py.File(tmp_path / "run_1.h5", "r+") as file:
        images = file["observation/image"]
        for start in range(0, images.shape[0], images.chunks[0]):
            images.id.write_direct_chunk((start, 0, 0, 0), b"not a blosc2 frame" * 8, 0)
    wanted = ["observation/joints", "action"]
    dataset = read_episodes(tmp_path, columns=wanted)
    assert set(dataset.schema().names) == {"episode", "step", "monotonic_ns", "wall_ns", *wanted}
    rows = collect(dataset)
    np.testing.assert_array_equal(rows["action"][rows["episode"] == 1], values[1]["action"])
    with pytest.raises(Exception, match=r"(?i)filter|read|chunk"):
        collect(read_episodes(tmp_path, columns=["observation/image"]))
    with pytest.raises(KeyError, match="'observation/depth': not a leaf"):
        read_episodes(tmp_path, columns=["observation/depth"])


def test_a_killed_and_recovered_episode_reads_below_its_size(folder, tmp_path):
    where, _ = folder
    shutil.copy(where / "run_0.h5", tmp_path / "run_0.h5")
    killed, recorded = killed_episode(tmp_path)
    with h5py.File(killed, "r") as file:
        size = int(file.attrs["size"])
    assert 0 < size <= len(recorded["action"])
    rows = collect(read_episodes([tmp_path / "run_0.h5", killed]))
    assert len(rows["step"]) == LENGTHS[0] + size
    late = rows["episode"] == 1
    np.testing.assert_array_equal(rows["action"][late], recorded["action"][:size])
    images = recorded["observation/image"][:size]
    np.testing.assert_array_equal(rows["observation/image"][late], images)


def test_a_schema_mismatch_is_named(folder, tmp_path):
    where, _ = folder
    shutil.copy(where / "run_0.h5", tmp_path / "a.h5")
    record_episode(tmp_path, "b", 20, seed=1, chunk_bytes=16384)
    with h5py.File(tmp_path / "b.h5", "r+") as file:  # another rig: 6 joints, not 7
        del file["observation/joints"]
        file["observation"].create_dataset("joints", data=np.zeros((20, 6), np.float32))
        described = json.loads(file["observation"].attrs["recorder_space"])
        described["spaces"]["joints"]["shape"] = [6]  # a file the reader believes
        file["observation"].attrs["recorder_space"] = json.dumps(described)
    with pytest.raises(SchemaError, match=r"b\.h5 does not share the schema of .*a\.h5.*joints"):
        read_episodes(tmp_path)


def test_large_files_split_into_ranges_of_whole_chunks(folder):
    where, _ = folder
    source = EpisodeDatasource(sorted(where.glob("*.h5")), ["action"], task_bytes=8 * 1024)
    chunk = 16384 // 32  # rows of 4 float64 per chunk
    assert all(r.start % chunk == 0 for r in source.ranges)
    assert sum(r.stop - r.start for r in source.ranges) == sum(LENGTHS)
    tasks = source.get_read_tasks(2)
    assert len(tasks) == 2
    assert sum(t.metadata.num_rows for t in tasks) == sum(LENGTHS)
    assert len(source.get_read_tasks(100)) == len(source.ranges)
    # about two and a half chunks a task: the span rounds down to two whole chunks
    wide = EpisodeDatasource(
        sorted(where.glob("*.h5")), ["action"], task_bytes=int(2.5 * chunk * source.row_bytes)
    )
    assert [r.start for r in wide.ranges if r.path.endswith("run_1.h5")] == [0, 2 * chunk]
    assert all(r.start % chunk == 0 for r in wide.ranges)
    assert sum(r.stop - r.start for r in wide.ranges) == sum(LENGTHS)


def test_without_ray_the_error_names_the_extra(folder):
    where, _ = folder
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import h5recorder, h5recorder.ray\n"
        "assert 'ray' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
        f"h5recorder.ray.read_episodes({str(where)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install 'h5recorder[ray]'" in result.stderr
