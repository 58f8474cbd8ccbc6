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
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool

from joblib import executor as joblib_executor
from joblib._parallel_backends import LokyBackend
from joblib.externals.loky import reusable_executor

from .chunked import ChunkedRun
from .errors import WorkerCrashError, crash_message
from .worker import Batch, Chunk

# An item that ignores its time limit (stuck in compiled code) is stopped
# this long after the limit, at the latest.
_TIMEOUT_GRACE = 2.0
# How the executor parmagic last configured was set up (see _executor_for).
_warm = {}


def uses_loky_pool(parallel, n_jobs):
    """True when ``parallel`` runs on loky with ``n_jobs`` > 1 workers."""
    return type(parallel._backend) is LokyBackend and n_jobs > 1


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


class LokyRun(ChunkedRun):
    """One map on joblib's loky pool (see ``ChunkedRun``). A dead worker
    breaks the whole pool: every chunk in flight fails with a
    ``WorkerCrashError`` and the next chunks go to a fresh pool."""

    def __init__(self, parallel, func, options, batch_size, n_items, n_workers, func_label):
        self.parallel = parallel
        self.executor = None  # acquired with the first chunk (none if all are cached)
        super().__init__(func, options, batch_size, n_items, n_workers, func_label)

    def _submit(self, chunk):
        if self.executor is None:  # the first chunk, or the last pool died
            self.executor, _ = _executor_for(self.parallel)
        use_this_runs_folder = functools.partial(
            self.executor._temp_folder_manager.set_current_context, self.parallel._id)
        return self.executor.submit(
            Chunk(self.func, chunk, self.options, use_this_runs_folder))

    def _wait(self, futures, timeout):
        return wait(futures, timeout, FIRST_COMPLETED).done

    def _submit_failed(self, exc, chunk):
        if not isinstance(exc, BrokenProcessPool):
            raise exc
        self.retry.append(chunk)  # a worker died since the last result
        yield from self._crashed(exc, None)

    def _failed(self, exc, chunk):
        if isinstance(exc, BrokenProcessPool):
            yield from self._crashed(exc, chunk)
        elif "Could not pickle the task" in str(exc):
            yield from self._unsendable(chunk)
        else:  # e.g. a result that cannot be unpickled here
            yield Batch.failed((index for index, _ in chunk), lambda: exc)

    def _abandon(self):
        """Kill the workers; the next submission starts a fresh pool."""
        if self.executor is not None:
            self.executor.terminate(kill_workers=True)
            self.executor = self.parallel._backend._workers = None

    def _release(self):
        backend = self.parallel._backend
        if getattr(backend, "_workers", None) is not None:  # a pool was used
            backend.terminate()  # frees this run's temporary folder

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
        self._abandon()
        items = sorted(index for lost_chunk in lost for index, _ in lost_chunk)
        if items:
            message = crash_message(str(exc), items)
            yield Batch.failed(items, lambda: WorkerCrashError(message, items))

    def _hard_limit(self):
        # the worker stops the item itself at the limit (SIGALRM); this is
        # for items that ignore it
        return self.options.timeout + max(_TIMEOUT_GRACE, self.options.timeout)

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
            "and did not stop when told to (busy in compiled code?), so its "
            "worker process was stopped"
        )
