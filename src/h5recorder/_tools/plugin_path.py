"""Makes hdf5plugin's filters known to every Python process of this environment.

Recordings compress with blosc2 (HDF5 filter 32026), which HDF5 decodes only once hdf5plugin
has registered its filters. A reader that never imports hdf5plugin (mbodied's ``Replayer`` in a
training script, plain h5py) cannot read those chunks. The package therefore ships a one-line
``.pth`` file, :data:`PTH_NAME`, at the top of site-packages (``setup.py`` writes
:func:`pth_line` into the wheel, editable installs included, so pip lists it in RECORD and
``pip uninstall`` removes it). Python runs it at every start of this environment's interpreter,
and it arranges that whenever ``h5py`` is imported, ``hdf5plugin`` is imported right after it
(registering its filters). A process that never imports h5py pays nothing but one string
comparison per import. Nothing of h5recorder writes it at run time.

Setting ``HDF5_PLUGIN_PATH`` for every process instead was tried and rejected: HDF5 then loads
hdf5plugin's filter libraries itself, hdf5plugin no longer registers its own copies, and
creating a blosc2 dataset fails ("error during user callback") in any process that writes.

This module imports nothing but the standard library: ``setup.py`` runs it by path.
"""

from __future__ import annotations

__all__ = ["HOOK", "PTH_NAME", "pth_line"]

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
    """The line of the ``.pth`` file: runs :data:`HOOK` in a namespace of its own."""
    return f"import sys; exec({HOOK!r}, {{\"__name__\": \"h5recorder_filters\"}})\n"
