"""The message a worker sends back for a chunk: which items gave which
values, which failed and why, what they printed.

A worker never raises for a failing item: the ``Batch`` says which items
failed and why, so the notebook side can attribute every error to its item
and keep every result that did finish.
"""

import pickle

import cloudpickle

from parmagic.common.errors import NotPicklableError
from parmagic.worker.error_transport import loads, pack_error, unpack_error

# Values of these types always pickle, by the standard pickler; other results
# are pickled once in the worker (see Batch.__reduce__) so that a failure is
# pinned on its own item.
PLAIN_TYPES = frozenset((type(None), bool, int, float, complex, str, bytes))


class Batch:
    """What happened to a chunk of items, in a form that pickles quickly.

    ``indices`` (a list, or a range for a whole chunk) and ``values`` run
    in parallel (a failed item's value is None); ``failures`` maps index ->
    (exception, traceback frames, see ``tracebacks.frames_of``);
    ``outputs`` maps index -> captured parts.
    ``span`` is (worker id, start time, wall seconds, CPU seconds) of the
    chunk's work, None for failures found outside a worker;
    ``changed_globals`` are the globals it changed; ``handed_back`` is how
    many of the chunk's last calls were not run (see
    ``CallOptions.hand_back_after``).
    """

    __slots__ = ("indices", "values", "failures", "outputs", "span",
                 "changed_globals", "handed_back")

    def __init__(self, indices=None, values=None, failures=None, outputs=None,
                 span=None, changed_globals=(), handed_back=0):
        self.indices = [] if indices is None else indices
        self.values = [] if values is None else values
        self.failures = {} if failures is None else failures
        self.outputs = {} if outputs is None else outputs
        self.span = span
        self.changed_globals = changed_globals
        self.handed_back = handed_back

    @classmethod
    def failed(cls, indices, make_error):
        """A batch in which every item failed with ``make_error()``."""
        indices = list(indices)
        failures = {index: (make_error(), []) for index in indices}
        return cls(indices, [None] * len(indices), failures)

    def __len__(self):
        return len(self.indices)

    def __reduce__(self):
        # Values that are not surely picklable are pickled one by one here,
        # so one that cannot be sent back fails alone, naming its item.
        values, packed = self.values, []
        # all plain is the common case, checked without a Python-level loop
        unsure = () if PLAIN_TYPES.issuperset(map(type, values)) else values
        for position, value in enumerate(unsure):
            if _surely_picklable(value):
                continue
            try:
                values[position] = cloudpickle.dumps(value)
                packed.append(position)
            except Exception as exc:
                values[position] = None
                self.failures[self.indices[position]] = (_result_not_picklable(value, exc), [])
        return self._reduced(packed)

    def _reduced(self, packed):
        failures = {
            index: (pack_error(error), frames)
            for index, (error, frames) in self.failures.items()
        }
        return (_rebuild, (self.indices, self.values, packed, failures, self.outputs,
                           self.span, self.changed_globals, self.handed_back))


class _AsItIs:
    """A ``Batch`` pickled without looking at its values one by one."""

    def __init__(self, batch):
        self.batch = batch

    def __reduce__(self):
        return self.batch._reduced([])


def dumps_batch(batch):
    """A worker's pickle of ``batch`` for the notebook: by the standard
    pickler in one go when it can, as it is; checking each value's type
    first (``Batch.__reduce__``) costs more than pickling plain values.
    If that fails (a value of a class defined in the notebook, which only
    cloudpickle sends, or one that cannot be sent at all), value by value."""
    try:
        return pickle.dumps(_AsItIs(batch), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)


def _rebuild(indices, values, packed, failures, *rest):
    for position in packed:
        values[position] = loads(values[position])
    failures = {
        index: (unpack_error(*packed_error), frames)
        for index, (packed_error, frames) in failures.items()
    }
    return Batch(indices, values, failures, *rest)


def _surely_picklable(value):
    if type(value) in PLAIN_TYPES:
        return True
    # numpy arrays and scalars without Python objects inside
    return getattr(getattr(value, "dtype", None), "hasobject", True) is False


def _result_not_picklable(value, exc):
    return NotPicklableError(
        f"the result, a {type(value).__name__}, cannot be sent back from the "
        f"worker process ({type(exc).__name__}: {exc}). Return plain data "
        "instead, or use the threading backend (-b threading), where nothing "
        "is pickled."
    )
