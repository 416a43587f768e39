"""Compatibility tests against the real ``mbodied`` package (``tox -e compat``).

The default run has no ``mbodied`` (about 1 GB installed): this whole directory is skipped
there, with the reason shown by ``pytest -ra``.
"""

import pytest

pytest.importorskip(
    "mbodied.data.replaying",
    reason="mbodied is not installed; these tests run in `tox -e compat` (mbodied==1.5.1)",
)
