"""The PNG stage: real worker processes, real shared memory, real files decoded with Pillow."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from h5recorder._write.frames import (
    FrameError,
    FrameJob,
    FramePool,
    FrameSource,
    check_image,
    choose_encoders,
    default_workers,
    encode_png,
    frame_dirs,
    frame_path,
)
from h5recorder._write.ring import SHM_DIR, SHM_PREFIX, SharedColumn
from h5recorder.errors import SchemaError
from h5recorder.workloads import depth_frames, photo_frames

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs POSIX shared memory")

# the pool runs with the encoders chosen for speed (fpng, isal) and with the one that always
# installs; every encoder also writes every kind in this process (test_every_encoder_...)
ENCODERS = ["auto", "pillow"]


def real_frames(kind: str, count: int, height: int = 72, width: int = 96) -> np.ndarray[Any, Any]:
    """``count`` frames cut from real photographs, with noise, of one PNG kind."""
    if kind == "rgb":
        return photo_frames(count, height, width)
    if kind == "rgba":
        return photo_frames(count, height, width, channels=4)
    if kind == "gray":
        return photo_frames(count, height, width, channels=1)
    if kind == "gray1":
        return photo_frames(count, height, width, channels=1)[..., None]
    if kind == "depth":
        return depth_frames(count, height, width)
    raise ValueError(kind)


def decoded(path: str | Path) -> np.ndarray[Any, Any]:
    with Image.open(path) as image:
        return np.asarray(image)


def assert_same(path: str | Path, frame: np.ndarray[Any, Any]) -> None:
    back = decoded(path)
    expected = frame[..., 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame
    assert back.dtype == expected.dtype, path
    assert back.shape == expected.shape, path
    np.testing.assert_array_equal(back, expected, err_msg=str(path))


class Column:
    """A ring column in shared memory, as the recorder makes it, filled with ``frames``."""

    count = 0

    def __init__(self, frames: np.ndarray[Any, Any]) -> None:
        Column.count += 1
        name = f"{SHM_PREFIX}{os.getpid()}_test{Column.count}_0"
        self.shared = SharedColumn(name, frames.shape, frames.dtype)
        self.shared.array[:] = frames
        self.source = FrameSource.of(self.shared)

    def close(self) -> None:
        self.shared.close()


@pytest.fixture
def column() -> Iterator[Any]:
    made: list[Column] = []

    def make(frames: np.ndarray[Any, Any]) -> Column:
        made.append(Column(frames))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture(scope="module", params=ENCODERS)
def pool(request: pytest.FixtureRequest) -> Iterator[FramePool]:
    """One pool shared by the tests of this module that only need a working pool."""
    with FramePool(workers=2, encoder=request.param) as shared:
        yield shared
    assert shared.pids == []


_next_step = itertools.count()


@pytest.fixture
def steps() -> Any:
    """Step numbers that keep growing across the tests that share one pool."""

    def take(count: int) -> range:
        first = next(_next_step)
        for _ in range(count - 1):
            next(_next_step)
        return range(first, first + count)

    return take


def run(pool: FramePool, jobs: list[FrameJob], timeout: float = 20.0) -> None:
    pool.submit(jobs)
    assert pool.wait(below=jobs[-1].step + 1, timeout=timeout), "frames not written in time"
    pool.check()


# ---- every kind of frame comes back exactly ------------------------------------------------


@pytest.mark.parametrize("kind", ["rgb", "rgba", "gray", "gray1", "depth"])
def test_frames_decode_to_the_same_array(pool: FramePool, column: Any, steps: Any,
                                         tmp_path: Path, kind: str) -> None:
    frames = real_frames(kind, 12)
    col = column(frames)
    numbers = steps(len(frames))
    jobs = [FrameJob(step, col.source, slot, frame_path(tmp_path, step))
            for slot, step in enumerate(numbers)]
    run(pool, jobs)
    for job, frame in zip(jobs, frames, strict=True):
        assert_same(job.path, frame)
    assert pool.done_below > numbers[-1]
    assert not list(tmp_path.glob("*.part"))


def test_depth_is_a_16_bit_png(pool: FramePool, column: Any, steps: Any,
                               tmp_path: Path) -> None:
    frames = real_frames("depth", 2)
    frames[0, 0, 0] = 65535  # the whole range survives, not just the photographs' part
    frames[0, 0, 1] = 0
    col = column(frames)
    step = steps(1)[0]
    run(pool, [FrameJob(step, col.source, 0, frame_path(tmp_path, step))])
    with Image.open(frame_path(tmp_path, step)) as image:
        assert image.mode == "I;16"
    assert_same(frame_path(tmp_path, step), frames[0])


def decoded_by_imagecodecs(path: str | Path) -> np.ndarray[Any, Any]:
    """A second decoder (libpng), besides Pillow's own."""
    return np.asarray(imagecodecs.png_decode(Path(path).read_bytes()))


