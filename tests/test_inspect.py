"""``h5recorder inspect``: what it prints, its JSON, and ``--check`` on healthy and unhealthy
recordings (a crash not recovered, drops, missing frames), run as the command users run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder._tools.inspect import render
from h5recorder.workloads import photo_frames
from tests.test_read import kill_crash_child


def inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h5recorder._tools.cli", "inspect", *args],
        capture_output=True, text=True, timeout=120,
    )


def inspect_json(path: Path) -> dict[str, Any]:
    result = inspect("--json", str(path))
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


@pytest.fixture
def clean_file(tmp_path) -> Path:
    frames = photo_frames(8, 48, 64, seed=4)
    space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                         "joints": spaces.Box(-4, 4, (6,), np.float32),
                         "note": spaces.Text(20)})
    rng = np.random.default_rng(3)
    with Recorder("clean", out_dir=str(tmp_path), observation_space=space,
                  action_space=spaces.Discrete(4)) as recorder:
        for i in range(120):
            recorder.record({"image": frames[i % 8], "note": f"step {i}",
                             "joints": rng.uniform(-4, 4, 6).astype(np.float32)}, i % 4)
            time.sleep(0.001)
    return recorder.filename


def test_a_clean_recording_passes_check_and_says_what_it_holds(clean_file):
    result = inspect("--check", str(clean_file))
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "closed cleanly" in text and "health        healthy" in text
    assert "steps         120 in " in text and "steps/s" in text
    assert "observation/image: 120 written, 0 missing" in text
    assert "observation/image" in text and "48x64x3 uint8" in text
    summary = inspect_json(clean_file)
    assert summary["steps"] == 120 and summary["healthy"] and summary["closed_cleanly"]
    timing = summary["timing"]
    assert timing["source"] == "each step's time"
    # every step slept 1 ms after record(): no interval is shorter, none absurdly long
    assert 1000 <= timing["interval_p50_us"] < 50_000
    assert 100 < timing["steps_per_s"] < 1000
    image = summary["leaves"]["observation/image"]
    assert image["shape"] == [48, 64, 3] and image["dtype"] == "uint8"
    assert image["bytes_raw"] == 120 * 48 * 64 * 3
    assert 0 < image["bytes_on_disk"] and image["ratio"] == pytest.approx(
        image["bytes_raw"] / image["bytes_on_disk"], rel=1e-3
    )
    assert image["stats"]["count"] == 120 and len(image["stats"]["mean"]) == 3
    assert summary["leaves"]["action"]["space"] == "Discrete 0..3"
    assert summary["leaves"]["action"]["stats"]["value_counts"] == [30, 30, 30, 30]
    assert summary["frames"]["observation/image"] == {
        "folder": str(clean_file.with_name("clean_frames")), "written": 120, "missing": 0
    }


def test_check_fails_on_a_crashed_file_until_and_after_recover(tmp_path):
    path = kill_crash_child(tmp_path, 0.2)
    result = inspect("--check", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT closed cleanly" in result.stdout and "UNHEALTHY" in result.stdout
    assert "recover" in result.stdout
    mended = subprocess.run([sys.executable, "-m", "h5recorder._tools.cli", "recover", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert mended.returncode == 0, mended.stderr
    result = inspect("--check", "--json", str(path))
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["closed_cleanly"] is False
    assert any("mended" in problem for problem in summary["problems"]), summary["problems"]
    assert not any("past size" in problem for problem in summary["problems"])


def test_check_fails_when_steps_were_dropped(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.random((8, 4096))
    space = spaces.Dict({"x": spaces.Box(-np.inf, np.inf, (4096,), np.float64)})
    with Recorder("drops", out_dir=str(tmp_path), observation_space=space, on_full="drop",
                  buffer_bytes=1 << 16, compression="gzip", compression_level=9) as recorder:
        for i in range(400):
            recorder.record({"x": rows[i % 8]})
    assert recorder.status().drops > 0, "a ring of 16 slots behind gzip 9 should drop steps"
    result = inspect("--check", str(recorder.filename))
    assert result.returncode == 1
    assert f"{recorder.status().drops} steps were dropped" in result.stdout


def test_check_fails_when_frames_are_missing(tmp_path):
    frames = photo_frames(8, 240, 320)
    space = spaces.Dict({"image": spaces.Box(0, 255, (240, 320, 3), np.uint8)})
    with Recorder("behind", out_dir=str(tmp_path), observation_space=space,
                  frames="best-effort", frame_workers=1,
                  buffer_bytes=24 * 240 * 320 * 3) as recorder:
        for i in range(200):
            recorder.record({"image": frames[i % 8]})
    missing = len(recorder.missing_frames)
    assert missing > 0, "the encoders should have fallen behind"
    result = inspect("--check", str(recorder.filename))
    assert result.returncode == 1
    assert f"{missing} PNG frames are missing" in result.stdout
    assert f"observation/image: {200 - missing} written, {missing} missing" in result.stdout


def test_a_frame_deleted_after_recording_counts_as_missing(clean_file):
    (clean_file.with_name("clean_frames") / "57.png").unlink()
    result = inspect("--check", str(clean_file))
    assert result.returncode == 1
    assert "1 PNG frames are missing" in result.stdout and "57.png" in result.stdout


def test_files_it_cannot_read_exit_2_and_the_others_are_still_shown(tmp_path, clean_file):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"\x00" * 4096)
    result = inspect("--check", str(bogus), str(clean_file))
    assert result.returncode == 2
    assert "bogus.h5: it is not an HDF5 file" in result.stderr
    assert "closed cleanly" in result.stdout


ONE_STEP_THEN_KILLED = """
import os, sys
import numpy as np
from gymnasium import spaces
from h5recorder import Recorder
space = spaces.Dict({"x": spaces.Box(-1, 1, (3,), np.float32)})
recorder = Recorder("short", out_dir=sys.argv[1], observation_space=space)
recorder.record({"x": np.float32([0.25, -0.5, 1.0])})
recorder.flush()
os.kill(os.getpid(), 9)
"""


def test_inspect_reads_a_file_killed_after_one_step(tmp_path):
    # one step has no interval: the recorder's counters hold no percentiles to print
    subprocess.run([sys.executable, "-c", ONE_STEP_THEN_KILLED, str(tmp_path)], timeout=120)
    path = tmp_path / "short.h5"
    result = inspect("--check", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "steps         1" in result.stdout and "NOT closed cleanly" in result.stdout
    summary = json.loads(inspect("--check", "--json", str(path)).stdout)
    assert summary["steps"] == 1 and summary["timing"]["interval_p50_us"] is None


def test_inspect_names_each_leafs_filters_and_what_a_reader_without_plugins_opens(
    clean_file, tmp_path
):
    summary = inspect_json(clean_file)
    leaves = summary["leaves"]
    assert leaves["observation/image"]["filters"] == ["blosc2"]
    assert not leaves["observation/image"]["any_reader"]
    assert leaves["observation/joints"]["filters"] == ["shuffle", "deflate"]
    assert leaves["action"]["filters"] == ["shuffle", "deflate"]
    assert leaves["observation/note"]["filters"] == []
    assert all(leaf["any_reader"] for name, leaf in leaves.items() if name != "observation/image")
    text = render(summary)  # what the command prints, from the summary it printed as JSON
    assert "3 of 4 leaves open without hdf5plugin" in text and "observation/image (blosc2)" in text
    space = spaces.Dict({"image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
                         "joints": spaces.Box(-4, 4, (6,), np.float32)})
    frames = photo_frames(4, 48, 64, seed=5)
    with Recorder("portable", out_dir=str(tmp_path), observation_space=space,
                  compression="portable", image_keys_to_save=[]) as recorder:
        for i in range(40):
            recorder.record({"image": frames[i % 4], "joints": np.full(6, i / 10, np.float32)})
    portable = inspect_json(recorder.filename)
    assert portable["leaves"]["observation/image"]["filters"] == ["deflate"]  # bytes: no shuffle
    assert portable["leaves"]["observation/joints"]["filters"] == ["shuffle", "deflate"]
    assert "every leaf opens without hdf5plugin" in render(portable)
