"""Code that runs inside the worker processes (or threads).

Everything here is pickled to the workers, so it stays small and imports
nothing heavy. A worker never raises for a failing item: it returns an
``Outcome`` that says which item failed and why, so the notebook side can
attribute every error to its item and keep every result that did finish.
"""

import contextlib
import pickle
import signal
import threading
import time
from typing import NamedTuple

import cloudpickle

from .capture import capturing
from .errors import ItemExitError, ItemTimeoutError, NotPicklableError
from .mutation import GlobalWatch
from .tracebacks import frames_of

# Results of these types always pickle; others are pickled once in the worker
# (see Outcome.__reduce__) so that a failure is pinned on its own item.
_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes)


class CallOptions(NamedTuple):
    """What a worker does around each call."""

    watch_globals: bool = False  # fingerprint globals (mutation check)
    capture: bool = True  # capture print/stderr output per item
    timeout: float = None  # per-item time limit in seconds


class Outcome:
    """What happened to one item: its value, or the exception it raised with
    the frames of its traceback (see ``tracebacks.frames_of``), and what it
    printed. The last outcome of a chunk also carries the chunk's worker CPU
    time and the globals it changed."""

    __slots__ = ("index", "value", "error", "traceback", "output", "cpu_time",
                 "changed_globals")

    def __init__(self, index, value=None, error=None, traceback=None, output=None,
                 cpu_time=0.0, changed_globals=()):
        self.index = index
        self.value = value
        self.error = error
        self.traceback = traceback
        self.output = output
        self.cpu_time = cpu_time
        self.changed_globals = changed_globals

    @property
    def failed(self):
        return self.error is not None

    def __reduce__(self):
        value, packed, error = self.value, False, self.error
        if not _surely_picklable(value):
            try:
                value, packed = cloudpickle.dumps(value), True
            except Exception as exc:
                value, error = None, _result_not_picklable(value, exc)
        traceback = self.traceback if error is self.error else []
        return (_rebuild, (self.index, value, packed, error, traceback,
                           self.output, self.cpu_time, self.changed_globals))


def _rebuild(index, value, packed, *rest):
    return Outcome(index, pickle.loads(value) if packed else value, *rest)


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


def call_item(func, index, args, options=CallOptions()):
    """Call ``func(*args)`` for item ``index`` and report what happened."""
    return run_calls(func, [(index, args)], options)[0]


def run_calls(func, calls, options=CallOptions()):
    """An ``Outcome`` per ``(index, args)`` call. The globals are fingerprinted
    once around all the calls (cheap per chunk); CPU time and changed globals
    are reported on the last outcome."""
    watch = GlobalWatch(func) if options.watch_globals else None
    before = watch.snapshot() if watch else None
    clock = _cpu_clock()
    started = clock()
    outcomes = [_call(func, index, args, options) for index, args in calls]
    last = outcomes[-1]
    last.cpu_time = clock() - started
    if watch:
        last.changed_globals = watch.changed(before)
    return outcomes


def _cpu_clock():
    # A worker process's own CPU time includes threads it starts (BLAS);
    # in a thread of the notebook's process only that thread's time is ours.
    if threading.current_thread() is threading.main_thread():
        return time.process_time
    return time.thread_time


def _call(func, index, args, options):
    with capturing() if options.capture else contextlib.nullcontext() as parts:
        try:
            with time_limit(options.timeout):
                outcome = Outcome(index, value=func(*args))
        except SystemExit as exc:
            error = ItemExitError(f"the item called sys.exit({exc.code!r})")
            outcome = Outcome(index, error=error, traceback=frames_of(exc))
        except Exception as exc:
            outcome = Outcome(index, error=_portable(exc), traceback=frames_of(exc))
    outcome.output = parts or None
    return outcome


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
        return run_calls(self.func, self.calls, self.options)

    def __reduce__(self):
        if self.on_pickle is not None:
            self.on_pickle()
        return (Chunk, (self.func, self.calls, self.options))