@pytest.mark.parametrize("encoder", ["fpng", "isal", "imagecodecs", "pillow"])
@pytest.mark.parametrize("kind", ["rgb", "rgba", "gray", "gray1", "depth"])
def test_every_encoder_writes_pngs_two_decoders_read_exactly(tmp_path: Path, kind: str,
                                                             encoder: str) -> None:
    # odd sizes, one-row and one-column frames: row filters and chunk lengths at their edges
    for height, width in [(72, 96), (37, 53), (1, 61), (45, 1)]:
        frames = real_frames(kind, 2, height, width) if min(height, width) > 8 else (
            real_frames(kind, 2)[:, :height, :width])
        if kind == "depth":
            frames[0, 0, 0], frames[1, -1, -1] = 65535, 0  # the whole 16-bit range survives
        for i, frame in enumerate(frames):
            path = tmp_path / f"{kind}_{height}x{width}_{i}.png"
            size = encode_png(frame, path, encoder=encoder)
            assert size == path.stat().st_size
            assert_same(path, frame)
            expected = frame[..., 0] if kind == "gray1" else frame
            np.testing.assert_array_equal(decoded_by_imagecodecs(path), expected)
            with Image.open(path) as image:
                image.verify()  # chunk checksums and structure, as a strict reader checks them


@pytest.mark.parametrize("level", [0, 1, 4, 9])
def test_compress_levels_write_exact_pngs(tmp_path: Path, level: int) -> None:
    frames = {"rgb": real_frames("rgb", 1)[0], "depth": real_frames("depth", 1)[0]}
    for kind, frame in frames.items():
        path = tmp_path / f"{kind}.png"
        size = encode_png(frame, path, compress_level=level)
        assert_same(path, frame)
        if level == 0:  # stored: the raw rows and one filter byte per row, a little more
            assert size > frame.nbytes
        else:
            assert size < frame.nbytes


def test_the_fastest_installed_encoder_is_chosen_per_kind() -> None:
    assert choose_encoders() == {"RGB": "fpng", "RGBA": "isal", "L": "isal", "I;16": "isal"}
    # fpng has one setting: other levels go to the next encoder
    assert choose_encoders(compress_level=6)["RGB"] == "isal"
    # a named encoder writes the kinds it can, the others go to the fastest
    assert choose_encoders("fpng") == choose_encoders()
    assert set(choose_encoders("pillow").values()) == {"pillow"}


def test_without_fpng_and_isal_the_fallbacks_write_exact_pngs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "fpng", None)  # as if not installed: imports fail
    monkeypatch.setitem(sys.modules, "isal", None)
    assert set(choose_encoders().values()) == {"imagecodecs"}
    with pytest.raises(ValueError, match="needs the fpng package"):
        choose_encoders("fpng")
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    assert set(choose_encoders().values()) == {"pillow"}
    for kind in ["rgb", "depth"]:
        frame = real_frames(kind, 1)[0]
        encode_png(frame, tmp_path / f"{kind}.png")
        assert_same(tmp_path / f"{kind}.png", frame)


