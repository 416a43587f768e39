"""``h5recorder.open`` gives the steps mbodied's own ``Replayer`` gives (``tox -e compat``)."""

from __future__ import annotations

from pathlib import Path

from mbodied.data.recording import Recorder as MbodiedRecorder
from mbodied.data.replaying import Replayer

import h5recorder
from h5recorder import Recorder
from tests.compat.test_mbodied_replayer import assert_same_sample
from tests.data import make_golden_files as golden


def _record(recorder_class: type, out: Path, name: str) -> Path:
    recorder = recorder_class(
        name, observation_space=golden.observation_space(), action_space=golden.action_space(),
        out_dir=str(out), image_keys_to_save=[],
    )
    for step in golden.steps():
        recorder.record(observation=step["observation"], action=step["action"])
    recorder.close()
    return out / f"{name}.h5"


def test_reader_steps_equal_replayer_samples_for_both_writers(tmp_path: Path) -> None:
    for recorder_class, name in ((Recorder, "ours"), (MbodiedRecorder, "theirs")):
        path = _record(recorder_class, tmp_path, name)
        replayer = Replayer(str(path))
        samples = list(replayer)
        replayer.close()
        assert len(samples) == golden.STEPS
        assert all(len(sample) == 2 for sample in samples), "one value per root, no more"
        with h5recorder.open(path) as episode:
            assert len(episode) == len(samples)
            for index, (observation, action) in enumerate(samples):
                step = episode[index]
                assert_same_sample(step["observation"], observation, f"{name} observation[{index}]")
                assert_same_sample(step["action"], action, f"{name} action[{index}]")
            for index, step in enumerate(episode):
                where = f"{name} iterated[{index}]"
                assert_same_sample(step["observation"], samples[index][0], where)
