"""Readers that never import hdf5plugin read a default (blosc2) recording of this environment."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from gymnasium import spaces

from h5recorder import Recorder
from h5recorder._tools.plugin_path import PTH_NAME, pth_line

SPACE = spaces.Dict(
    {
        "image": spaces.Box(0, 255, (48, 64, 3), np.uint8),
        "depth": spaces.Box(0, 65535, (48, 64), np.uint16),
        "joints": spaces.Box(-1, 1, (7,), np.float32),
        "step": spaces.Box(0, 10**9, (), np.int64),
        "mode": spaces.Discrete(4),
        "instruction": spaces.Text(30),
    }
)

_READ_SCRIPT = textwrap.dedent("""
    import pickle, sys
    import h5py
    values = {}
    with h5py.File(sys.argv[1], "r") as file:
        size = int(file.attrs["size"])
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                values[name] = obj[:size]
        file.visititems(visit)
    loaded = sorted(m for m in ("h5recorder", "hdf5plugin") if m in sys.modules)
    with open(sys.argv[2], "wb") as out:
        pickle.dump({"size": size, "values": values, "loaded": loaded}, out)
""")


def _fresh_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "HDF5_PLUGIN_PATH"}
    env["PYTHONPATH"] = ""
    return env


def test_plain_h5py_in_a_fresh_process_reads_every_value_of_a_default_recording(
    tmp_path: Path, frames: np.ndarray
) -> None:
    steps = []
    for index in range(300):
        frame = frames[index % len(frames)]
        steps.append(
            {
                "image": frame,
                "depth": frame[:, :, 0].astype(np.uint16) * 40 + index,
                "joints": np.float32(np.sin(np.arange(7) + index / 10)),
                "step": index,
                "mode": index % 4,
                "instruction": f"step {index}",
            }
        )
    with Recorder("fresh", out_dir=str(tmp_path), observation_space=SPACE) as recorder:
        for step in steps:
            recorder.record(observation=step)
    with h5py.File(recorder.filename, "r") as file:  # blosc2 chunks, not only raw ones
        compressed = [
            name
            for name in ("depth", "joints", "step", "mode")
            if file[f"observation/{name}"].id.get_chunk_info(0).filter_mask == 0
        ]
        assert compressed, "no dataset holds a blosc2-compressed chunk"

    out = tmp_path / "read.pickle"
    done = subprocess.run(
        [sys.executable, "-c", _READ_SCRIPT, str(recorder.filename), str(out)],
        env=_fresh_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = pickle.loads(out.read_bytes())
    # the reader's code imports only h5py; this environment's hook imported hdf5plugin after it
    assert result["loaded"] == ["hdf5plugin"]
    assert result["size"] == len(steps)
    values = result["values"]
    for key in ("image", "depth", "joints", "step", "mode"):
        np.testing.assert_array_equal(
            values[f"observation/{key}"], np.stack([np.asarray(s[key]) for s in steps]), key
        )
    assert [text.decode() for text in values["observation/instruction"]] == [
        s["instruction"] for s in steps
    ]


_WRITE_SCRIPT = textwrap.dedent("""
    import sys
    import h5py, hdf5plugin, numpy as np
    with h5py.File(sys.argv[1], "w") as file:
        data = np.arange(4096, dtype=np.int64) % 7
        file.create_dataset("x", data=data, chunks=(1024,), **hdf5plugin.Blosc2(cname="zstd"))
    with h5py.File(sys.argv[1], "r") as file:
        assert (file["x"][:] == data).all()
""")


def test_the_environment_hook_leaves_writers_through_hdf5plugin_working(tmp_path: Path) -> None:
    """Another program of the environment that writes blosc2 through hdf5plugin still works
    (an HDF5_PLUGIN_PATH set for every process broke exactly this)."""
    import hdf5plugin

    # installed by pip with the package (see setup.py), not by a recorder
    assert (Path(hdf5plugin.__file__).resolve().parent.parent / PTH_NAME).read_text() == (
        pth_line()
    )
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_SCRIPT, str(tmp_path / "other.h5")], env=_fresh_env(),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


ROOT = Path(__file__).resolve().parent.parent


def _files_under(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()  # pip removes a site-packages it leaves empty
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


# the wheel is what users install; an editable install (what the README's commands make, so
# every default run reads through its hook) is checked under -m slow
@pytest.mark.parametrize("editable", [
    pytest.param(False, id="wheel"), pytest.param(True, id="editable", marks=pytest.mark.slow),
])
def test_pip_installs_the_hook_with_the_package_and_uninstall_removes_every_file(
    tmp_path: Path, editable: bool
) -> None:
    """The .pth file comes with the package, in RECORD, so pip uninstall takes it away too."""
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside it
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    environment = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    python = environment / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )
    before = _files_under(site)
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    target = ["-e", str(source)] if editable else [str(source)]
    installed = subprocess.run(
        [*pip, "install", "--no-deps", *target], capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert (site / PTH_NAME).read_text() == pth_line()
    records = list(site.glob("h5recorder-*.dist-info/RECORD"))
    assert len(records) == 1 and f"{PTH_NAME}," in records[0].read_text()
    removed = subprocess.run(
        [*pip, "uninstall", "-y", "h5recorder"], capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert _files_under(site) == before
