"""The fast path: joblib's loky pool driven through its futures.

``joblib.Parallel`` sleeps 10 ms in its result loop whenever a result is not
ready, a floor under every call. Here the same pool that ``Parallel`` uses
(``joblib.executor.get_memmapping_executor``) is driven directly: chunks are
submitted as futures and collected with ``concurrent.futures.wait``, which
wakes as soon as a result arrives.

The pool is configured through the ``Parallel`` object itself, so it is built
with exactly the arguments ``Parallel`` would use and the user's own
``joblib.Parallel`` calls keep reusing the same warm workers. Large numpy
arrays are memmapped into a temporary folder registered for this run only and
removed at its end (as ``LokyBackend.configure`` / ``terminate`` do).

Failures a worker cannot report itself are turned into per-item outcomes
here: a worker process that died (``WorkerCrashError`` for the items in
flight), an item or function that cannot be pickled (``NotPicklableError``
naming it), and an item stuck past its time limit in code that ignores
signals (``ItemTimeoutError``; its worker is stopped).
"""

import functools
import math
import time
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool

from joblib import executor as joblib_executor
from joblib._parallel_backends import LokyBackend
from joblib.externals.loky import reusable_executor

from . import pickling
from .errors import ItemTimeoutError, WorkerCrashError, crash_message
from .worker import Batch, Chunk

# Chunks in flight per worker: enough to keep workers busy while results
# travel back, small enough that a generator is read only a little ahead.
_IN_FLIGHT_PER_WORKER = 2
# Adaptive chunking for inputs of unknown length: grow chunks while they come
# back faster than this many seconds, up to _MAX_CHUNK items.
_TARGET_CHUNK_SECONDS = 0.05
_MAX_CHUNK = 1024
# An item that ignores its time limit (stuck in compiled code) is stopped
# this long after the limit, at the latest.
_TIMEOUT_GRACE = 2.0
# How the executor parmagic last configured was set up (see _executor_for).
_warm = {}


def uses_loky_pool(parallel):
    """True when ``parallel`` would run on loky with more than one worker."""
    backend = parallel._backend
    return type(backend) is LokyBackend and parallel._effective_n_jobs() > 1


def _executor_for(parallel):
    """The loky executor for this run and its worker count.

    A warm pool that nothing has reconfigured since parmagic configured it is
    reused as is, with only this run's memmapping context registered: going
    through ``get_memmapping_executor`` again would leave an empty temporary
    folder behind on every call.
    """
    backend = parallel._backend
    n_workers = backend.effective_n_jobs(parallel.n_jobs)
    key = repr((n_workers, backend._prepare_worker_env(n_jobs=n_workers),
                backend.backend_kwargs, parallel._backend_kwargs))
    executor = reusable_executor._executor
    if (
        executor is not None
        and executor is _warm.get("executor")
        and key == _warm.get("key")
        and joblib_executor._executor_args is _warm.get("args")
        and not (executor._flags.broken or executor._flags.shutdown)
    ):
        executor._temp_folder_manager.register_new_context(parallel._id)
        backend._workers, backend.parallel = executor, parallel
        return executor, n_workers
    n_workers = parallel._initialize_backend()
    _warm.update(executor=backend._workers, key=key, args=joblib_executor._executor_args)
    return backend._workers, n_workers


class _ChunkSizer:
    """Items per chunk. "auto" starts at one item and doubles while chunks
    come back quickly, so slow items travel one by one (each result, and
    each interrupt, is per item) while tiny items soon travel in bulk. With
    a known length, a chunk is at most a quarter of each worker's share."""

    def __init__(self, batch_size, n_items, n_workers):
        self.fixed = batch_size != "auto"
        self.size = batch_size if self.fixed else 1
        self.limit = _MAX_CHUNK
        if n_items is not None:
            self.limit = max(1, min(_MAX_CHUNK, math.ceil(n_items / (4 * n_workers))))

    def observe(self, n_items, seconds):
        """Grow towards chunks of _TARGET_CHUNK_SECONDS after a full chunk
        came back faster than that (``seconds`` includes queueing, so the
        estimate errs towards smaller chunks)."""
        if self.fixed or n_items < self.size or seconds >= _TARGET_CHUNK_SECONDS:
            return
        fitting = int(_TARGET_CHUNK_SECONDS * n_items / max(seconds, 1e-6))
        self.size = min(max(self.size * 2, fitting), self.limit)


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


