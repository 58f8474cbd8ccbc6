"""Code that runs inside the worker processes (or threads).

Everything here is pickled to the workers, so it stays small and imports
nothing heavy. A worker never raises for a failing item: it returns a
``Batch`` that says which items failed and why, so the notebook side can
attribute every error to its item and keep every result that did finish.
"""

import contextlib
import os
import pickle
import signal
import threading
import time
from typing import NamedTuple

import cloudpickle

from .capture import install as install_routers
from .capture import start_capture, stop_capture
from .errors import ItemExitError, ItemTimeoutError, NotPicklableError
from .mutation import GlobalWatch
from .tracebacks import frames_of

# Results of these types always pickle; others are pickled once in the worker
# (see Batch.__reduce__) so that a failure is pinned on its own item.
_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes)


class CallOptions(NamedTuple):
    """What a worker does around each call."""

    watch_globals: bool = False  # fingerprint globals (mutation check)
    capture: bool = True  # capture print/stderr output per item
    timeout: float = None  # per-item time limit in seconds


class Batch:
    """What happened to a chunk of items, in a form that pickles quickly.

    ``indices`` and ``values`` run in parallel (a failed item's value is
    None); ``failures`` maps index -> (exception, traceback frames, see
    ``tracebacks.frames_of``); ``outputs`` maps index -> captured parts.
    ``span`` is (worker id, start time, wall seconds, CPU seconds) of the
    chunk's work, None for failures found outside a worker;
    ``changed_globals`` are the globals it changed.
    """

    __slots__ = ("indices", "values", "failures", "outputs", "span",
                 "changed_globals")

    def __init__(self, indices=None, values=None, failures=None, outputs=None,
                 span=None, changed_globals=()):
        self.indices = [] if indices is None else indices
        self.values = [] if values is None else values
        self.failures = {} if failures is None else failures
        self.outputs = {} if outputs is None else outputs
        self.span = span
        self.changed_globals = changed_globals

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
        for position, value in enumerate(values):
            if _surely_picklable(value):
                continue
            try:
                values[position] = cloudpickle.dumps(value)
                packed.append(position)
            except Exception as exc:
                values[position] = None
                self.failures[self.indices[position]] = (_result_not_picklable(value, exc), [])
        return (_rebuild, (self.indices, values, packed, self.failures, self.outputs,
                           self.span, self.changed_globals))


def _rebuild(indices, values, packed, *rest):
    for position in packed:
        values[position] = pickle.loads(values[position])
    return Batch(indices, values, *rest)


def _surely_picklable(value):
    if isinstance(value, _PLAIN_TYPES):
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


class RemoteTraceback(Exception):
    """Carries the worker's traceback text; set as the ``__cause__`` of an
    exception re-raised in the notebook, so the user sees their own code."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


def _portable(exc):
    """The exception itself when it survives pickling, else a stand-in that
    keeps its type name and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__qualname__}: {exc}")


_item_state = threading.local()


def inside_item():
    """Whether this thread is running a mapped item right now (so a ``pmap``
    called here is nested in another)."""
    return getattr(_item_state, "depth", 0) > 0


def call_item(func, index, args, options=CallOptions()):
    """Call ``func(*args)`` for item ``index`` and report what happened."""
    return run_calls(func, [(index, args)], options)


def run_calls(func, calls, options=CallOptions()):
    """A ``Batch`` for the ``(index, args)`` calls. The globals are
    fingerprinted once around all the calls (cheap per chunk)."""
    watch = GlobalWatch(func) if options.watch_globals else None
    before = watch.snapshot() if watch else None
    clock = _cpu_clock()
    started, cpu_started = time.time(), clock()
    batch = Batch()
    if options.capture:
        install_routers()
    _item_state.depth = getattr(_item_state, "depth", 0) + 1
    try:
        for index, args in calls:
            _call(func, index, args, options, batch)
    finally:
        _item_state.depth -= 1
    worker = (os.getpid(), threading.get_ident())
    batch.span = (worker, started, time.time() - started, clock() - cpu_started)
    if watch:
        batch.changed_globals = watch.changed(before)
    return batch


def _cpu_clock():
    # A worker process's own CPU time includes threads it starts (BLAS);
    # in a thread of the notebook's process only that thread's time is ours.
    if threading.current_thread() is threading.main_thread():
        return time.process_time
    return time.thread_time


def _call(func, index, args, options, batch):
    parts = start_capture() if options.capture else None
    value = None
    try:
        if options.timeout:
            with time_limit(options.timeout):
                value = func(*args)
        else:
            value = func(*args)
    except SystemExit as exc:
        error = ItemExitError(f"the item called sys.exit({exc.code!r})")
        batch.failures[index] = (error, frames_of(exc))
    except Exception as exc:
        batch.failures[index] = (_portable(exc), frames_of(exc))
    finally:
        if options.capture:
            stop_capture(parts)
    batch.indices.append(index)
    batch.values.append(value)
    if parts and parts[1]:
        batch.outputs[index] = parts[1]


def can_interrupt_items():
    """Whether ``time_limit`` can stop an item here: only the main thread of
    a process receives the alarm signal."""
    return hasattr(signal, "setitimer") and (
        threading.current_thread() is threading.main_thread()
    )


@contextlib.contextmanager
def time_limit(seconds):
    """Raise ``ItemTimeoutError`` in the running code after ``seconds``."""
    if not seconds or not can_interrupt_items():
        yield
        return

    def expired(signum, frame):
        raise ItemTimeoutError(f"the item ran longer than its {seconds:g} s time limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _leave_interrupts_to_the_notebook():
    """In a worker process, ignore SIGINT. Jupyter's interrupt (and Ctrl-C
    in a terminal) reaches the whole process group; the notebook side stops
    a foreground run and its workers itself, and a background run must not
    die because another cell was interrupted."""
    global _interrupts_ignored
    if not _interrupts_ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _interrupts_ignored = True


_interrupts_ignored = False


class Chunk:
    """Several items sent to a worker as one task, to amortise dispatch.

    ``on_pickle`` runs in the parent just before the chunk is pickled: the
    loky path uses it to point joblib's memmapping reducers at this run's own
    temporary folder (what ``joblib.parallel.BatchedCalls`` does for Parallel).
    """

    def __init__(self, func, calls, options=CallOptions(), on_pickle=None):
        self.func = func
        self.calls = calls  # list of (index, args)
        self.options = options
        self.on_pickle = on_pickle

    def __call__(self):
        _leave_interrupts_to_the_notebook()
        return run_calls(self.func, self.calls, self.options)

    def __reduce__(self):
        if self.on_pickle is not None:
            self.on_pickle()
        return (Chunk, (self.func, self.calls, self.options))
