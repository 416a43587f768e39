"""The h5recorder command: demo and recover, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import h5py


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "h5recorder._tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout


def test_demo_records_and_prints_its_figures(tmp_path):
    out = run(
        "demo",
        "--workload",
        "rig",
        "--cameras",
        "1",
        "--seconds",
        "0.5",
        "--rate",
        "20",
        "--out-dir",
        str(tmp_path),
    )
    for label in ("end to end", "record()", "PNG frames", "written to"):
        assert label in out, out
    with h5py.File(tmp_path / "demo_rig.h5", "r") as file:
        size = int(file.attrs["size"])
        assert 5 <= size <= 11
        assert file["observation/camera_0"].shape == (size, 480, 640, 3)
    assert (
        len(list((tmp_path / "demo_rig_frames" / "observation" / "camera_0").glob("*.png"))) == size
    )
    assert f"{size * 2} written" in out


def test_demo_says_early_when_the_encoders_fall_behind(tmp_path):
    # flat out, the rig's four frames a step come far faster than the encoders write them
    # (2 s: on a loaded 2-core machine, 0.8 s gave too few steps to fall a second behind)
    out = run(
        "demo", "--cameras", "3", "--seconds", "2", "--rate", "0", "--out-dir", str(tmp_path)
    ).splitlines()
    early = [i for i, line in enumerate(out) if "encoders behind" in line]
    assert early, out
    summary = next(i for i, line in enumerate(out) if line.strip().startswith("steps"))
    assert early[0] < summary, "said while recording, not at close()"
    assert "frames pending" in out[early[0]] and "close() ~" in out[early[0]]


def test_recover_reports_a_clean_file_unchanged(tmp_path):
    run(
        "demo",
        "--workload",
        "proprio",
        "--seconds",
        "0.2",
        "--no-frames",
        "--out-dir",
        str(tmp_path),
    )
    with h5py.File(tmp_path / "demo_proprio.h5", "r") as file:
        size = int(file.attrs["size"])
    out = run("recover", str(tmp_path / "demo_proprio.h5"))
    assert f"{size} steps readable" in out and "trimmed" not in out
    bad = subprocess.run(
        [sys.executable, "-m", "h5recorder._tools.cli", "recover", str(tmp_path / "missing.h5")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "cannot open" in bad.stderr
