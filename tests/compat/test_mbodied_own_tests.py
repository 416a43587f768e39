"""mbodied 1.5.1's own tests of its recorder and replayer pass, unmodified, against h5recorder.

The tests are mbodied's: they are fetched from its source release at run time (into pytest's
cache folder, never into the repository) and run in a child pytest whose plugin
(``mbodied_substitute.py``) puts h5recorder's ``Recorder`` and ``create_dataset_for_space_dict``
where mbodied's were, before the test modules import them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

VERSION = "1.5.1"
TEST_FILES = ("tests/test_recording.py", "tests/test_replaying.py", "tests/pytest.ini")
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mbodied_tests(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """mbodied's own test files, from its source release (downloaded once, then cached)."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    name = f"mbodied-{VERSION}-tests"
    folder = Path(cache.mkdir(name) if cache else tmp_path_factory.mktemp(name))
    if all((folder / name).is_file() for name in TEST_FILES):
        return folder / "tests"
    download = folder / "download"
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"mbodied=={VERSION}", "--dest", str(download)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert fetched.returncode == 0, f"pip download failed:\n{fetched.stderr[-2000:]}"
    (archive,) = download.glob(f"mbodied-{VERSION}.tar.gz")
    with tarfile.open(archive) as tar:
        for name in TEST_FILES:
            member = tar.getmember(f"mbodied-{VERSION}/{name}")
            data = tar.extractfile(member)
            assert data is not None
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.read())
    return folder / "tests"


def test_mbodied_recording_and_replaying_tests_pass_with_h5recorder(
    mbodied_tests: Path, tmp_path: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.compat.mbodied_substitute",
         "-p", "no:cacheprovider", "-q", "-rA", "--rootdir", str(mbodied_tests),
         "-c", str(mbodied_tests / "pytest.ini"),
         str(mbodied_tests / "test_recording.py"), str(mbodied_tests / "test_replaying.py")],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY),
             "TMPDIR": str(tmp_path)},
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    summary = [line for line in run.stdout.splitlines() if re.search(r"\d+ passed", line)]
    assert run.returncode == 0 and summary, report
    assert re.search(r"\b13 passed\b", summary[-1]), report
    assert not re.search(r"failed|error|skipped|xfail", summary[-1]), report
    # the substitution took effect before the tests imported mbodied's names
    assert "mbodied's Recorder is h5recorder._write.recorder.Recorder" in run.stdout, report
