"""Plot ``record()`` latency percentiles, h5recorder against mbodied, measured side by side.

Runs the paced latency cases of ``h5recorder._tools.bench`` (HDF5 only, each workload at its rate
in ``LATENCY_RATES``) and draws p50, p99, p99.9 and max per workload on a log scale. Needs
mbodied (for its side) and matplotlib, neither a dependency of h5recorder:

    .tox/compat/bin/python benchmarks/plot_latency.py benchmarks/latency.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from h5recorder._tools import bench as _bench
from h5recorder.workloads import WORKLOADS, workload

PERCENTILES = (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"), ("max_us", "max"))


def measure(names: list[str], seconds: float) -> dict[str, dict[str, dict[str, float]]]:
    """``{workload: {subject: figures}}`` for h5recorder and, where importable, mbodied."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        load = workload(name)
        subjects = _bench.factories(load)
        results[name] = {}
        for subject in ("h5recorder", "mbodied"):
            if subject not in subjects:
                continue
            with tempfile.TemporaryDirectory(prefix="h5recorder-plot-") as folder:
                print(f"{name}: {subject} at {_bench.LATENCY_RATES[name]:g} Hz", flush=True)
                results[name][subject] = _bench.latency(
                    subject, subjects[subject], load, Path(folder), png=False,
                    rate=_bench.LATENCY_RATES[name], seconds=seconds,
                )
    return results


def plot(results: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), sharey=True)
    axes = [axes] if len(names) == 1 else list(axes)
    colors = {"h5recorder": "#1f77b4", "mbodied": "#d62728"}
    for axis, name in zip(axes, names, strict=True):
        subjects = results[name]
        width = 0.8 / max(1, len(subjects))
        for k, (subject, figures) in enumerate(subjects.items()):
            xs = [i + (k - (len(subjects) - 1) / 2) * width for i in range(len(PERCENTILES))]
            values = [figures[key] for key, _ in PERCENTILES]
            bars = axis.bar(xs, values, width, label=subject, color=colors.get(subject))
            axis.bar_label(bars, [f"{v:,.0f}" if v >= 10 else f"{v:.1f}" for v in values],
                           fontsize=7, padding=1)
        axis.set_xticks(range(len(PERCENTILES)), [label for _, label in PERCENTILES])
        axis.set_yscale("log")
        axis.set_title(f"{name}, {_bench.LATENCY_RATES[name]:g} steps/s")
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("record() latency, us (log)")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle("record() latency while the writer runs (HDF5 only), measured side by side",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, nargs="?", default=Path("benchmarks/latency.png"))
    parser.add_argument("--workload", choices=WORKLOADS, action="append")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    plot(measure(args.workload or list(WORKLOADS), args.seconds), args.output)


if __name__ == "__main__":
    main()
