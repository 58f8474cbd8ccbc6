"""Code that runs inside the worker processes (or threads).

Everything here is pickled to the workers, so it stays small and imports
nothing heavy. A worker never raises for a failing item: it returns an
``Outcome`` that says which item failed and why, so the notebook side can
attribute every error to its item and keep every result that did finish.
"""

import pickle

from .mutation import GlobalWatch
from .tracebacks import frames_of


class Outcome:
    """What happened to one item: its value, or the exception it raised with
    the frames of its traceback (see ``tracebacks.frames_of``)."""

    __slots__ = ("index", "value", "error", "traceback", "changed_globals")

    def __init__(self, index, value=None, error=None, traceback=None, changed_globals=()):
        self.index = index
        self.value = value
        self.error = error
        self.traceback = traceback
        self.changed_globals = changed_globals

    @property
    def failed(self):
        return self.error is not None

    def __reduce__(self):
        return (
            Outcome,
            (self.index, self.value, self.error, self.traceback, self.changed_globals),
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


def call_item(func, index, args, watch_globals=False):
    """Call ``func(*args)`` for item ``index`` and report what happened."""
    return run_calls(func, [(index, args)], watch_globals)[0]


def run_calls(func, calls, watch_globals=False):
    """An ``Outcome`` per ``(index, args)`` call. With ``watch_globals`` the
    globals are fingerprinted once around all the calls (cheap per chunk) and
    the names that changed are reported on the last outcome."""
    watch = GlobalWatch(func) if watch_globals else None
    before = watch.snapshot() if watch else None
    outcomes = [_call(func, index, args) for index, args in calls]
    if watch:
        outcomes[-1].changed_globals = watch.changed(before)
    return outcomes


def _call(func, index, args):
    try:
        return Outcome(index, value=func(*args))
    except Exception as exc:
        return Outcome(index, error=_portable(exc), traceback=frames_of(exc))


class Chunk:
    """Several items sent to a worker as one task, to amortise dispatch.

    ``on_pickle`` runs in the parent just before the chunk is pickled: the
    loky path uses it to point joblib's memmapping reducers at this run's own
    temporary folder (what ``joblib.parallel.BatchedCalls`` does for Parallel).
    """

    def __init__(self, func, calls, watch_globals=False, on_pickle=None):
        self.func = func
        self.calls = calls  # list of (index, args)
        self.watch_globals = watch_globals
        self.on_pickle = on_pickle

    def __call__(self):
        return run_calls(self.func, self.calls, self.watch_globals)

    def __reduce__(self):
        if self.on_pickle is not None:
            self.on_pickle()
        return (Chunk, (self.func, self.calls, self.watch_globals))

