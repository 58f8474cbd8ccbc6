"""Code that runs inside the worker processes (or threads).

Everything here is pickled to the workers, so it stays small and imports
nothing heavy. A worker never raises for a failing item: it returns a
``Batch`` that says which items failed and why, so the notebook side can
attribute every error to its item and keep every result that did finish.
"""

import contextlib
import os
import pickle
import threading
import time
import types
import uuid
from typing import NamedTuple

import cloudpickle

from . import time_limits
from .capture import install as install_routers
from .capture import Sink, start_capture, stop_capture
from .error_transport import loads, pack_error, unpack_error
from .errors import ItemExitError, ItemTimeoutError, NotPicklableError
from .mutation import GlobalWatch
from .time_limits import TimeLimitReached, time_limit
from .tracebacks import frames_of
from .worker_process import prepare_worker

# Results of these types always pickle; others are pickled once in the worker
# (see Batch.__reduce__) so that a failure is pinned on its own item.
_PLAIN_TYPES = frozenset((type(None), bool, int, float, complex, str, bytes))


class CallOptions(NamedTuple):
    """What a worker does around each call."""

    watch_globals: bool = False  # fingerprint globals (mutation check)
    capture: bool = True  # capture print/stderr output per item
    timeout: float = None  # per-item time limit in seconds
    # How an item is stopped at its limit (see ``time_limit``): None lets the
    # worker choose, True forces the watchdog thread.
    watchdog: bool = None

    # What ``engine.run`` passes as ``watchdog``. Tests set it to True to
    # take, on Linux, the path of platforms without SIGALRM.
    force_watchdog = None


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
        # all plain is the common case, checked without a Python-level loop
        unsure = () if _PLAIN_TYPES.issuperset(map(type, values)) else values
        for position, value in enumerate(unsure):
            if _surely_picklable(value):
                continue
            try:
                values[position] = cloudpickle.dumps(value)
                packed.append(position)
            except Exception as exc:
                values[position] = None
                self.failures[self.indices[position]] = (_result_not_picklable(value, exc), [])
        failures = {
            index: (pack_error(error), frames)
            for index, (error, frames) in self.failures.items()
        }
        return (_rebuild, (self.indices, values, packed, failures, self.outputs,
                           self.span, self.changed_globals))


def _rebuild(indices, values, packed, failures, *rest):
    for position in packed:
        values[position] = loads(values[position])
    failures = {
        index: (unpack_error(*packed_error), frames)
        for index, (packed_error, frames) in failures.items()
    }
    return Batch(indices, values, failures, *rest)


