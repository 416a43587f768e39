"""Makes hdf5plugin's filters known to every Python process of this environment.

Recordings compress with blosc2 (HDF5 filter 32026), which HDF5 decodes only once hdf5plugin
has registered its filters. A reader that never imports hdf5plugin (mbodied's ``Replayer`` in a
training script, plain h5py) cannot read those chunks. :func:`install` writes a one-line
``.pth`` file beside hdf5plugin in site-packages; Python runs it at every start of this
environment's interpreter, and it arranges that whenever ``h5py`` is imported, ``hdf5plugin``
is imported right after it (registering its filters). A process that never imports h5py pays
nothing but one string comparison per import.

Setting ``HDF5_PLUGIN_PATH`` for every process instead was tried and rejected: HDF5 then loads
hdf5plugin's filter libraries itself, hdf5plugin no longer registers its own copies, and
creating a blosc2 dataset fails ("error during user callback") in any process that writes.

The recorder calls :func:`install` once per process; where site-packages is not writable it
does nothing, and readers import hdf5plugin or set ``HDF5_PLUGIN_PATH`` (see the README).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HOOK", "PTH_NAME", "install"]

PTH_NAME = "h5recorder-hdf5-filters.pth"

# Run by the .pth line at interpreter start. A one-shot finder: on ``import h5py`` it takes
# itself off sys.meta_path, finds h5py's spec as usual and makes its loader import hdf5plugin
# once h5py's module has run.
HOOK = """\
import sys
class _H5recorderFilters:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "h5py":
            return None
        sys.meta_path.remove(_H5recorderFilters)
        import importlib.util
        spec = importlib.util.find_spec("h5py")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module
        def exec_module(module, run=run):
            run(module)
            try:
                import hdf5plugin
            except Exception:
                pass
        spec.loader.exec_module = exec_module
        return spec
if "h5py" not in sys.modules:
    sys.meta_path.insert(0, _H5recorderFilters)
"""


def pth_line() -> str:
    return f"import sys; exec({HOOK!r}, {{\"__name__\": \"h5recorder_filters\"}})\n"


_installed: list[Path | None] = []


def install() -> Path | None:
    """Write the ``.pth`` file (once per process); return its path, or None if not writable."""
    if _installed:
        return _installed[0]
    import hdf5plugin

    path = Path(hdf5plugin.__file__).resolve().parent.parent / PTH_NAME
    line = pth_line()
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
