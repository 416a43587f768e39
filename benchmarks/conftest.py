"""Fixtures and options of the benchmarks; the shared checks live in ``bench_support``.

Benchmarks run on demand (``pytest benchmarks -q -s``, or ``tox -e bench``), never in CI's
pass/fail. They assert what was written, never how fast: figures go to ``benchmark.extra_info``
(kept in pytest-benchmark's JSON with ``--benchmark-json``) and are printed with ``-s``. On a
noisy machine, compare figures measured side by side in one run, as ratios.
"""

from __future__ import annotations

import pytest
from bench_support import load_workload

from h5recorder.workloads import Workload


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("h5recorder benchmarks")
    group.addoption("--pace-seconds", type=float, default=4.0,
                    help="seconds of paced recording per latency case (default 4)")
    group.addoption("--e2e-steps", type=int, default=2000,
                    help="steps per end-to-end round (default 2000)")
    group.addoption("--e2e-rounds", type=int, default=2,
                    help="rounds per end-to-end case (default 2)")
    group.addoption("--case-seconds", type=float, default=2.0,
                    help="seconds per case of the three-workload head-to-head (default 2)")
    group.addoption("--rig-seconds", type=float, default=10.0,
                    help="seconds of paced recording per camera-rig keep-up case (default 10)")
    group.addoption("--frame-workers", type=int, default=None,
                    help="frame_workers of the rig keep-up cases (default: the recorder's)")
    group.addoption("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval during the rig keep-up cases (default: Python's)")
    group.addoption("--episodes", type=int, default=20,
                    help="seed episodes read by the many-episodes benchmark (default 20)")
    group.addoption("--episode-steps", type=int, default=1000,
                    help="steps per seed episode (default 1000)")
    group.addoption("--write-seconds", type=float, default=10.0,
                    help="seconds of flat-out recording per write-path case (default 10)")
    group.addoption("--write-rounds", type=int, default=3,
                    help="alternating rounds of the write-path cases (default 3)")
    group.addoption("--stats-files", type=int, default=1000,
                    help="episode files whose statistics are merged (default 1000)")
    group.addoption("--lerobot-steps", type=int, default=300,
                    help="steps of the LeRobot side-by-side episode, at 30 Hz (default 300)")
    group.addoption("--lerobot-rounds", type=int, default=2,
                    help="alternating rounds of the LeRobot side-by-side cases (default 2)")
    group.addoption("--export-seconds", type=float, default=60.0,
                    help="seconds at 30 Hz of the episode exported to LeRobot (default 60)")
    group.addoption("--export-modes", default="video",
                    help="LeRobot export modes to run, comma-separated: video, images "
                    "(default video)")


@pytest.fixture(scope="session")
def seed() -> Workload:
    """One 224x224x3 photo frame with noise, an instruction and small vectors per step."""
    return load_workload("seed")
