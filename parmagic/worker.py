"""Code that runs inside the worker processes (or threads).

Everything here is pickled to the workers, so it stays small and imports
nothing heavy. A worker never raises for a failing item: it returns a
``Batch`` that says which items failed and why, so the notebook side can
attribute every error to its item and keep every result that did finish.
"""

import os
import pickle
import threading
import time
from typing import NamedTuple

import cloudpickle

from . import fresh_modules, seeding, time_limits
from .capture import install as install_routers
from .capture import Sink, start_capture, stop_capture
from .error_transport import loads, pack_error, unpack_error
from .errors import ItemExitError, ItemTimeoutError, NotPicklableError
from .mutation import GlobalWatch
from .time_limits import TimeLimitReached, time_limit
from .tracebacks import frames_of
from .worker_process import prepare_worker
from . import kept_runs, worker_setup  # looked up at call time: they import this module

# Values of these types always pickle, by the standard pickler; other results
# are pickled once in the worker (see Batch.__reduce__) so that a failure is
# pinned on its own item.
PLAIN_TYPES = frozenset((type(None), bool, int, float, complex, str, bytes))


class CallOptions(NamedTuple):
    """What a worker does around each call."""

    watch_globals: bool = False  # fingerprint globals (mutation check)
    capture: bool = True  # capture print/stderr output per item
    timeout: float = None  # per-item time limit in seconds
    # How an item is stopped at its limit (see ``time_limit``): None lets the
    # worker choose, True forces the watchdog thread.
    watchdog: bool = None
    # Seconds after which a chunk hands back the calls it has not started
    # (``Batch.handed_back``): set for a chunk sent whole on the guess that
    # its few items are tiny (``item_costs``). None: run every call.
    hand_back_after: float = None
    # ``--seed``: each item's random generators are seeded from it and the
    # item's index before it is called (``seeding``). None: not seeded.
    seed: int = None

    # What ``engine.run`` passes as ``watchdog``. Tests set it to True to
    # take, on Linux, the path of platforms without SIGALRM.
    force_watchdog = None


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


_item_state = threading.local()


def inside_item():
    """Whether this thread is running a mapped item right now (so a ``pmap``
    called here is nested in another)."""
    return getattr(_item_state, "depth", 0) > 0


def call_item(func, index, args, options=CallOptions()):
    """Call ``func(*args)`` for item ``index`` and report what happened."""
    return run_calls(func, [(index, args)], options)


def run_calls(func, calls, options=CallOptions(), kept=None):
    """A ``Batch`` for the ``(index, args)`` calls. The globals are
    fingerprinted once around all the calls (cheap per chunk). ``func`` may
    be a ``Setup``: its SETUP runs first, where it has not run yet.
    ``kept``: the ``kept_runs.KeptRun`` of a worker process that runs several chunks
    of one run, which also keeps what the fingerprints need."""
    if isinstance(func, worker_setup.Setup):
        return func.run_calls(calls, options, kept)
    watch, before = _watch_before(func, options, kept)
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
        if options.timeout is not None or options.seed is not None:
            for index, args in calls:
                sink.index = index
                _call_limited(func, index, args, options, batch)
        elif options.hand_back_after is not None:
            _call_until(func, calls, options, batch, sink,
                        time.perf_counter() + options.hand_back_after)
        else:
            _call_each(func, calls, options, batch, sink)
    finally:
        _item_state.depth -= 1
        if options.capture:
            stop_capture(token)
        fresh_modules.note_imports()  # in a worker process: what the calls imported
    worker = (os.getpid(), threading.get_ident())
    batch.span = (worker, started, time.time() - started, clock() - cpu_started)
    if watch:
        _watch_after(watch, before, kept, batch)
    return batch


def _watch_after(watch, before, kept, batch):
    """Fingerprint the globals again and put what changed in ``batch``. A
    worker with another chunk of the run already waiting leaves that to
    the chunk after (its fingerprints before are still these ``before``):
    a worker's last chunk of a run always ends with none waiting, so every
    change made since the run began there is still found, with one
    fingerprint per run instead of one per chunk (a 200 MB DataFrame's
    costs milliseconds)."""
    if kept is not None and next_chunk_waiting is not None and next_chunk_waiting():
        kept.snapshot = before
        return
    after = watch.snapshot()
    batch.changed_globals = watch.changed(before, after)
    if kept is not None:
        kept.snapshot = after


