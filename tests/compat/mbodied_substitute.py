"""A pytest plugin (``-p tests.compat.mbodied_substitute``) that puts h5recorder's ``Recorder``
and ``create_dataset_for_space_dict`` in place of mbodied's, before any test module imports
them, so that mbodied's own tests run unmodified against h5recorder."""

import mbodied.data.recording

import h5recorder

mbodied.data.recording.Recorder = h5recorder.Recorder  # type: ignore[misc]
mbodied.data.recording.create_dataset_for_space_dict = h5recorder.create_dataset_for_space_dict


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    recorder = mbodied.data.recording.Recorder
    terminalreporter.write_line(
        f"mbodied's Recorder is {recorder.__module__}.{recorder.__qualname__}"
    )
