"""The call loop a worker runs for a chunk of items (in a worker process,
or a thread of the notebook's own for threading and sequential runs).

It is pickled to the workers with everything it imports, so it stays small
and imports nothing heavy.
"""

import os
import threading
import time
from typing import NamedTuple

from parmagic.worker import async_calls, fresh_modules, log_capture, seeding
from parmagic.worker.async_calls import is_async
from parmagic.worker.batch import Batch
from parmagic.worker.capture import Sink, start_capture, stop_capture
from parmagic.worker.capture import install as install_routers
from parmagic.worker.failures import item_failure
from parmagic.worker.global_watch import GlobalWatch
from parmagic.worker.setup import Setup
from parmagic.worker.time_limits import time_limit


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
    # Off switches (``common.switches``) a worker honours: reuse a function
    # kept from the last run (``kept_runs``), run as SCHED_BATCH (``process``).
    reuse_kept_function: bool = True
    batch_scheduling: bool = True
    # In worker processes: the notebook's logger levels, at which items'
    # log records are kept with their output (``log_capture``); None: not.
    log_levels: tuple = None

    # What ``engine.run`` passes as ``watchdog``. Tests set it to True to
    # take, on Linux, the path of platforms without SIGALRM.
    force_watchdog = None


_item_state = threading.local()


def inside_item():
    """Whether this thread is running a mapped item right now (so a ``pmap``
    called here is nested in another)."""
    return getattr(_item_state, "depth", 0) > 0


def call_item(func, index, args, options=CallOptions()):
    """Call ``func(*args)`` for item ``index`` and report what happened."""
    return run_calls(func, [(index, args)], options)


def run_calls(func, calls, options=CallOptions(), kept=None, outputs=None):
    """A ``Batch`` for the ``(index, args)`` calls. The globals are
    fingerprinted once around all the calls (cheap per chunk). ``func`` may
    be a ``Setup``: its SETUP runs first, where it has not run yet.
    ``kept``: the ``kept_runs.KeptRun`` of a worker process that runs several chunks
    of one run, which also keeps what the fingerprints need. ``outputs``:
    what was captured already (index -> parts), which the calls' output
    goes on from."""
    if isinstance(func, Setup):
        return _run_after_setup(func, calls, options, kept)
    watch, before = _watch_before(func, options, kept)
    clock = _cpu_clock()
    started, cpu_started = time.time(), clock()
    batch = Batch(outputs=outputs)
    if options.capture:
        install_routers()
        if options.log_levels is not None:
            log_capture.keep_records(options.log_levels)
        token, sink = start_capture(batch.outputs)
        if live_outputs is not None and not inside_item():  # sent as it grows
            live_outputs(batch.outputs, calls, sink)
    else:
        token, sink = None, Sink({})  # moved along, never installed
    _item_state.depth = getattr(_item_state, "depth", 0) + 1
    try:
        if is_async(func):  # the chunk's items side by side on an event loop
            async_calls.run_chunk(func, calls, options, batch)
        elif options.timeout is not None or options.seed is not None:
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


def _run_after_setup(setup, calls, options, kept):
    """``run_calls`` once ``setup``'s SETUP has run here; what SETUP prints
    goes with the first item."""
    first = calls[0][0]
    printed = {}
    func, failure = setup.prepared(printed if options.capture else None, first)
    if failure is None:  # the first item's output goes on from SETUP's
        batch = run_calls(func, calls, options, kept, outputs=printed)
        batch.changed_globals = setup.changes_lost(batch.changed_globals)
    else:  # none of the items can run
        indices = [index for index, _ in calls]
        batch = Batch(indices, [None] * len(indices), dict.fromkeys(indices, failure),
                      printed)
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
# chunk has already arrived, and what to tell when a chunk starts
# capturing into its outputs (``live_output.LiveOutput.watch``).
next_chunk_waiting = None
live_outputs = None


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
    A chunk of one-argument items (``call_chunk.CallChunk``) is read as
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
                batch.failures[index] = item_failure(exc, options)
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
            batch.failures[index] = item_failure(exc, options)
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
        batch.failures[index] = item_failure(exc, options)
    finally:
        if options.seed is not None:
            seeding.end_item()
    batch.indices.append(index)
    batch.values.append(value)