# Set by a worker serving a channel (worker_channel): whether the next
# chunk has already arrived.
next_chunk_waiting = None


def _watch_before(func, options, kept):
    """(the run's ``GlobalWatch``, the globals' fingerprints before these
    calls), or (None, None) without the mutation check. A kept run's
    fingerprints after its previous chunk are still those before this one:
    nothing of the run ran in this thread meanwhile."""
    if not options.watch_globals:
        return None, None
    if kept is None:
        watch = GlobalWatch(func)
        return watch, watch.snapshot()
    if kept.watch is None:
        kept.watch = GlobalWatch(func)
    before, kept.snapshot = kept.snapshot, None  # None again if these calls fail
    return kept.watch, before if before is not None else kept.watch.snapshot()


def _cpu_clock():
    # A worker process's own CPU time includes threads it starts (BLAS);
    # in a thread of the notebook's process only that thread's time is ours.
    if threading.current_thread() is threading.main_thread():
        return time.process_time
    return time.thread_time


def _call_each(func, calls, options, batch, sink):
    """The calls without a time limit: the per-item loop of tiny items, so
    it does only what each item needs (mark it for capture, call, keep).
    A chunk of one-argument items (``inputs.CallChunk``) is read as
    (index, item) pairs, without a tuple per item, and its indices go back
    as the range they are (three numbers to pickle, not one per item). That
    case has a loop of its own: one branch fewer per item is 5% of a tiny
    item's time in the worker."""
    if getattr(calls, "spread", False):
        values = batch.values
        for index, item in zip(calls.indices(), calls.items):
            sink.index = index
            try:
                value = func(item)
            except (Exception, SystemExit) as exc:
                value = None
                batch.failures[index] = _failure(exc, options)
            values.append(value)
        batch.indices = calls.indices()
        return
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


def _call_until(func, calls, options, batch, sink, deadline):
    """The calls of a chunk sent whole because its items were expected to
    be tiny: once that has taken past ``deadline`` (``perf_counter``), the
    calls not started yet are handed back for the other workers."""
    calls = list(calls)  # (a few: one at a time costs nothing that counts)
    for position, call in enumerate(calls):
        if position and time.perf_counter() > deadline:
            batch.handed_back = len(calls) - position
            return
        _call_each(func, (call,), options, batch, sink)


def _call_limited(func, index, args, options, batch):
    """One call with what a plain call does not have: a time limit, a seed."""
    value = None
    try:
        if options.seed is not None:
            seeding.start_item(options.seed, index)
        with time_limit(options.timeout, options.watchdog):
            value = func(*args)
    except (Exception, SystemExit) as exc:
        batch.failures[index] = _failure(exc, options)
    finally:
        if options.seed is not None:
            seeding.end_item()
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
    is pickled in the parent, only small references travel, and the worker
    unpickles the function once per run (``kept_runs``).
    """

    def __init__(self, func, calls, options=CallOptions(), sharing=None, kept=None,
                 present=None):
        self.func = func
        self.calls = calls  # (index, args) calls: a list, or an inputs.CallChunk
        self.options = options
        self.sharing = sharing
        self.kept = kept  # in a worker: the run's kept_runs.KeptRun
        # the run's present.Present: pickled ahead of the function, so that a
        # worker takes on the notebook's folder, path and modules first
        self.present = present

    @property
    def pickles_itself(self):
        """Whether pickling it needs no more than the standard pickler."""
        return self.sharing is not None

    def __call__(self):
        prepare_worker()
        return run_calls(self.func, self.calls, self.options, self.kept)

    def __reduce__(self):
        if self.sharing is None:
            return (_plain_chunk, (self.present, self.func, self.calls, self.options))
        sharing = self.sharing
        present = None if self.present is None else self.present.arguments
        return (kept_runs.unpickled_chunk, (sharing.token, present,
                                            sharing.dumps_once(self.func),
                                            sharing.dumps_items(self.calls), self.options))


def _plain_chunk(present, func, calls, options):
    """A ``Chunk`` pickled as it is (dask), ``present`` taken on first."""
    return Chunk(func, calls, options)
