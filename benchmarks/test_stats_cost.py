"""The statistics pass on the writer thread: microseconds per step, per workload.

The writer folds every row into its statistics (moments, and the histograms or quantile
sketches that merge across episodes) as it moves rows out of the ring. This times that pass
alone, compiled, statistics only (no copy), on the steps of each workload. Run it on two
commits side by side to see what a change to the statistics costs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from bench_support import load_workload, report

from h5recorder import native
from h5recorder._write.schema import Plan
from h5recorder._write.stats import LeafStats

ROWS = {"seed": 64, "rig": 16, "proprio": 1024}


def _columns(name: str) -> list[tuple[Any, np.ndarray]]:
    load = load_workload(name)
    roots = {k.removesuffix("_space"): v for k, v in load.spaces().items() if v is not None}
    plan = Plan(roots, 1 << 20)
    rows = ROWS[name]
    columns = []
    for leaf in plan.leaves:
        if leaf.is_string:
            continue
        values = []
        for i in range(rows):
            value = load.bank[i % len(load.bank)]
            for key in leaf.path:
                value = value[key]
            values.append(np.asarray(value, leaf.dtype))
        ring = np.stack(values).reshape(rows, -1)
        columns.append((leaf, ring.view(np.uint8) if leaf.dtype.kind == "b" else ring))
    return columns


@pytest.mark.parametrize("name", sorted(ROWS))
def test_statistics_pass_per_step(benchmark: Any, name: str) -> None:
    columns = _columns(name)
    native.warm_up(sorted({ring.dtype for _, ring in columns}, key=str))
    rows = ROWS[name]

    def one_round(repeats: int) -> float:
        stats = [LeafStats(leaf) for leaf, _ in columns]
        started = time.perf_counter()
        for _ in range(repeats):
            for leaf_stats, (_, ring) in zip(stats, columns, strict=True):
                no_copy = np.empty((0, ring.shape[1]), ring.dtype)
                leaf_stats.fold(ring, 0, rows, no_copy, 0, True)
        return (time.perf_counter() - started) / (repeats * rows)

    one_round(2)
    best = min(one_round(20) for _ in range(3))
    benchmark.pedantic(lambda: None, rounds=1)
    report(benchmark, f"statistics pass: {name}", {"us per step": round(best * 1e6, 2)})
