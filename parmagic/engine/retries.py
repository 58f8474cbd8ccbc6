"""``--retries N`` and ``--retry-on EXC,...``: items that fail for passing
reasons (a flaky connection, a worker that died) run again.

Where an item runs again depends on the path:

- loky and dask (``chunked.ChunkedRun``): the notebook decides. The
  collector sees every failure, the ones only the notebook can see included
  (a worker that died: ``WorkerCrashError``; an item stuck past its time
  limit), and hands the item back to the run, which submits it again on its
  own, after a crash to a fresh pool. A crash fails every item in flight,
  and it cannot be told which one caused it, so each of them counts an
  attempt; items that were only waiting to be sent count none.
- ``joblib.Parallel`` (threading, multiprocessing, sequential, ray): results
  come back in input order from a generator that takes no new work, so the
  worker calls the item again itself (:func:`call_with_retries`) and sends
  the failed attempts back beside the last one. A worker crash there is
  joblib's to report.

This module is imported in the workers (``call_with_retries``): it imports
nothing heavy.
"""

import builtins
import numbers
from typing import NamedTuple

from parmagic.common import errors
from parmagic.common.errors import (
    NotPicklableError,
    ParmagicInputError,
    WorkerCrashError,
)
from parmagic.worker.batch import Batch
from parmagic.worker.calls import call_item
from parmagic.worker.setup import setup_failed

# Failures retried only when --retry-on names them (or, for a crash, when
# --retry-on is not given): an item that cannot be pickled fails the same
# way each time, and a crash should not be retried because --retry-on
# names RuntimeError, its base class.
_ONLY_WHEN_NAMED = (WorkerCrashError, NotPicklableError)


class RetryPolicy(NamedTuple):
    """How many times a failed item runs again, and for which exceptions."""

    retries: int = 0
    retry_on: tuple = None  # exception classes; None: any exception

    def runs_again(self, error, attempts):
        """Whether an item that failed with ``error`` on its ``attempts``-th
        attempt runs again."""
        return attempts <= self.retries and self.allows(error)

    def allows(self, error):
        if setup_failed(error):  # SETUP (init=) failed: its run stops, retries or not
            return False
        special = next((cls for cls in _ONLY_WHEN_NAMED if isinstance(error, cls)), None)
        if special is not None:
            if self.retry_on is None:
                return special is WorkerCrashError
            return any(issubclass(cls, special) for cls in self.retry_on)
        return self.retry_on is None or isinstance(error, self.retry_on)


def check_retries(retries):
    """``retries`` as an int; a ``ParmagicInputError`` unless it is >= 0."""
    if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
        raise ParmagicInputError(
            f"retries must be a whole number >= 0 (how many more times a failed "
            f"item runs), not {retries!r}"
        )
    return int(retries)


def policy(retries, retry_on, namespace=None):
    """The run's ``RetryPolicy``: ``retry_on`` is None, an exception class,
    or names ("ConnectionError,TimeoutError") and classes, names looked up
    in ``namespace`` (the notebook's, or the mapped function's globals),
    then the builtins, then parmagic's own exceptions."""
    retries = check_retries(retries)
    if retry_on is None:
        return RetryPolicy(retries)
    classes = exception_classes(retry_on, namespace)
    if not retries:
        raise ParmagicInputError(
            "retry_on (--retry-on) says which exceptions are retried, but retries "
            "is 0: give retries=N (--retries N, or set ParMagic.retries)"
        )
    return RetryPolicy(retries, classes)


def exception_classes(spec, namespace=None):
    """The exception classes ``spec`` names (see ``policy``), as a tuple."""
    if isinstance(spec, str):
        spec = spec.split(",")
    elif isinstance(spec, type):
        spec = [spec]
    classes = tuple(_exception_class(part, namespace) for part in spec)
    if not classes:
        raise ParmagicInputError("retry_on (--retry-on) names no exception class")
    return classes


def _exception_class(part, namespace):
    if isinstance(part, str):
        name = part.strip()
        found = _lookup(name, namespace or {})
        if found is None:
            raise ParmagicInputError(
                f"retry_on (--retry-on): no exception class named {name!r} is defined (give "
                "builtin names such as ConnectionError,TimeoutError, or classes "
                "defined in the notebook)"
            )
        part = found
    if not (isinstance(part, type) and issubclass(part, BaseException)):
        raise ParmagicInputError(f"retry_on (--retry-on): {part!r} is not an exception class")
    return part


def _lookup(name, namespace):
    head, _, rest = name.partition(".")
    for source in (namespace, vars(builtins), vars(errors)):
        if head in source:
            value = source[head]
            for attribute in filter(None, rest.split(".")):  # module.ErrorClass
                value = getattr(value, attribute, None)
            return value
    return None


def call_with_retries(func, index, args, options, policy):
    """``worker.call_item``, called again while ``policy`` allows: a list
    of the Batches of every attempt, the last one last (runs in a worker)."""
    attempts = []
    while True:
        batch = call_item(func, index, args, options)
        attempts.append(batch)
        failure = batch.failures.get(index)
        if failure is None or not policy.runs_again(failure[0], len(attempts)):
            return attempts


class RetriedAttempt(Batch):
    """A failed attempt that its worker already ran again
    (``call_with_retries``): recorded, not submitted again. Made in the
    notebook, never pickled."""

    __slots__ = ()

    @classmethod
    def of(cls, batch):
        return cls(batch.indices, batch.values, batch.failures, batch.outputs,
                   batch.span, batch.changed_globals)


def without(batch, indices):
    """``batch`` less the items ``indices`` (a set), and its span (already
    recorded)."""
    keep = [position for position, index in enumerate(batch.indices) if index not in indices]
    return Batch(
        [batch.indices[position] for position in keep],
        [batch.values[position] for position in keep],
        {index: failure for index, failure in batch.failures.items() if index not in indices},
        {index: parts for index, parts in batch.outputs.items() if index not in indices},
        None,
        batch.changed_globals,
    )
