"""Backends other than the loky fast path, through ``joblib.Parallel``.

Results stream back in input order (``return_as="generator"``), except on
joblib's multiprocessing backend, which cannot stream and returns a list at
the end.
"""

import collections
import contextlib
import functools
import multiprocessing
import pickle
import threading
import warnings

import cloudpickle
from joblib import delayed, wrap_non_picklable_objects

from parmagic.common import joblib_internals as internals
from parmagic.common.errors import ItemTimeoutError
from parmagic.data import shared_data
from parmagic.engine.retries import RetriedAttempt, RetryPolicy, call_with_retries
from parmagic.worker.batch import Batch
from parmagic.worker.calls import call_item
from parmagic.worker.present import in_present

# An item that ignores its time limit (a thread in compiled code) is given
# up on this long after the limit, at the latest (as pool.LokyRun does).
_TIMEOUT_GRACE = 2.0


class ParallelRun:
    """One map through ``parallel``. ``outcomes`` yields a ``Batch`` of one
    item at a time, in input order; ``stop`` ends the run. An item that may
    run again (``retries``) is called again by its worker, which sends back
    its failed attempts (as ``RetriedAttempt``) before its last one."""

    def __init__(self, parallel, func, options, retries=RetryPolicy(), present=None,
                 by_value=None):
        self.parallel = parallel
        # joblib's multiprocessing pool pickles tasks with the standard
        # pickler, which finds a notebook function by name only in a forked
        # worker, and a lambda nowhere: "function" sends the function by
        # value, "call" the items too (workers started by spawn or
        # forkserver have no copy of the notebook's classes either)
        self.by_value = by_value
        self.func = _ByValue(func) if by_value else func
        self.options = options
        self.retries = retries
        self.present = present  # for worker processes: see present.in_present
        self._results = None

    @staticmethod
    def gives_up_after(timeout, attempts=1):
        """joblib's ``Parallel.timeout`` for a per-item ``timeout``: the
        worker stops an item at its limit (Python code, even in a thread, see
        ``worker.time_limit``); this is for an item that does not stop. Each
        of an item's ``attempts`` has the full limit."""
        if timeout is None:
            return None
        return attempts * timeout + max(_TIMEOUT_GRACE, timeout)

    def outcomes(self, calls):
        __tracebackhide__ = True
        func, options, retries = self.func, self.options, self.retries
        present = self.present
        # the indices joblib has taken and not answered yet, oldest first: a
        # failure joblib raises belongs to the oldest (results come in
        # order), and the calls need not be 0, 1, 2... (cached items skipped)
        taken = collections.deque()
        calls = _noting(calls, taken)
        target, extra = (call_with_retries, (options, retries)) if retries.retries else (
            call_item, (options,))
        if present is None and not retries.retries:
            call = functools.partial(target, func)
        else:
            call = functools.partial(in_present, present, target, func)
        if self.by_value == "call":
            tasks = (delayed(wrap_non_picklable_objects(
                functools.partial(call, index, args, *extra), keep_wrapper=False))()
                for index, args in calls)
        else:
            tasks = (delayed(call)(index, args, *extra) for index, args in calls)
        pool = internals.runs_multiprocessing_pool(self.parallel)
        if pool:  # joblib's own temporary folder goes where only this user can read
            internals.keep_memmaps_in(self.parallel, shared_data.store().private_folder())
        with _forkserver_use() if pool else contextlib.nullcontext():
            self._results = self.parallel(tasks)  # a list: the pool has ended
        try:
            for batch in self._results:
                taken.popleft()
                if isinstance(batch, list):  # call_with_retries: every attempt
                    *failed, batch = batch
                    yield from map(RetriedAttempt.of, failed)
                yield batch
        except (TimeoutError, multiprocessing.TimeoutError):  # the latter from ThreadPool
            # joblib gave up waiting for the next item in order: it did not
            # stop at its limit, so it is in code that cannot be interrupted.
            if not taken:
                raise
            yield Batch.failed([taken[0]], lambda: ItemTimeoutError(
                f"the item ran longer than its {self.options.timeout:g} s time limit "
                "and did not stop when told to: it is busy in compiled code or a "
                "blocking call (time.sleep, I/O), where a thread cannot be "
                "interrupted, so it goes on in the background until that call "
                "returns, and the run ended there"
            ))
        except Exception as exc:
            # The backend itself failed on the next item in order (a lost
            # connection, a task it could not send): the item gets the error
            # and the run ends there.
            if not taken:  # not an item's: the backend could not start
                raise
            yield Batch.failed([taken[0]], lambda error=exc: error)

    def stop(self, grace):
        """Close joblib's generator, which cancels what has not started."""
        if hasattr(self._results, "close"):  # a list on backends that cannot stream
            with warnings.catch_warnings():
                # joblib counts the tasks it drops; the record says what ran
                warnings.filterwarnings("ignore", message=r".*tasks have been successfully")
                warnings.filterwarnings("ignore", message=r".*tasks which were still being")
                self._results.close()
        return []


# The multiprocessing backend's pool starts its workers from a forkserver
# (Linux's default start method from Python 3.14), which stays after the pool
# ends, as a warm pool does; shutdown_workers stops one that a run started,
# once no run uses it (one the notebook started itself is left alone).
_forkserver_lock = threading.Lock()
_forkserver_runs = 0
_forkserver_ours = False


@contextlib.contextmanager
def _forkserver_use():
    global _forkserver_runs, _forkserver_ours
    with _forkserver_lock:
        _forkserver_runs += 1
        running_before = internals.forkserver_running()
    try:
        yield
    finally:
        with _forkserver_lock:
            _forkserver_runs -= 1
            if not running_before and internals.forkserver_running():
                _forkserver_ours = True


def stop_own_forkserver():
    """Stop the forkserver that multiprocessing runs started, unless one is
    still going (its workers' exit codes come through the server)."""
    global _forkserver_ours
    with _forkserver_lock:
        if _forkserver_ours and not _forkserver_runs:
            internals.stop_forkserver()
            _forkserver_ours = False


class _ByValue:
    """A function cloudpickled once for the whole run, loaded again where
    each task is unpickled. Called where it was made (joblib runs a
    one-worker pool in the notebook's process), it is the function itself."""

    def __init__(self, func):
        self.func = func
        self.data = cloudpickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def __reduce__(self):
        return cloudpickle.loads, (self.data,)


def _noting(calls, taken):
    """``calls``, each index put in ``taken`` as joblib takes it."""
    for index, args in calls:
        taken.append(index)
        yield index, args
