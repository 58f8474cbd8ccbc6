"""The fast path: loky worker processes, sent chunks directly.

``joblib.Parallel`` sleeps 10 ms in its result loop whenever a result is not
ready, a floor under every call, and loky's executor takes about 1 ms per
round trip through its manager threads. Here loky starts and watches the
workers, configured exactly as ``Parallel`` would configure them
(``joblib_internals``), and chunks travel on a direct connection to each
worker (``channels``), read back as soon as they arrive.

A foreground run uses parmagic's warm pool; a background run has a pool of
its own, so that stopping one run (failure, interrupt, crash, time limit)
never kills another run's workers. Large numpy arrays, items or globals the
function reads, reach the workers through shared memory (``shared_data``).

Failures a worker cannot report itself are turned into per-item outcomes
here: a worker process that died (``WorkerCrashError`` for the items in
flight), an item or function that cannot be pickled (``NotPicklableError``
naming it), and an item stuck past its time limit in code that ignores
signals (``ItemTimeoutError``; its worker is stopped).
"""

from concurrent.futures.process import BrokenProcessPool

from parmagic.common.errors import MemoryLimitError, WorkerCrashError, crash_message
from parmagic.data.shared_data import RunSharing, store
from parmagic.engine import memory_fit, warmup
from parmagic.engine.chunked import ChunkedRun
from parmagic.engine.loky_pool import LokyPool
from parmagic.engine.memory_limit import MemoryWatch
from parmagic.engine.out_of_memory import killed_since, kills
from parmagic.engine.worker_limits import WorkerLimits
from parmagic.runs.timing import worker_startup
from parmagic.transport.channels import NotSent
from parmagic.worker.batch import Batch
from parmagic.worker.chunk import Chunk


class LokyRun(ChunkedRun):
    """One map on joblib's loky pool (see ``ChunkedRun``). A dead worker
    breaks the whole pool: every chunk in flight fails with a
    ``WorkerCrashError`` and the next chunks go to a fresh pool."""

    def __init__(self, parallel, func, options, batch_size, n_items, n_workers, func_label,
                 private_pool=False, n_jobs=None, tiny_items=False, present=None,
                 limits=WorkerLimits()):
        # workers start with the first chunk (never, if every item is cached)
        self.pool = LokyPool(parallel, private=private_pool, workers=n_workers, n_jobs=n_jobs,
                             max_tasks=limits.max_tasks, warm_up=warmup.wait)
        self.sharing = RunSharing(store())
        self.present = present  # the notebook's present.Present, sent with each chunk
        self.fit_checked = False  # whether memory_fit looked at this run
        self.n_workers = n_workers
        self.memory_kills = kills()  # to tell a worker killed for memory (out_of_memory)
        self.max_memory = limits.max_memory  # --max-memory: workers past it are stopped
        self.memory_watch = None  # its memory_limit.MemoryWatch, from the first chunk on
        super().__init__(func, options, batch_size, n_items, n_workers, func_label, tiny_items,
                         max_chunk=limits.max_tasks)

    def _submit(self, chunk):
        if self.max_memory is not None and self.memory_watch is None:
            # here, not earlier: a run that never submits never stops it (_release)
            self.memory_watch = MemoryWatch(self.pool.worker_pids, self.max_memory)
        future = self.pool.submit(
            Chunk(self.func, chunk, self.options, self.sharing, present=self.present),
            items=len(chunk))
        if not self.fit_checked:  # after the first chunk: its pickles' sizes are known
            self.fit_checked = True
            memory_fit.check(self.sharing.function_bytes, self.sharing.chunk_bytes,
                             self.n_workers)
        return future

    def _wait(self, futures, timeout):
        return self.pool.wait(futures, timeout)

    def _submit_failed(self, exc, chunk):
        if not isinstance(exc, BrokenProcessPool):
            raise exc
        self.retry.append(chunk)  # a worker died since the last result
        yield from self._crashed(exc, None)

    def _failed(self, exc, chunk):
        if isinstance(exc, BrokenProcessPool):
            yield from self._crashed(exc, chunk)
        elif isinstance(exc, NotSent):
            yield from self._unsendable(chunk, exc)
        else:  # e.g. a result that cannot be unpickled here
            yield Batch.failed((index for index, _ in chunk), lambda: exc)

    def _abandon(self):
        """Kill this run's workers; the next submission starts fresh ones."""
        self.pool.kill()

    def _release(self):
        if self.memory_watch is not None:
            self.memory_watch.stop()
        self.pool.close()
        self.sharing.close()
        self.transfer = self.sharing.transfer()

    def startup(self, spans):
        """The run's wait for workers to start (``timing.WorkerStartup``),
        given its ``spans``, or None if it found them ready."""
        return worker_startup(self.pool.starts, spans, kept=not self.pool.private)

    def _crashed(self, exc, chunk):
        """A worker died: loky fails every chunk in flight, so all of them
        are reported, with what the exit code says about the cause."""
        lost = [chunk] if chunk is not None else []
        others = list(self.pending)
        self._wait_all(others, 5)
        for future in others:
            other_chunk, _ = self.pending.pop(future)
            if future.done() and future.exception() is None:
                yield future.result()
            else:
                lost.append(other_chunk)
        self._abandon()
        items = sorted(index for lost_chunk in lost for index, _ in lost_chunk)
        if items:
            message = self.memory_watch and self.memory_watch.message(items)
            error = WorkerCrashError if message is None else MemoryLimitError
            if message is None:
                message = crash_message(str(exc), items, killed_since(self.memory_kills))
            yield Batch.failed(items, lambda: error(message, items))

    def _stop_stuck(self, stuck):
        """Stop the workers (only that stops compiled code); chunks that
        were running beside the stuck ones go again."""
        for future in list(self.pending):
            if future.done():
                yield from self._settle(future)
            else:
                self.retry.append(self.pending.pop(future)[0])
        self._abandon()
        return (
            f"the item ran longer than its {self.options.timeout:g} s time limit "
            "and did not stop when told to: it was busy in compiled code, or in "
            "a blocking call that cannot be interrupted, so its worker process "
            f"was stopped after {self.hard_limit():g} s"
        )
