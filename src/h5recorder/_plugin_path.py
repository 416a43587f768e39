"""Makes hdf5plugin's filters known to every Python process of this environment.

Recordings compress with blosc2 (HDF5 filter 32026), which HDF5 decodes only with the filter
library hdf5plugin ships. A reader that never imports hdf5plugin (mbodied's ``Replayer`` in a
training script, plain h5py) finds that library when ``HDF5_PLUGIN_PATH`` names its folder.
:func:`install` writes a one-line ``.pth`` file beside hdf5plugin in site-packages; Python runs
it at every start of this environment's interpreter, and it adds hdf5plugin's folder to
``HDF5_PLUGIN_PATH`` (after any folders already there; nothing is imported, it costs a few
microseconds). The recorder calls it once per process; where site-packages is not writable it
does nothing, and readers set ``HDF5_PLUGIN_PATH`` themselves (see the README).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PTH_NAME", "install", "pth_line"]

PTH_NAME = "h5recorder-hdf5-plugins.pth"
_installed: list[Path | None] = []


def pth_line(plugin_dir: str) -> str:
    """The ``.pth`` line: append ``plugin_dir`` to ``HDF5_PLUGIN_PATH`` unless it is there."""
    return (
        "import os; _d = " + repr(plugin_dir) + "; _p = os.environ.get('HDF5_PLUGIN_PATH', ''); "
        "_d in _p.split(os.pathsep) or os.environ.__setitem__('HDF5_PLUGIN_PATH', "
        "_p + os.pathsep + _d if _p else _d)\n"
    )


def install() -> Path | None:
    """Write the ``.pth`` file (once per process); return its path, or None if not writable."""
    if _installed:
        return _installed[0]
    import hdf5plugin

    plugin_dir = str(Path(hdf5plugin.PLUGIN_PATH).resolve())
    site = Path(hdf5plugin.__file__).resolve().parent.parent
    path = site / PTH_NAME
    line = pth_line(plugin_dir)
    result: Path | None = path
    try:
        if not path.is_file() or path.read_text() != line:
            temporary = path.with_name(f".{PTH_NAME}.{os.getpid()}")
            temporary.write_text(line)
            os.replace(temporary, path)
    except OSError:
        result = None
    _installed.append(result)
    return result
