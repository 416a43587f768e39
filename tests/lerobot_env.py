"""What LeRobot needs in the ``lerobot`` tox env, shared by its tests and its benchmark.

That env pairs a CPU build of torch 2.13 with LeRobot 0.4.4 (installed without its pins):

- torchvision's wheel there is a CUDA build: its C ops do not load, and its import then stops
  at registering a fake kernel for an op that does not exist (``torchvision::nms``).
  :func:`import_torchvision` declares the schemas of the two ops its import registers fakes
  for, so that the import completes. Nothing here calls them.
- LeRobot decodes videos with torchcodec, which loads FFmpeg's shared libraries by their plain
  names (``libavutil.so.59``, ...) and finds none on a machine without FFmpeg. PyAV's wheel
  carries FFmpeg 7 under renamed files; :func:`link_ffmpeg` links them under the plain names
  in a folder that the env puts on ``LD_LIBRARY_PATH`` (``python -m tests.lerobot_env DIR``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def import_torchvision() -> None:
    """Import torchvision, declaring the schemas of ``torchvision::nms`` and ``qnms`` when its
    C extension does not load."""
    import torch

    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for op in ("nms", "qnms"):
            torch.library.define(
                f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        import torchvision  # noqa: F401


def link_ffmpeg(folder: Path) -> list[Path]:
    """Link PyAV's bundled FFmpeg libraries into ``folder`` under their plain names."""
    import av

    bundled = Path(av.__file__).resolve().parent.parent / "av.libs"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for library in sorted(bundled.glob("lib*.so*")):
        found = re.fullmatch(r"(lib(?:av|sw)[a-z]+)-[0-9a-f]+\.so\.(\d+)(?:\.\d+)*", library.name)
        if not found:
            continue
        link = folder / f"{found[1]}.so.{found[2]}"
        link.unlink(missing_ok=True)
        link.symlink_to(library)
        made.append(link)
    return made


if __name__ == "__main__":
    links = link_ffmpeg(Path(sys.argv[1]))
    print(f"linked {len(links)} FFmpeg libraries into {sys.argv[1]}")