def _surely_picklable(value):
    if type(value) in _PLAIN_TYPES:
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
    fingerprinted once around all the calls (cheap per chunk). ``func`` may
    be a ``Setup``: its SETUP runs first, where it has not run yet."""
    if isinstance(func, Setup):
        return func.run_calls(calls, options)
    watch = GlobalWatch(func) if options.watch_globals else None
    before = watch.snapshot() if watch else None
    clock = _cpu_clock()
    started, cpu_started = time.time(), clock()
    batch = Batch()
    if options.capture:
        install_routers()
        token, sink = start_capture(batch.outputs)
    else:
        token, sink = None, Sink({})  # moved along, never installed
    _item_state.depth = getattr(_item_state, "depth", 0) + 1
    try:
        if options.timeout is None:
            _call_each(func, calls, options, batch, sink)
        else:
            for index, args in calls:
                sink.index = index
                _call_limited(func, index, args, options, batch)
    finally:
        _item_state.depth -= 1
        if options.capture:
            stop_capture(token)
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


def _call_each(func, calls, options, batch, sink):
    """The calls without a time limit: the per-item loop of tiny items, so
    it does only what each item needs (mark it for capture, call, keep)."""
    indices, values = batch.indices, batch.values
    for index, args in calls:
        sink.index = index
        try:
            value = func(*args)
        except (Exception, SystemExit) as exc:
            value = None
            batch.failures[index] = _failure(exc, options)
        indices.append(index)
        values.append(value)


def _call_limited(func, index, args, options, batch):
    value = None
    try:
        with time_limit(options.timeout, options.watchdog):
            value = func(*args)
    except (Exception, SystemExit) as exc:
        batch.failures[index] = _failure(exc, options)
    batch.indices.append(index)
    batch.values.append(value)


def _failure(exc, options):
    """(exception, traceback frames) for an item that raised ``exc``; the
    exception is packed in ``Batch.__reduce__``."""
    if isinstance(exc, SystemExit):
        return ItemExitError(f"the item called sys.exit({exc.code!r})"), frames_of(exc)
    if isinstance(exc, TimeLimitReached) and options.timeout is not None:
        error = ItemTimeoutError(
            f"the item ran longer than its {options.timeout:g} s time limit")
        frames = frames_of(exc)
        while frames and frames[-1][0] == time_limits.__file__:  # the alarm's handler
            frames.pop()
        return error, frames
    return exc, frames_of(exc)


class Chunk:
    """Several items sent to a worker as one task, to amortise dispatch.

    With ``sharing`` (a ``shared_data.RunSharing``, on the loky path) the
    chunk pickles itself, large arrays going through shared memory: as it
    is pickled in the parent, only small references travel.
    """

    def __init__(self, func, calls, options=CallOptions(), sharing=None):
        self.func = func
        self.calls = calls  # list of (index, args)
        self.options = options
        self.sharing = sharing

    def __call__(self):
        prepare_worker()
        return run_calls(self.func, self.calls, self.options)

    def __reduce__(self):
        if self.sharing is None:
            return (Chunk, (self.func, self.calls, self.options))
        return (_unpickled_chunk, (self.sharing.dumps_once(self.func),
                                   self.sharing.dumps((self.calls, self.options))))


def _unpickled_chunk(func_data, data):
    return Chunk(pickle.loads(func_data), *pickle.loads(data))


class Setup:
    """``init=SETUP`` for one run: SETUP and the mapped function travel
    together, and SETUP runs once in each worker before its first item.

    Pickled, the two go in one pickle, so that notebook functions share one
    globals dict in the worker (cloudpickle gives the functions of one
    namespace one dict per pickle): what SETUP assigns with ``global`` is
    what the function reads. A worker process keeps the first copy it
    unpickles for the run (``token``), so SETUP runs once per process and
    every later chunk sees its globals. In the notebook's own process
    (threading, sequential) each thread gets its own copy of the namespace
    instead (``_own_namespace``), and the notebook's stays as it was.
    """

    def __init__(self, init, func, init_label="SETUP", token=None, shipped=False):
        self.init = init
        self.func = func
        self.init_label = init_label
        self.__name__ = getattr(func, "__name__", "func")  # names dask tasks
        self.token = token or uuid.uuid4().hex
        self.shipped = shipped  # unpickled in a worker process
        self._lock = threading.Lock()
        self._ready = {}  # thread id, or None in a worker process -> (func, failure)
        self._assigned = set()  # the globals SETUP bound: the worker's own state

    def __reduce__(self):
        return (_setup_in_worker, (self.token, self.init, self.func))

    def run_calls(self, calls, options):
        """``run_calls`` once SETUP has run here; what SETUP prints goes
        with the first item."""
        first = calls[0][0]
        printed = {}
        func, failure = self._prepared(printed if options.capture else None, first)
        if failure is None:
            batch = run_calls(func, calls, options)
            if batch.changed_globals and self._assigned:
                # what SETUP built is meant to live in the worker: using
                # it is no change lost to the notebook
                batch.changed_globals = [name for name in batch.changed_globals
                                         if name not in self._assigned]
        else:  # none of the items can run
            indices = [index for index, _ in calls]
            batch = Batch(indices, [None] * len(indices), dict.fromkeys(indices, failure))
        if printed:
            batch.outputs[first] = printed[first] + batch.outputs.get(first, [])
        return batch

    def _prepared(self, outputs, index):
        key = None if self.shipped else threading.get_ident()
        ready = self._ready.get(key)
        if ready is None:
            # the threads of one process (dask) wait for one SETUP; the
            # notebook's threads each run their own, side by side
            with self._lock if self.shipped else contextlib.nullcontext():
                ready = self._ready.get(key)
                if ready is None:
                    ready = self._ready[key] = self._set_up(outputs, index)
        return ready

    def _set_up(self, outputs, index):
        """Run SETUP: (the function to call, None), or (None, failure)."""
        init, func = self.init, self.func
        if not self.shipped:
            init, func = _own_namespace(init, func)
        if outputs is not None:
            install_routers()
            token, sink = start_capture(outputs)
            sink.index = index
        namespace = init.__globals__ if isinstance(init, types.FunctionType) else {}
        before = dict(namespace)
        try:
            init()
        except (Exception, SystemExit) as exc:
            error = exc
            if isinstance(exc, SystemExit):
                error = ItemExitError(f"SETUP called sys.exit({exc.code!r})")
            setattr(error, _SETUP_FAILED, True)
            return None, (error, frames_of(exc))
        finally:
            if outputs is not None:
                stop_capture(token)
        self._assigned.update(name for name, value in list(namespace.items())
                              if before.get(name, _UNSET) is not value)
        return func, None


_SETUP_FAILED = "_parmagic_setup_failed"
_UNSET = object()


def setup_failed(error):
    """Whether ``error`` is SETUP's (``init=``): no item of its worker ran."""
    return getattr(error, _SETUP_FAILED, False) is True


_shipped = {}  # in a worker process: run token -> its Setup (the latest run's)
_shipped_lock = threading.Lock()


def _setup_in_worker(token, init, func):
    """The run's ``Setup`` in this worker process: the copy the first chunk
    brought, so that all chunks call one function with SETUP's globals. An
    earlier run's is dropped, with whatever its SETUP loaded."""
    with _shipped_lock:
        setup = _shipped.get(token)
        if setup is None:
            _shipped.clear()
            setup = _shipped[token] = Setup(init, func, token=token, shipped=True)
    return setup


def _own_namespace(init, func):
    """SETUP and the function rebound to a copy of SETUP's namespace (the
    notebook's), for one thread: what SETUP assigns stays in the copy. The
    functions defined in it are rebound too, so that helpers the function
    calls by name see SETUP's globals as well."""
    if not isinstance(init, types.FunctionType):
        return init, func  # a callable object or a builtin assigns no globals
    namespace = init.__globals__
    copy = dict(namespace)
    for name, value in list(copy.items()):
        copy[name] = _rebound(value, namespace, copy)
    return _rebound(init, namespace, copy), _rebound(func, namespace, copy)


def _rebound(value, namespace, copy):
    """``value`` reading ``copy`` if it is a function of ``namespace``."""
    if not isinstance(value, types.FunctionType) or value.__globals__ is not namespace:
        return value
    function = types.FunctionType(value.__code__, copy, value.__name__,
                                  value.__defaults__, value.__closure__)
    function.__kwdefaults__ = value.__kwdefaults__
    function.__qualname__ = value.__qualname__
    function.__dict__.update(value.__dict__)
    return function
