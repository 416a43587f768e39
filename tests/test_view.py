"""``h5recorder view``: the saved Rerun recording, read back, holds every frame and every
scalar (``tox -e view``, which installs rerun-sdk); without the extra, a clear error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

import h5recorder
from h5recorder import Recorder
from h5recorder.workloads import depth_frames, photo_frames

STEPS = 300


@pytest.fixture
def episode_file(tmp_path) -> tuple[Path, list[dict[str, Any]]]:
    rgb = photo_frames(16, 24, 32, seed=8)
    depth = depth_frames(16, 24, 32, seed=9)
    rng = np.random.default_rng(4)
    space = spaces.Dict({
        "image": spaces.Box(0, 255, (24, 32, 3), np.uint8),
        "depth": spaces.Box(0, 65535, (24, 32), np.uint16),
        "joints": spaces.Box(-4, 4, (6,), np.float32),
        "grip": spaces.Discrete(3),
        "note": spaces.Text(20),
        "cloud": spaces.Box(-1, 1, (100, 3), np.float32),
    })
    steps = [{"image": rgb[i % 16], "depth": depth[i % 16],
              "joints": rng.uniform(-4, 4, 6).astype(np.float32), "grip": i % 3,
              "note": f"n{i}", "cloud": rng.uniform(-1, 1, (100, 3)).astype(np.float32)}
             for i in range(STEPS)]
    with Recorder("view", out_dir=str(tmp_path), observation_space=space,
                  image_keys_to_save=[], chunk_bytes=64 << 10) as recorder:
        for step in steps:
            recorder.record(step)
    return recorder.filename, steps


def run_cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(f"""
        import sys
        {prelude}
        from h5recorder._tools.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=300)


def test_without_the_extra_the_error_names_it(episode_file, tmp_path):
    path, _ = episode_file
    result = run_cli("view", str(path), "--save", str(tmp_path / "out.rrd"),
                     prelude="sys.modules['rerun'] = None  # as if rerun-sdk were not installed")
    assert result.returncode == 2
    assert "pip install 'h5recorder[view]'" in result.stderr
    assert not (tmp_path / "out.rrd").exists()


def _read_rrd(path: Path) -> dict[str, dict[str, dict[int, Any]]]:
    """entity -> component -> step -> value, from the saved recording."""
    import pyarrow as pa
    from rerun.chunk import RrdReader

    found: dict[str, dict[str, dict[int, Any]]] = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        names = batch.schema.names
        entity = found.setdefault(chunk.entity_path.lstrip("/"), {})
        if "step" not in names:
            for name in names:
                entity.setdefault(name, {})[-1] = batch.column(name).to_pylist()[0]
            continue
        steps = batch.column("step").to_pylist()
        for name in names:
            if name in ("rerun.controls.RowId", "step"):
                continue
            column = batch.column(name)
            if pa.types.is_timestamp(column.type):  # nanoseconds, as int64
                column = column.cast(pa.int64())
            for step, value in zip(steps, column.to_pylist(), strict=True):
                entity.setdefault(name, {})[step] = value
    return found


@pytest.mark.parametrize("how", ["command", "function, batches of 64 steps"])
def test_the_saved_recording_holds_every_frame_and_scalar(episode_file, tmp_path, how):
    pytest.importorskip("rerun", reason="rerun-sdk is the 'view' extra: tox -e view")
    from h5recorder._tools.view import view

    path, steps = episode_file
    out = tmp_path / "episode.rrd"
    if how == "command":
        result = run_cli("view", str(path), "--save", str(out))
        assert result.returncode == 0, result.stderr
        assert "observation/cloud" in result.stderr  # 300 elements a step: listed as not shown
    else:
        kinds = view(path, save=out, batch_size=64)
        assert kinds["observation/cloud"] is None and kinds["observation/depth"] == "depth"
    found = _read_rrd(out)
    with h5recorder.open(path) as episode:
        assert episode.time is not None
        wall = np.asarray(episode.time.wall_ns)
    image = found["observation/image"]
    assert sorted(image["Image:buffer"]) == list(range(STEPS))
    for index in range(STEPS):
        got = np.asarray(image["Image:buffer"][index][0], np.uint8).reshape(24, 32, 3)
        np.testing.assert_array_equal(got, steps[index]["image"], err_msg=f"image {index}")
        depth = np.asarray(found["observation/depth"]["DepthImage:buffer"][index][0], np.uint8)
        np.testing.assert_array_equal(depth.view(np.uint16).reshape(24, 32),
                                      steps[index]["depth"], err_msg=f"depth {index}")
        np.testing.assert_array_equal(found["observation/joints"]["Scalars:scalars"][index],
                                      steps[index]["joints"].astype(np.float64))
        assert found["observation/grip"]["Scalars:scalars"][index] == [steps[index]["grip"]]
        assert found["observation/note"]["TextLog:text"][index] == [steps[index]["note"]]
    times = found["observation/joints"]["time"]
    np.testing.assert_array_equal([times[index] for index in range(STEPS)], wall)
    fmt = found["observation/image"]["Image:format"][-1][0]
    assert fmt["width"] == 32 and fmt["height"] == 24
    assert found["observation/depth"]["DepthImage:meter"][-1] == [1000.0]
    assert "observation/cloud" not in found
