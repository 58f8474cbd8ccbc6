"""The fast path: joblib's loky pool driven through its futures.

``joblib.Parallel`` sleeps 10 ms in its result loop whenever a result is not
ready, a floor under every call. Here the same pool that ``Parallel`` uses
(``joblib.executor.get_memmapping_executor``) is driven directly: chunks are
submitted as futures and collected with ``concurrent.futures.wait``, which
wakes as soon as a result arrives.

The pool is configured through the ``Parallel`` object itself, so it is built
with exactly the arguments ``Parallel`` would use: the user's own
``joblib.Parallel`` calls keep reusing the same warm workers, and large numpy
arrays are memmapped into a temporary folder registered for this run only and
removed at its end (as ``LokyBackend.configure`` / ``terminate`` do).
"""

import math
import time
from concurrent.futures import FIRST_COMPLETED, wait

from joblib._parallel_backends import LokyBackend

from .worker import Chunk

# Chunks in flight per worker: enough to keep workers busy while results
# travel back, small enough that a generator is read only a little ahead.
_IN_FLIGHT_PER_WORKER = 2
# Adaptive chunking for inputs of unknown length: grow chunks while they come
# back faster than this many seconds, up to _MAX_CHUNK items.
_TARGET_CHUNK_SECONDS = 0.05
_MAX_CHUNK = 1024


def uses_loky_pool(parallel):
    """True when ``parallel`` would run on loky with more than one worker."""
    backend = parallel._backend
    return type(backend) is LokyBackend and parallel._effective_n_jobs() > 1


class _ChunkSizer:
    """Items per chunk: a quarter of each worker's share when the length is
    known (as ``multiprocessing.Pool.map`` does), else grown adaptively."""

    def __init__(self, batch_size, n_items, n_workers):
        self.fixed = batch_size != "auto"
        if self.fixed:
            self.size = batch_size
        elif n_items is not None:
            self.size = max(1, math.ceil(n_items / (4 * n_workers)))
            self.fixed = True
        else:
            self.size = 1

    def observe(self, n_items, seconds):
        if not self.fixed and n_items >= self.size and seconds < _TARGET_CHUNK_SECONDS:
            self.size = min(self.size * 2, _MAX_CHUNK)


def _chunks(calls, sizer):
    while True:
        chunk = []
        for call in calls:
            chunk.append(call)
            if len(chunk) >= sizer.size:
                break
        if not chunk:
            return
        yield chunk


def loky_outcomes(parallel, func, calls, batch_size, n_items, watch_globals=False):
    """Yield an ``Outcome`` per item as chunks finish (not in input order).

    Stops submitting as soon as the consumer stops iterating; closing the
    generator cancels chunks that have not started and frees the run's
    temporary folder. A ``KeyboardInterrupt`` also kills the busy workers,
    so the next call starts on a fresh pool instead of queueing behind them.
    """
    n_workers = parallel._initialize_backend()
    backend = parallel._backend
    executor = backend._workers
    folders = executor._temp_folder_manager
    context_id = parallel._id

    def use_this_runs_folder():
        folders.set_current_context(context_id)

    sizer = _ChunkSizer(batch_size, n_items, n_workers)
    chunks = _chunks(iter(calls), sizer)
    pending = {}  # future -> (chunk length, submit time)
    try:
        while True:
            while len(pending) < _IN_FLIGHT_PER_WORKER * n_workers:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                task = Chunk(func, chunk, watch_globals, use_this_runs_folder)
                future = executor.submit(task)
                pending[future] = (len(chunk), time.perf_counter())
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            now = time.perf_counter()
            for future in done:
                size, submitted = pending.pop(future)
                sizer.observe(size, now - submitted)
                yield from future.result()
    except KeyboardInterrupt:
        executor.terminate(kill_workers=True)
        raise
    finally:
        for future in pending:
            future.cancel()
        backend.terminate()
