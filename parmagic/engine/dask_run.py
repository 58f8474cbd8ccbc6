"""Running a map on a dask.distributed cluster.

joblib's ``"dask"`` backend finds the client and the cluster's size, but its
result loop sleeps between polls and waits forever when the scheduler gives
up on a task whose workers keep dying. Here chunks are submitted to the
client directly (see ``chunked.ChunkedRun``) and collected with
``distributed.wait``, which wakes when one finishes.

When a worker dies mid-run the scheduler moves its tasks to the other
workers: a transparent retry. A task whose workers keep dying (more than
``distributed.scheduler.allowed-failures`` times) fails with the scheduler's
``KilledWorker``, reported as a ``WorkerCrashError`` naming its items. Time
limits are kept inside the worker's thread (``time_limits``); an item stuck
in compiled code cannot be stopped there, so it fails, its task is released,
and its thread runs on until it returns.
"""

import pickle
import uuid

from parmagic.common.errors import WorkerCrashError, describe_items
from parmagic.engine.chunked import ChunkedRun
from parmagic.worker.batch import Batch
from parmagic.worker.chunk import Chunk


class DaskRun(ChunkedRun):
    """One map on the cluster of ``client``."""

    def __init__(self, client, func, options, batch_size, n_items, n_workers, func_label,
                 tiny_items=False, present=None):
        self.client = client
        self.present = present  # present.Present(carry=False): the module check only
        # a cluster without workers yet still takes tasks: they wait for one
        super().__init__(func, options, batch_size, n_items, max(1, n_workers), func_label,
                         tiny_items)

    def _submit(self, chunk):
        # a readable task name on the dashboard: function and first item
        name = getattr(self.func, "__name__", "func").replace("<", "").replace(">", "")
        key = f"parmap-{name}-{chunk[0][0]}-{uuid.uuid4().hex[:12]}"
        return self.client.submit(Chunk(self.func, chunk, self.options, present=self.present),
                                  key=key, pure=False)

    def _wait(self, futures, timeout):
        from distributed import wait

        try:
            return wait(futures, timeout=timeout, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return set()

    def _submit_failed(self, exc, chunk):
        if not _is_pickling_error(exc):
            raise exc
        yield from self._unsendable(chunk, exc)

    def _failed(self, exc, chunk):
        indices = [index for index, _ in chunk]
        if type(exc).__name__ == "KilledWorker":
            message = (
                f"the cluster worker running {describe_items(indices)} died, and again each "
                f"time the scheduler retried ({exc}). The notebook is fine; an item "
                "may crash its worker (segfault, memory), or the worker was killed "
                "from outside."
            )
            yield Batch.failed(indices, lambda: WorkerCrashError(message, indices))
        elif _is_pickling_error(exc):
            yield from self._unsendable(chunk, exc)
        else:  # the task could not run at all (e.g. unpickling on the worker)
            yield Batch.failed(indices, lambda: exc)

    def _abandon(self):
        self.client.cancel(list(self.pending))

    def _stop_stuck(self, stuck):
        self.client.cancel(stuck)
        return (
            f"the item ran longer than its {self.options.timeout:g} s time limit "
            "and did not stop when told to: it is busy in compiled code or a "
            "blocking call, which a dask worker's thread cannot interrupt, so its "
            f"task was released after {self.hard_limit():g} s and goes on in its "
            "worker until that call returns"
        )
        yield  # a generator, like the other _stop_stuck


def _is_pickling_error(exc):
    return isinstance(exc, pickle.PicklingError) or "pickle" in str(exc).lower()

