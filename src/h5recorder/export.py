"""Recorded episodes in the formats training libraries read: ``h5recorder.export.to_lerobot``.

Optional: ``pip install 'h5recorder[lerobot]'`` (pyarrow, pandas, PyAV; LeRobot itself is not
needed to export). Nothing here is imported by ``import h5recorder``. The command line face is
``h5recorder export lerobot SOURCE OUT``.
"""

from __future__ import annotations

from ._tools.lerobot import LeRobotExport, LeRobotFeature, plan_features, to_lerobot

__all__ = ["LeRobotExport", "LeRobotFeature", "plan_features", "to_lerobot"]
