"""A caller that outruns the writer keeps a small backlog; a caller that keeps up has the
whole ring for its bursts (``Recorder._keep_backlog_small``)."""

from __future__ import annotations

import threading

from h5recorder import Recorder
from h5recorder._write import recorder as recorder_module
from tests.test_handover import check_file, rig_space, rig_steps, writer_held

HEIGHT, WIDTH = 128, 192


def _record_in_a_thread(recorder: Recorder, steps: list[dict]) -> threading.Thread:
    thread = threading.Thread(target=lambda: [recorder.record(step) for step in steps])
    thread.start()
    return thread


def test_an_outrunning_caller_waits_at_the_backlog_then_gets_the_whole_ring_back(
    tmp_path, monkeypatch
):
    steps = rig_steps(120, HEIGHT, WIDTH)
    step_bytes = 2 * HEIGHT * WIDTH * 3 + 14 * 4
    monkeypatch.setattr(recorder_module, "BACKLOG_BYTES", 10 * step_bytes)
    monkeypatch.setattr(recorder_module, "OUTRUN_SECONDS", 60.0)
    recorder = Recorder(
        "backlog", out_dir=str(tmp_path), observation_space=rig_space(HEIGHT, WIDTH),
        buffer_bytes=40 * step_bytes, chunk_bytes=2 * HEIGHT * WIDTH * 3,
    )
    ring = recorder._ring
    assert ring is not None
    capacity, backlog = ring.capacity, recorder._backlog_rows
    assert 4 <= backlog <= capacity // 3, (backlog, capacity)
    taken = 0

    # a burst while the writer is held: the whole ring takes it, then record() waits
    with writer_held(recorder) as gate:
        for step in steps[:capacity]:
            recorder.record(step)
        caller = _record_in_a_thread(recorder, steps[capacity : capacity + 1])
        caller.join(1.0)
        assert caller.is_alive()  # the ring is full
        gate.set()
        caller.join(30)
        assert not caller.is_alive()
    taken = capacity + 1
    assert recorder.status().waits == 1

    # the caller outran the writer: it now waits once `backlog` steps are not written,
    # though most of the ring is free
    with writer_held(recorder) as gate:
        for step in steps[taken : taken + backlog]:
            recorder.record(step)
        caller = _record_in_a_thread(recorder, steps[taken + backlog : taken + backlog + 1])
        caller.join(1.0)
        assert caller.is_alive()
        assert ring.pending < capacity // 2
        gate.set()
        caller.join(30)
        assert not caller.is_alive()
    taken += backlog + 1
    assert recorder.status().waits == 2

    # without a wait for OUTRUN_SECONDS, the caller has the whole ring again
    monkeypatch.setattr(recorder_module, "OUTRUN_SECONDS", 0.0)
    recorder.flush()
    recorder.record(steps[taken])
    taken += 1
    burst = 2 * backlog
    with writer_held(recorder):
        caller = _record_in_a_thread(recorder, steps[taken : taken + burst])
        caller.join(30)
        assert not caller.is_alive()  # no wait: the burst fits the ring
        assert ring.pending == burst
    taken += burst
    recorder.close()

    status = recorder.status()
    assert (status.waits, status.drops) == (2, 0)
    assert status.wait_seconds > 1.5  # the two waits above, of a second each at least
    check_file(recorder.filename, steps[:taken])


def test_the_drop_policy_keeps_the_whole_ring(tmp_path, monkeypatch):
    """Under ``on_full="drop"`` a smaller backlog would drop steps the ring could hold."""
    steps = rig_steps(60, HEIGHT, WIDTH)
    step_bytes = 2 * HEIGHT * WIDTH * 3 + 14 * 4
    monkeypatch.setattr(recorder_module, "BACKLOG_BYTES", 10 * step_bytes)
    recorder = Recorder(
        "drops", out_dir=str(tmp_path), observation_space=rig_space(HEIGHT, WIDTH),
        buffer_bytes=20 * step_bytes, chunk_bytes=2 * HEIGHT * WIDTH * 3, on_full="drop",
    )
    ring = recorder._ring
    assert ring is not None
    capacity = ring.capacity
    with writer_held(recorder):
        for step in steps[: capacity + 3]:
            recorder.record(step)
        assert recorder.status().drops == 3
    with writer_held(recorder):
        for step in steps[capacity + 3 : 2 * capacity + 3]:
            recorder.record(step)
        assert recorder.status().drops == 3  # the whole ring again, not the backlog
    recorder.close()
    check_file(recorder.filename, steps[:capacity] + steps[capacity + 3 : 2 * capacity + 3])
