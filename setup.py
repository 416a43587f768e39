"""Ships ``h5recorder-hdf5-filters.pth`` at the top of site-packages; the rest is pyproject.toml.

The file (see ``src/h5recorder/_tools/plugin_path.py``) lets readers that never import hdf5plugin
decode blosc2 chunks. It goes into the wheel beside the package, as setuptools ships its own
``distutils-precedence.pth``, so pip lists it in RECORD and ``pip uninstall`` removes it; an
editable install (``pip install -e``) gets it the same way. Nothing writes it at run time.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build import build

HERE = Path(__file__).resolve().parent
# read by path: building must not import the package (its dependencies are not installed yet)
_HOOK = runpy.run_path(str(HERE / "src" / "h5recorder" / "_tools" / "plugin_path.py"))


class build_pth(Command):
    """Write the ``.pth`` file at the root of what the wheel installs into site-packages."""

    description = "write h5recorder's .pth file beside the package"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False  # set by setuptools' editable_wheel

    def finalize_options(self) -> None:
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def _target(self) -> Path:
        if self.editable_mode:
            # An editable wheel holds no build_lib: what it installs beside the package is
            # what editable_wheel puts at the root of the wheel, install_lib.
            root = self.get_finalized_command("install").install_lib
        else:
            root = self.build_lib
        assert root is not None
        return Path(root) / _HOOK["PTH_NAME"]

    def run(self) -> None:
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_HOOK["pth_line"]())

    def get_outputs(self) -> list[str]:
        return [] if self.editable_mode else [str(self._target())]

    def get_output_mapping(self) -> dict[str, str]:
        return {}


class build_with_pth(build):
    sub_commands: ClassVar = [*build.sub_commands, ("build_pth", None)]


setup(cmdclass={"build": build_with_pth, "build_pth": build_pth})
