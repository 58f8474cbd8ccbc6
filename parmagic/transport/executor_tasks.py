"""Chunks through loky's own executor, for when direct channels are
switched off (``switches.direct_channels``).

``ExecutorTasks`` does what ``channels.Channels`` does for a pool, the
plain way: each chunk is a task of loky's executor, whose queue and manager
threads carry it to whichever worker is free (a round trip of about 1 ms
instead of 0.1). Crashes are loky's: a dead worker breaks the executor, and
every chunk in flight fails with loky's message. Two things channels do are
not done: a worker is not told that a run is over (it lets go of the last
run's function with the next run's first chunk), no worker is replaced
after a number of items (``max_tasks_per_worker`` needs channels), and what
items print arrives only with their chunk's result, not as they run.
"""

import concurrent.futures
import contextlib

from parmagic.transport.channels import NotSent, dumps_task
from parmagic.worker.chunk import run_pickled


class ExecutorTasks:
    """``submit`` chunks to ``executor``'s workers, ``wait`` for futures."""

    def __init__(self, executor, n_workers, spawning=contextlib.nullcontext):
        self.executor = executor
        self.n_workers = n_workers
        self.spawning = spawning  # around a submission, which may start workers
        self.max_tasks = None  # not supported: see worker_limits.checked
        self.on_output = None  # never called: output comes with each chunk's end
        self.in_flight = set()

    def __len__(self):
        return self.n_workers

    def submit(self, task, items=1):
        """Send ``task`` to loky's executor; returns its future. It is
        pickled here, so that a task that cannot be sent fails alone, with
        ``NotSent`` (as with channels), not somewhere in loky's threads."""
        try:
            data = dumps_task(task)
        except Exception as exc:
            future = concurrent.futures.Future()
            error = NotSent(f"the task could not be pickled: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            future.set_exception(error)
            return future
        with self.spawning():
            future = self.executor.submit(run_pickled, data)
        self.in_flight.add(future)
        future.add_done_callback(self.in_flight.discard)
        return future

    def wait(self, futures, timeout):
        """The ``futures`` that are done, once one is (or ``timeout`` passed)."""
        done, _ = concurrent.futures.wait(futures, timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        return done

    def run_over(self):
        """Nothing to tell: no worker is connected to the notebook."""

    def idle(self):
        return not self.in_flight

    def close(self):
        """Cancel what has not started; the executor's shutdown does the rest."""
        for future in list(self.in_flight):
            future.cancel()