# ---- naming ---------------------------------------------------------------------------------


def test_one_key_writes_into_the_frames_folder(pool: FramePool, column: Any, steps: Any,
                                               tmp_path: Path) -> None:
    frames_dir = tmp_path / "demo_frames"
    folders = frame_dirs(frames_dir, ["observation/image"])
    assert folders == {"observation/image": frames_dir}
    assert frames_dir.is_dir()
    frames = real_frames("rgb", 3)
    col = column(frames)
    first = steps(3)[0]
    jobs = [FrameJob(first + i, col.source, i, frame_path(frames_dir, i)) for i in range(3)]
    run(pool, jobs)
    assert sorted(p.name for p in frames_dir.iterdir()) == ["0.png", "1.png", "2.png"]
    for i in range(3):
        assert_same(frames_dir / f"{i}.png", frames[i])


def test_several_keys_write_one_folder_each(pool: FramePool, column: Any, steps: Any,
                                            tmp_path: Path) -> None:
    frames_dir = tmp_path / "demo_frames"
    names = ["observation/image", "observation/wrist/depth"]
    folders = frame_dirs(frames_dir, names)
    assert folders == {name: frames_dir.joinpath(*name.split("/")) for name in names}
    images, depths = real_frames("rgb", 4), real_frames("depth", 4)
    image_col, depth_col = column(images), column(depths)
    numbers = steps(4)
    jobs = []
    for index, step in enumerate(numbers):  # the recorder's index counts from 0 per file
        jobs.append(FrameJob(step, image_col.source, index,
                             frame_path(folders["observation/image"], index)))
        jobs.append(FrameJob(step, depth_col.source, index,
                             frame_path(folders["observation/wrist/depth"], index)))
    run(pool, jobs)
    for index in range(4):
        assert_same(frames_dir / "observation" / "image" / f"{index}.png", images[index])
        assert_same(frames_dir / "observation" / "wrist" / "depth" / f"{index}.png",
                    depths[index])


@pytest.mark.parametrize("name", ["", "a//b", "../up", "a/./b"])
def test_frame_folders_stay_inside(tmp_path: Path, name: str) -> None:
    with pytest.raises(SchemaError, match="folder"):
        frame_dirs(tmp_path, ["ok", name])


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "dtype", "mode"), [
    ((224, 224, 3), np.uint8, "RGB"),
    ((480, 640, 4), np.uint8, "RGBA"),
    ((480, 640), np.uint8, "L"),
    ((480, 640, 1), np.uint8, "L"),
    ((480, 640), np.uint16, "I;16"),
    ((480, 640), ">u2", "I;16"),
])
def test_accepted_images(shape: tuple[int, ...], dtype: Any, mode: str) -> None:
    assert check_image("observation/image", shape, dtype) == mode


@pytest.mark.parametrize(("shape", "dtype"), [
    ((224, 224, 3), np.float32),
    ((224, 224), np.float64),
    ((224, 224, 2), np.uint8),
    ((224, 224, 3), np.uint16),
    ((224, 224), np.int16),
    ((224,), np.uint8),
    ((2, 224, 224, 3), np.uint8),
    ((0, 224, 3), np.uint8),
])
def test_other_images_are_refused(shape: tuple[int, ...], dtype: Any) -> None:
    with pytest.raises(SchemaError) as caught:
        check_image("observation/image", shape, dtype)
    message = str(caught.value)
    assert message.startswith("observation/image: cannot save as PNG")
    assert np.dtype(dtype).name in message
    assert "HxWx3 uint8" in message


