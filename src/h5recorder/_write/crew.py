"""Helper threads of the writer: they count, compress and write whole chunks beside it.

The work handed to them runs without the GIL (numba kernels compiled ``nogil``, blosc2 with
``set_releasegil``, ``os.pwrite``), so a machine's cores share a recording's bytes. The
writer hands work over with :meth:`Crew.submit` (a queue put, no future per task) and waits
for all of it with :meth:`Crew.wait` before it lets go of anything the work reads: ring slots,
buffers, the file's committed state. The first error raised by a task is raised there, in
the writer's thread.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_HELPERS", "Crew", "helpers_for_this_machine"]

MAX_HELPERS = 8  # beyond this the page cache, not the threads, sets the pace (see DESIGN)


def helpers_for_this_machine() -> int:
    """One helper per core this process may run on, at most :data:`MAX_HELPERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on this platform
        cores = os.cpu_count() or 1
    return max(1, min(MAX_HELPERS, cores))


class Crew:
    """``size`` daemon threads taking ``(function, args)`` from one queue."""

    def __init__(self, size: int, name: str = "h5recorder-crew") -> None:
        self.size = size
        self._tasks: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Condition()
        self._open = 0  # tasks submitted and not finished
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        with self._idle:
            self._open += 1
        self._tasks.put((function, args))

    def wait(self) -> None:
        """Return once every task submitted so far has finished; raise the first error."""
        with self._idle:
            while self._open:
                self._idle.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Finish what was submitted, then end the threads."""
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            function, args = task
            try:
                function(*args)
            except BaseException as error:  # noqa: BLE001 - raised by wait(), in the writer
                with self._idle:
                    self._error = self._error or error
            finally:
                with self._idle:
                    self._open -= 1
                    if not self._open:
                        self._idle.notify_all()
