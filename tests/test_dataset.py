"""Many episodes: one schema, health, and statistics merged from stored summaries alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from gymnasium import spaces

import h5recorder
from h5recorder import Recorder, SchemaError
from h5recorder._format.summary import QUANTILES, quantile_key

from .episodes import (
    episode_values,
    killed_episode,
    observation_space,
    record_episode,
)
from .test_stats import assert_within_rank_error

LENGTHS = (120, 700, 1500, 60, 2600)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    where = tmp_path_factory.mktemp("episodes")
    values = [
        record_episode(where, f"episode_{i:02d}", steps, seed=i)
        for i, steps in enumerate(LENGTHS)
    ]
    return where, values


def concatenated(values, name):
    return np.concatenate([episode[name] for episode in values])


def test_merged_statistics_equal_numpy_on_the_concatenated_data(folder):
    where, values = folder
    data = h5recorder.dataset(where)
    assert len(data) == len(LENGTHS) and data.steps == sum(LENGTHS)
    assert [e.steps for e in data.episodes] == list(LENGTHS)
    assert all(e.ok and e.closed for e in data.episodes)
    assert data.schema["observation/image"].shape == (24, 32, 3)

    joints = concatenated(values, "observation/joints").astype(np.float64)
    merged = data.stats["observation/joints"]
    assert merged["count"] == sum(LENGTHS)
    np.testing.assert_allclose(merged["mean"], joints.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(merged["std"], joints.std(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(merged["min"], joints.min(axis=0))
    np.testing.assert_array_equal(merged["max"], joints.max(axis=0))
    assert 0 < merged["rank_error"].max() < 0.003
    for q in QUANTILES:
        for c in range(7):
            answer = merged[quantile_key(q)][c]
            assert_within_rank_error(joints[:, c], q, answer, merged["rank_error"][c])

    pixels = concatenated(values, "observation/image").reshape(-1, 3)
    image = data.stats["observation/image"]
    np.testing.assert_allclose(image["mean"], pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(image["std"], pixels.std(axis=0), rtol=1e-9)
    assert image["rank_error"].tolist() == [0, 0, 0]
    for q in QUANTILES:  # exact: histograms add up
        exact = np.quantile(pixels, q, axis=0, method="inverted_cdf")
        np.testing.assert_array_equal(image[quantile_key(q)], exact)

    gripper = concatenated(values, "observation/gripper")  # Discrete(3, start=-1)
    counts = data.stats["observation/gripper"]["value_counts"]
    assert counts.tolist() == np.bincount(gripper + 1, minlength=3).tolist()
    assert data.stats["observation/gripper"]["min"] == -1
    action = concatenated(values, "action")
    np.testing.assert_allclose(data.stats["action"]["mean"], action.mean(axis=0), rtol=1e-9)
    assert data.stats["observation/instruction"] == {"count": sum(LENGTHS)}


def test_folder_glob_and_list_name_the_same_episodes(folder):
    where, _ = folder
    paths = sorted(where.glob("*.h5"))
    by_glob = h5recorder.dataset(str(where / "episode_0[0-2].h5"))
    assert by_glob.paths == paths[:3]
    by_list = h5recorder.dataset(reversed(paths))
    assert by_list.paths == paths[::-1]
    assert by_list.stats["action"]["count"] == h5recorder.dataset(where).stats["action"]["count"]
    with pytest.raises(FileNotFoundError, match="no episode files"):
        h5recorder.dataset(str(where / "nothing_*.h5"))


def test_a_different_schema_is_named(folder, tmp_path):
    where, _ = folder
    for path in sorted(where.glob("*.h5"))[:2]:
        shutil.copy(path, tmp_path / path.name)
    record_episode(tmp_path, "episode_01b", 30, seed=7, compression=None)  # same schema
    odd = tmp_path / "odd"
    odd.mkdir()
    # a vector of another length: a different rig
    for name in ("episode_02", "episode_03"):
        with Recorder(name, out_dir=str(odd), action_space=spaces.Box(-1, 1, (6,))) as rec:
            rec.record(action=np.zeros(6, np.float32))
        shutil.move(odd / f"{name}.h5", tmp_path / f"{name}.h5")
    with pytest.raises(SchemaError) as error:
        h5recorder.dataset(tmp_path)
    message = str(error.value)
    assert "episode_02.h5" in message and "episode_03" not in message
    assert "it lacks 'observation/" in message


def test_a_killed_episode_is_listed_and_left_out_of_the_statistics(folder, tmp_path):
    where, _ = folder
    for path in sorted(where.glob("*.h5"))[:2]:
        shutil.copy(path, tmp_path / path.name)
    killed, _ = killed_episode(tmp_path)
    data = h5recorder.dataset(tmp_path)
    episode = data.episodes[-1]
    assert episode.path == killed and not episode.closed and not episode.ok
    assert episode.steps > 0 and "no statistics" in episode.problems[0]
    with h5recorder.open(killed) as opened:  # one Health: the reader's and dataset()'s agree
        assert opened.health == episode.health and episode.closed is False
    assert data.episodes[0].closed is True and data.episodes[0].health.statistics
    assert data.steps == LENGTHS[0] + LENGTHS[1] + episode.steps
    assert data.stats["action"]["count"] == LENGTHS[0] + LENGTHS[1]


def test_stats_command_prints_and_writes_json(folder, tmp_path):
    where, values = folder
    out = tmp_path / "stats.json"
    result = subprocess.run(
        [sys.executable, "-m", "h5recorder._tools.cli", "stats", str(where), "--json", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{len(LENGTHS)} episodes, {sum(LENGTHS):,} steps" in result.stdout
    assert "observation/joints" in result.stdout
    written = json.loads(out.read_text())
    assert written["steps"] == sum(LENGTHS)
    joints = concatenated(values, "observation/joints").astype(np.float64)
    np.testing.assert_allclose(written["stats"]["observation/joints"]["mean"], joints.mean(axis=0),
                               rtol=1e-9)  # fmt: skip
    assert len(written["health"]) == len(LENGTHS) and all(e["ok"] for e in written["health"])


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (spaces.Box(-1, 1, (4,), np.float32), "(4,) and dtype float32, not a Box of shape (4,)"),
        (spaces.Box(-1, 1, (5,), np.float64), "(5,) and dtype float64, not a Box of shape (4,)"),
    ],
    ids=["dtype", "shape"],
)
def test_episodes_whose_leaf_differs_in_dtype_or_shape_are_refused(tmp_path, changed, expected):
    # same keys everywhere: only the leaf's dtype or shape tells the rigs apart
    record_episode(tmp_path, "episode_00", 40, seed=1)
    values = np.tanh(np.random.default_rng(5).normal(0, 0.6, (40, changed.shape[0])))
    with Recorder(
        "episode_01",
        out_dir=str(tmp_path),
        observation_space=observation_space(),
        action_space=changed,
        image_keys_to_save=[],
    ) as recorder:
        steps = episode_values(40, seed=2)
        for i in range(40):
            recorder.record(
                observation={
                    "image": steps["observation/image"][i],
                    "joints": steps["observation/joints"][i],
                    "gripper": int(steps["observation/gripper"][i]),
                    "instruction": steps["observation/instruction"][i],
                },
                action=values[i].astype(changed.dtype),
            )
    with pytest.raises(SchemaError) as error:
        h5recorder.dataset(tmp_path)
    message = str(error.value)
    assert "episode_01.h5" in message and "'action'" in message, message
    assert expected in message, message


def test_stats_never_writes_through_a_symlink_planted_at_its_output(folder, tmp_path):
    """The default output, ``SOURCE/stats.json``, lies in a folder others may write to."""
    from h5recorder._tools.cli import main

    where, _ = folder
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(sorted(where.glob("*.h5"))[0], source)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (source / "stats.json").symlink_to(victim)
    assert main(["stats", str(source)]) == 0
    assert victim.read_text() == "keep me"
    assert not (source / "stats.json").is_symlink()
    assert json.loads((source / "stats.json").read_text())["steps"] == LENGTHS[0]
    assert sorted(p.name for p in source.iterdir()) == [sorted(where.glob("*.h5"))[0].name,
                                                         "stats.json"]