def test_float_image_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"camera: cannot save as PNG: expected .* got "
                                         r"224x224x3 float32"):
        check_image("camera", (224, 224, 3), np.float32)
    with pytest.raises(SchemaError, match="float32"):
        encode_png(np.zeros((8, 8, 3), np.float32), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_float_column_is_refused_at_submit(pool: FramePool, column: Any, steps: Any,
                                           tmp_path: Path) -> None:
    col = column(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(SchemaError, match="float32"):
        pool.submit([FrameJob(steps(1)[0], col.source, 0, frame_path(tmp_path, 0))])


def test_pool_options_are_checked() -> None:
    with pytest.raises(ValueError, match="workers"):
        FramePool(workers=0)
    with pytest.raises(ValueError, match="compress_level"):
        FramePool(workers=1, compress_level=10)
    with pytest.raises(ValueError, match="encoder"):
        FramePool(workers=1, encoder="qoi")


def test_default_workers_leave_a_core_to_the_caller() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == max(1, cores - 1)


# ---- bookkeeping ----------------------------------------------------------------------------


def test_done_below_only_grows_and_steps_must_not_go_down(column: Any, tmp_path: Path) -> None:
    frames = real_frames("rgb", 6)
    col = column(frames)
    with FramePool(workers=1) as pool:
        assert pool.done_below == 0
        seen = []
        pool.submit([FrameJob(10 + i, col.source, i, frame_path(tmp_path, i)) for i in range(6)])
        while pool.pending:
            seen.append(pool.done_below)
            time.sleep(0.005)
        assert pool.wait(timeout=10)
        seen.append(pool.done_below)
        assert seen == sorted(seen)
        assert seen[-1] == 16
        with pytest.raises(ValueError, match="must not go down"):
            pool.submit([FrameJob(3, col.source, 0, frame_path(tmp_path, 0))])
        pool.advance(40)  # steps 16-39 have no frame
        assert pool.done_below == 40
        assert pool.counters.written == 6
        pool.check()


def test_withdrawn_jobs_are_handed_back_and_release_their_steps(column: Any,
                                                                  tmp_path: Path) -> None:
    frames = real_frames("rgb", 24, 224, 224)
    col = column(frames)
    with FramePool(workers=1, batch_size=2) as pool:
        pool.submit([FrameJob(i, col.source, i, frame_path(tmp_path, i)) for i in range(24)])
        taken = pool.withdraw(below=18)
        assert taken, "every frame was already with the worker"
        assert [job.step for job in taken] == sorted(job.step for job in taken)
        assert all(job.step < 18 for job in taken)
        assert pool.wait(below=18, timeout=20)
        assert pool.wait(timeout=20)
        written = {int(p.stem) for p in tmp_path.glob("*.png")}
        assert written == set(range(24)) - {job.step for job in taken}
        counters = pool.counters
        assert counters.deferred == len(taken)
        assert counters.written == 24 - len(taken)
        # what the recorder then does: the frames, read back from the file, go in as arrays
        for job in taken:
            pool.encode_from_array(frames[job.slot], job.path)
        assert pool.wait(timeout=20)
        pool.check()
    for i in range(24):
        assert_same(frame_path(tmp_path, i), frames[i])


def test_encode_from_array(pool: FramePool, tmp_path: Path) -> None:
    frames = real_frames("rgba", 3)
    before = pool.counters
    for i, frame in enumerate(frames):
        pool.encode_from_array(frame, frame_path(tmp_path, i))
    frames[:] = 0  # copied at once: the caller may reuse its buffer
    assert pool.wait(timeout=20)
    pool.check()
    expected = real_frames("rgba", 3)
    for i in range(3):
        assert_same(frame_path(tmp_path, i), expected[i])
    assert pool.counters.from_array - before.from_array == 3
    assert not list(SHM_DIR.glob(f"{SHM_PREFIX}{os.getpid()}_png*"))


# ---- faults ---------------------------------------------------------------------------------


def test_killed_worker_loses_no_frame(column: Any, tmp_path: Path) -> None:
    frames = real_frames("rgb", 40, 480, 640)
    col = column(frames)
    with FramePool(workers=2, batch_size=4) as pool:
        pool.submit([FrameJob(i, col.source, i, frame_path(tmp_path, i)) for i in range(40)])
        deadline = time.monotonic() + 10
        while pool.counters.written < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert pool.pending > 8, "too fast to kill a worker in the middle"
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        assert pool.wait(timeout=30)
        pool.check()
        counters = pool.counters
        assert victim not in pool.pids
        assert len(pool.pids) == 2
    assert counters.restarts == 1
    assert counters.retried >= 1
    assert counters.written == 40
    assert counters.failed == 0
    for i in range(40):
        assert_same(frame_path(tmp_path, i), frames[i])
    assert not list(tmp_path.glob("*.part"))


def test_every_worker_killed_again_and_again(column: Any, tmp_path: Path) -> None:
    frames = real_frames("rgb", 24, 480, 640)
    col = column(frames)
    with FramePool(workers=2, batch_size=2, max_attempts=100) as pool:
        pool.submit([FrameJob(i, col.source, i, frame_path(tmp_path, i)) for i in range(24)])
        killed: set[int] = set()
        for _ in range(3):
            time.sleep(0.3)
            for pid in set(pool.pids) - killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        assert pool.wait(timeout=30)
        pool.check()
        deadline = time.monotonic() + 10  # workers killed while idle are replaced too
        while pool.counters.restarts < len(killed) and time.monotonic() < deadline:
            time.sleep(0.01)
        # a worker killed while its replacement was still starting counts once
        assert 4 <= pool.counters.restarts <= len(killed)
        assert not killed & set(pool.pids)
        assert len(pool.pids) == 2
    for i in range(24):
        assert_same(frame_path(tmp_path, i), frames[i])


def test_encoder_error_names_the_frame(pool: FramePool, column: Any, steps: Any,
                                       tmp_path: Path) -> None:
    frames = real_frames("rgb", 3)
    col = column(frames)
    blocked = tmp_path / "not_a_folder"
    blocked.write_bytes(b"a file where the frames folder should be")
    numbers = steps(3)
    bad = frame_path(blocked, 1)
    jobs = [FrameJob(numbers[0], col.source, 0, frame_path(tmp_path, 0)),
            FrameJob(numbers[1], col.source, 1, bad),
            FrameJob(numbers[2], col.source, 2, frame_path(tmp_path, 2))]
    failed_before = pool.counters.failed
    pool.submit(jobs)
    assert pool.wait(below=numbers[-1] + 1, timeout=20)  # a failed frame releases its slot
    with pytest.raises(FrameError) as caught:
        pool.check()
    error = caught.value
    assert error.path == bad
    assert error.step == numbers[1]
    assert bad in str(error)
    assert isinstance(error.__cause__, NotADirectoryError)
    assert isinstance(error, RuntimeError)
    assert pool.counters.failed - failed_before == 1
    pool.check()  # raised once
    assert_same(frame_path(tmp_path, 0), frames[0])  # its neighbours were written
    assert_same(frame_path(tmp_path, 2), frames[2])


def test_missing_segment_is_an_error_not_a_hang(pool: FramePool, steps: Any,
                                                tmp_path: Path) -> None:
    gone = FrameSource(f"{SHM_PREFIX}{os.getpid()}_never_made_0", (4, 8, 8, 3), "|u1")
    step = steps(1)[0]
    pool.submit([FrameJob(step, gone, 0, frame_path(tmp_path, 0))])
    assert pool.wait(below=step + 1, timeout=20)
    with pytest.raises(FrameError, match="never_made") as caught:
        pool.check()
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_workers_that_cannot_start_fail_the_pool(monkeypatch: pytest.MonkeyPatch,
                                                  column: Any, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    col = column(real_frames("rgb", 2))
    with FramePool(workers=1) as pool:
        try:
            pool.submit([FrameJob(0, col.source, 0, frame_path(tmp_path, 0))])
        except FrameError as error:  # the pool gave up before the job came: as good
            assert "cannot start" in str(error)
        else:
            assert pool.wait(timeout=10), "a pool without workers must not hang"
            with pytest.raises(FrameError, match="cannot start"):
                pool.check()
        with pytest.raises(FrameError, match="cannot start"):
            pool.submit([FrameJob(1, col.source, 1, frame_path(tmp_path, 1))])


def test_close_waits_for_every_frame_and_is_idempotent(column: Any, tmp_path: Path) -> None:
    frames = real_frames("gray", 30, 480, 640)
    col = column(frames)
    pool = FramePool(workers=1)
    pids = pool.pids
    pool.submit([FrameJob(i, col.source, i, frame_path(tmp_path, i)) for i in range(30)])
    pool.close()
    pool.close()
    pool.check()
    assert pool.counters.written == 30
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit([FrameJob(30, col.source, 0, frame_path(tmp_path, 30))])
    for i in range(30):
        assert_same(frame_path(tmp_path, i), frames[i])


def test_unguarded_script_is_not_run_again_by_workers(tmp_path: Path) -> None:
    """A script without ``if __name__ == "__main__"`` (as most recorder scripts are)."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "record.py"
    script.write_text(textwrap.dedent(f"""
        import os
        import numpy as np
        from h5recorder._write.frames import FramePool

        with open({str(marker)!r}, "a") as runs:
            runs.write(f"{{os.getpid()}}\\n")
        pool = FramePool(workers=2)
        frame = np.arange(48 * 64 * 3, dtype=np.uint64).astype(np.uint8).reshape(48, 64, 3)
        pool.encode_from_array(frame, {str(tmp_path / "0.png")!r})
        pool.close()
        pool.check()
        print("wrote", pool.counters.written)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote 1"
    assert len(marker.read_text().splitlines()) == 1
    assert decoded(tmp_path / "0.png").shape == (48, 64, 3)


def test_a_symlink_planted_at_the_part_name_is_not_written_through(pool: FramePool,
                                                                   tmp_path: Path) -> None:
    """Frames folders may be writable by others: ``<frame>.part`` was a name anyone could plant."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    final = frame_path(tmp_path, 0)
    Path(f"{final}.part").symlink_to(victim)
    Path(frame_path(tmp_path, 1)).symlink_to(victim)
    frames = real_frames("rgb", 2)
    for i, frame in enumerate(frames):
        pool.encode_from_array(frame, frame_path(tmp_path, i))
    assert pool.wait(timeout=20)
    pool.check()
    assert victim.read_text() == "keep me"
    for i in range(2):
        assert not Path(frame_path(tmp_path, i)).is_symlink()
        assert_same(frame_path(tmp_path, i), frames[i])


def test_workers_import_nothing_from_the_current_folder(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    """Modules planted in the current folder (on the path as "", as ``python -c`` puts it)."""
    planted = tmp_path / "cwd"
    planted.mkdir()
    for name in ("json", "mmap"):
        marker = tmp_path / f"{name}.ran"
        (planted / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(planted)
    monkeypatch.syspath_prepend("")
    frame = real_frames("rgb", 1)[0]
    with FramePool(workers=1) as pool:
        pool.encode_from_array(frame, frame_path(tmp_path, 0))
        assert pool.wait(timeout=20)
        pool.check()
    assert_same(frame_path(tmp_path, 0), frame)
    assert sorted(tmp_path.glob("*.ran")) == []


def test_a_pool_that_falls_behind_starts_one_more_worker(column: Any, tmp_path: Path) -> None:
    frames = real_frames("rgb", 96, 480, 640)
    col = column(frames)
    # Pillow takes tens of ms a frame here: 96 frames are seconds of work for one worker
    with FramePool(workers=1, max_workers=2, encoder="pillow") as pool:
        pool.submit([FrameJob(i, col.source, i, frame_path(tmp_path, i)) for i in range(96)])
        assert pool.wait(timeout=120)
        pool.check()
        assert pool.counters.added == 1
        assert len(pool.pids) == 2
    for i in (0, 47, 95):
        assert_same(frame_path(tmp_path, i), frames[i])
    with pytest.raises(ValueError, match="max_workers"):
        FramePool(workers=2, max_workers=1)
