"""h5recorder: record robot timesteps into HDF5 without making the control loop wait.

A drop-in replacement for ``mbodied.data.recording.Recorder``::

    from h5recorder import Recorder
"""

from ._format.health import Health
from ._read.dataset import Dataset, EpisodeInfo, dataset
from ._read.episode import Column, Episode, Time
from ._read.episode import open_episode as open
from ._read.live import read_live
from ._version import __version__
from ._write.recorder import Options, Recorder, copy_and_delete_old
from ._write.schema import create_dataset_for_space_dict
from ._write.writer import Status
from .errors import (
    ClosedError,
    DiskFullError,
    LiveError,
    ReadError,
    RecorderError,
    RecoveryError,
    SchemaError,
    StepError,
    StepTypeError,
    WriterError,
)

__all__ = [
    "ClosedError",
    "Column",
    "Dataset",
    "DiskFullError",
    "Episode",
    "EpisodeInfo",
    "Health",
    "LiveError",
    "Options",
    "ReadError",
    "Recorder",
    "RecorderError",
    "RecoveryError",
    "SchemaError",
    "Status",
    "StepError",
    "StepTypeError",
    "Time",
    "WriterError",
    "__version__",
    "copy_and_delete_old",
    "create_dataset_for_space_dict",
    "dataset",
    "open",
    "read_live",
]
