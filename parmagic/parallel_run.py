"""Backends other than the loky fast path, through ``joblib.Parallel``.

Results stream back in input order (``return_as="generator"``), except on
joblib's multiprocessing backend, which cannot stream and returns a list at
the end.
"""

import multiprocessing
import warnings

from joblib import delayed

from .errors import ItemTimeoutError
from .worker import Batch, call_item


class ParallelRun:
    """One map through ``parallel``. ``outcomes`` yields a ``Batch`` of one
    item at a time, in input order; ``stop`` ends the run."""

    def __init__(self, parallel, func, options):
        self.parallel = parallel
        self.func = func
        self.options = options
        self._results = None

    def outcomes(self, calls):
        __tracebackhide__ = True
        func, options = self.func, self.options
        self._results = self.parallel(
            delayed(call_item)(func, index, args, options) for index, args in calls
        )
        received = 0
        try:
            for batch in self._results:
                received += 1
                yield batch
        except (TimeoutError, multiprocessing.TimeoutError):  # the latter from ThreadPool
            # Only threads are timed from here (see engine): joblib gave up
            # waiting for the next item in order, which cannot be stopped.
            yield Batch.failed([received], lambda: ItemTimeoutError(
                f"the item ran longer than its {self.parallel.timeout:g} s time "
                "limit; a thread cannot be stopped, so it goes on in the "
                "background until it returns, and the run ended there"
            ))
        except Exception as exc:
            # The backend itself failed on the next item in order (a lost
            # connection, a task it could not send): the item gets the error
            # and the run ends there.
            yield Batch.failed([received], lambda: exc)

    def stop(self, grace):
        """Close joblib's generator, which cancels what has not started."""
        if hasattr(self._results, "close"):  # a list on backends that cannot stream
            with warnings.catch_warnings():
                # joblib counts the tasks it drops; the record says what ran
                warnings.filterwarnings("ignore", message=r".*tasks have been successfully")
                self._results.close()
        return []