class LokyRun:
    """One map on the loky pool. ``outcomes`` yields a ``Batch`` per finished
    chunk (not in input order); ``stop`` ends the run.

    With a time limit, items go one at a time and one per worker, so each
    is running from the moment it is submitted and a stuck one can be found.
    """

    def __init__(self, parallel, func, options, batch_size, n_items, func_label):
        self.parallel = parallel
        self.func = func
        self.options = options
        self.func_label = func_label
        self.executor, n_workers = _executor_for(parallel)
        timed = options.timeout is not None
        self.max_pending = n_workers * (1 if timed else _IN_FLIGHT_PER_WORKER)
        self.sizer = _ChunkSizer(1 if timed else batch_size, n_items, n_workers)
        self.pending = {}  # future -> (chunk, submit time)
        self.retry = []  # chunks to submit again (see _unsendable, _expire_stuck)

    def outcomes(self, calls):
        __tracebackhide__ = True
        chunks = _chunks(iter(calls), self.sizer)
        try:
            while True:
                broken = self._fill(chunks)
                if broken is not None:  # a worker died since the last result
                    yield from self._crashed(broken, None)
                    continue
                if not self.pending:
                    return
                done, _ = wait(self.pending, self._wait_timeout(), FIRST_COMPLETED)
                if not done:
                    yield from self._expire_stuck()
                for future in done:
                    if future in self.pending:  # not already settled by a crash
                        yield from self._settle(future)
        except KeyboardInterrupt:
            self._discard_executor()  # busy workers would delay the next call
            raise

    def stop(self, grace):
        """Stop submitting, cancel what has not started, give running chunks
        ``grace`` seconds, stop the workers if some are still busy, and
        return the outcomes of chunks that finished meanwhile."""
        self.retry.clear()
        for future in self.pending:
            future.cancel()
        running = [future for future in self.pending if not future.cancelled()]
        if running and grace:
            wait(running, grace)
        finished = [
            future.result()
            for future in running
            if future.done() and future.exception() is None
        ]
        if any(not future.done() for future in running):
            self._discard_executor()
        self.pending.clear()
        self.parallel._backend.terminate()  # frees this run's temporary folder
        return finished

    # -- submitting -----------------------------------------------------------
    def _fill(self, chunks):
        """Submit chunks up to the in-flight limit; return loky's error if
        the pool turns out to be broken (the chunk waits in ``retry``)."""
        while len(self.pending) < self.max_pending:
            chunk = self.retry.pop() if self.retry else next(chunks, None)
            if chunk is None:
                return None
            if self.executor is None:  # the last one crashed or was stopped
                self.executor, _ = _executor_for(self.parallel)
            use_this_runs_folder = functools.partial(
                self.executor._temp_folder_manager.set_current_context, self.parallel._id)
            task = Chunk(self.func, chunk, self.options, use_this_runs_folder)
            try:
                future = self.executor.submit(task)
            except BrokenProcessPool as exc:
                self.retry.append(chunk)
                return exc
            self.pending[future] = (chunk, time.perf_counter())
        return None

    def _discard_executor(self):
        """Kill the workers; the next submission starts a fresh pool."""
        if self.executor is not None:
            self.executor.terminate(kill_workers=True)
            self.executor = self.parallel._backend._workers = None

    # -- collecting -----------------------------------------------------------
    def _settle(self, future):
        chunk, submitted = self.pending.pop(future)
        try:
            outcomes = future.result()
        except BrokenProcessPool as exc:
            yield from self._crashed(exc, chunk)
            return
        except Exception as exc:
            if "Could not pickle the task" in str(exc):
                yield from self._unsendable(chunk)
            else:  # e.g. a result that cannot be unpickled here
                yield Batch.failed((index for index, _ in chunk), lambda: exc)
            return
        self.sizer.observe(len(chunk), time.perf_counter() - submitted)
        yield outcomes

    def _crashed(self, exc, chunk):
        """A worker died: loky fails every chunk in flight, so all of them
        are reported, with what the exit code says about the cause."""
        lost = [chunk] if chunk is not None else []
        others = list(self.pending)
        wait(others, 5)
        for future in others:
            other_chunk, _ = self.pending.pop(future)
            if future.done() and future.exception() is None:
                yield future.result()
            else:
                lost.append(other_chunk)
        self._discard_executor()
        items = sorted(index for lost_chunk in lost for index, _ in lost_chunk)
        if items:
            message = crash_message(str(exc), items)
            yield Batch.failed(items, lambda: WorkerCrashError(message, items))

    def _unsendable(self, chunk):
        """The chunk could not be pickled: name the culprit. An unpicklable
        function ends the run; unpicklable items fail, the rest go again."""
        __tracebackhide__ = True
        error = pickling.function_error(self.func, self.func_label)
        if error is not None:
            raise error from None
        failed, sendable = Batch(), []
        for index, args in chunk:
            error = pickling.item_error(index, args[0] if len(args) == 1 else args, args)
            if error is None:
                sendable.append((index, args))
            else:
                failed.indices.append(index)
                failed.values.append(None)
                failed.failures[index] = (error, [])
        if not failed:  # only the combination fails: report the whole chunk
            error = pickling.item_error(chunk[0][0], [a for _, a in chunk], chunk)
            failed = Batch.failed((index for index, _ in chunk), lambda: error)
            sendable = []
        if sendable:
            self.retry.append(sendable)
        yield failed

    def _wait_timeout(self):
        if self.options.timeout is None:
            return None
        oldest = min(submitted for _, submitted in self.pending.values())
        return max(0.0, oldest + self._hard_limit() - time.perf_counter())

    def _hard_limit(self):
        return self.options.timeout + max(_TIMEOUT_GRACE, self.options.timeout)

    def _expire_stuck(self):
        """Items past their limit that did not stop (busy in compiled code):
        stop the workers, fail those items, run the others again."""
        now = time.perf_counter()
        stuck = [
            future for future, (_, submitted) in self.pending.items()
            if not future.done() and now - submitted >= self._hard_limit()
        ]
        if not stuck:
            return
        stuck_items = [index for future in stuck for index, _ in self.pending.pop(future)[0]]
        for future in list(self.pending):
            if future.done():
                yield from self._settle(future)
            else:
                self.retry.append(self.pending.pop(future)[0])
        self._discard_executor()
        message = (
            f"the item ran longer than its {self.options.timeout:g} s time limit "
            "and did not stop when told to (busy in compiled code?), so its "
            "worker process was stopped"
        )
        yield Batch.failed(stuck_items, lambda: ItemTimeoutError(message))
