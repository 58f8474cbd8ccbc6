"""What a worker process keeps of a run between the run's chunks.

The chunks of one run carry the same pickled function; a worker unpickles
it once (a notebook function's unpickling costs more than a chunk of tiny
items), so its globals live on from one chunk of the run to the next, as
in any worker process, and the mutation check keeps its watch. The next
run starts from the notebook's values again, and the notebook says when a
run is over (``forget_runs``).

A function whose pickle holds nothing mutable (numbers, strings, modules,
builtins: see ``function_pickles``, whose notebook side then sends the very
same pickle again) is kept for the next run too, with its mutation watch,
and used again only if that pickle comes again and its run changed nothing
of it (no global rebound or added, no default or attribute changed): it is
then what unpickling would give, and a tiny chunk's worker is spared a
third of its work.
"""

import pickle
import threading

from parmagic.worker import fresh_modules, function_pickles
from parmagic.worker import setup as worker_setup


class KeptRun:
    """What a worker process keeps of one run between its chunks, per
    thread: the function, unpickled once (so its globals live on from
    chunk to chunk, as in any process, and a notebook function costs one
    unpickling, not one per chunk), and the mutation check's watch with
    the last fingerprints it took."""

    def __init__(self, func, data=None, state=None, watch=None):
        self.func = func
        self.watch = watch
        self.snapshot = None
        self.data = data  # the pickle the function came from
        self.state = state  # its _state as unpickled; None: never used again
        self.generation = fresh_modules.generation  # of the modules it was unpickled with


_reusable = None  # the KeptRun of the last run, whose function may serve the next


_kept = {}  # (run token, thread id) -> KeptRun, for the latest run only
_kept_lock = threading.Lock()


def forget_runs():
    """The notebook says its run is over: drop what this worker kept of it
    (the function and whatever its globals hold, and SETUP's), so that a
    large global does not stay in every worker until the next run."""
    global _reusable
    with _kept_lock:
        _reusable = next((kept for kept in _kept.values() if kept.state is not None), None)
        _kept.clear()
    worker_setup.forget_runs()


def kept_for(token, func_data, reuse=True):
    """The ``KeptRun`` of run ``token`` in this thread: the one its earlier
    chunks made, or a new one for the function pickled in ``func_data``
    (the last run's function, if that is its pickle and ``reuse``)."""
    key = (token, threading.get_ident())
    with _kept_lock:
        kept = _kept.get(key)
    if kept is None:
        kept = (reuse and _reused(func_data)) or _unpickled(func_data)
        with _kept_lock:
            if any(other != token for other, _ in _kept):
                _kept.clear()  # an earlier run's: its chunks are done here
            _kept[key] = kept
    return kept


def _reused(func_data):
    """A new KeptRun with the last run's function and watch, if ``func_data``
    is its pickle and the function is still as it was unpickled."""
    global _reusable
    with _kept_lock:
        last, _reusable = _reusable, None
    if last is None or last.data != func_data or last.generation != fresh_modules.generation:
        return None  # another function, or modules it may hold were dropped
    state = _state(last.func)
    if state is None or not function_pickles.same_objects(state, last.state):
        return None
    return KeptRun(last.func, func_data, last.state, last.watch)


def _unpickled(func_data):
    func = pickle.loads(func_data)
    return KeptRun(func, func_data, _state(func))


def _state(func):
    """What running ``func`` could have changed of it, as objects compared
    by identity; None if it holds something that could change in place."""
    if not function_pickles.holds_only_fixed_parts(func):
        return None
    namespace = tuple(func.__globals__.items())
    keyword_defaults = tuple((func.__kwdefaults__ or {}).items())
    if not all(name == "__builtins__" or function_pickles.fixed(value)
               for name, value in (*namespace, *keyword_defaults)):
        return None
    return (func.__code__, func.__defaults__, func.__name__, func.__qualname__,
            func.__module__, func.__doc__, len(namespace), len(keyword_defaults),
            *(part for pair in (*namespace, *keyword_defaults) for part in pair))
