"""Running a map as chunks submitted to futures: the loop shared by the loky
pool (``pool.LokyRun``) and a dask cluster (``dask_run.DaskRun``).

Chunks are submitted up to an in-flight limit and collected with a wait that
wakes as soon as one finishes (never a polling sleep). Each finished chunk is
a ``Batch``; what a worker could not report itself (a dead worker, something
that cannot be pickled, an item past its time limit) is turned into failed
items here or in the subclass.
"""

import itertools
import math
import time

from parmagic.common.errors import ItemTimeoutError, RunCancelled
from parmagic.engine import item_costs
from parmagic.transport import pickling
from parmagic.worker.batch import Batch

# Chunks in flight per worker: enough to keep workers busy while results
# travel back, small enough that a generator is read only a little ahead.
_IN_FLIGHT_PER_WORKER = 2
# Adaptive chunking: aim for chunks of this many seconds, up to _MAX_CHUNK items.
_TARGET_CHUNK_SECONDS = 0.05
_MAX_CHUNK = 4096
# Up to this many items per worker, a run is one chunk per worker.
_FEW_PER_WORKER = 2
# An item that ignores its time limit is given up on this long after it, at
# the latest (or after twice the limit, if that is longer).
_TIMEOUT_GRACE = 2.0
# How often a background run, while waiting, checks whether it was cancelled.
_CANCEL_CHECK = 0.1
# A run still waiting for results this many seconds after it began yields
# an empty batch, and again every _TICK_EVERY seconds while nothing
# finishes: the collector sees the run is not a short one even when few,
# long items all finish at its end (it starts the -t load sampler, and the
# progress bar appears on time).
_FIRST_TICK = 0.05
_TICK_EVERY = 0.25


class ChunkSizer:
    """Items per chunk. "auto" starts at one item and doubles while chunks
    come back quickly, so slow items travel one by one (each result, and
    each interrupt, is per item) while tiny items soon travel in bulk. With
    a known length, a chunk is at most a quarter of each worker's share;
    a few items (at most _FEW_PER_WORKER a worker) are split evenly over
    the workers at once, since there are too few to learn their cost from
    and every chunk costs a round trip, or go as one chunk when the
    function's last run showed them to be tiny (``tiny_items``, see
    ``item_costs``; ``whole`` says it did). No chunk is larger than
    ``max_chunk`` (a worker's ``max_tasks_per_worker``)."""

    def __init__(self, batch_size, n_items, n_workers, tiny_items=False, max_chunk=None):
        self.fixed = batch_size != "auto"
        self.size = batch_size if self.fixed else 1
        self.limit = _MAX_CHUNK
        if n_items is not None:
            self.limit = max(1, min(_MAX_CHUNK, math.ceil(n_items / (4 * n_workers))))
        self.whole = False
        if not self.fixed and n_items is not None and n_items <= _FEW_PER_WORKER * n_workers:
            self.whole = tiny_items and n_items > 1
            per_chunk = n_items if self.whole else math.ceil(n_items / n_workers)
            self.size = self.limit = max(1, per_chunk)
        if max_chunk is not None and self.size > max_chunk:
            self.whole = False
        if max_chunk is not None:
            self.size, self.limit = min(self.size, max_chunk), min(self.limit, max_chunk)

    def observe(self, n_items, seconds):
        """Grow towards chunks of _TARGET_CHUNK_SECONDS after a full chunk
        took less than that (``seconds``, see ``_chunk_seconds``)."""
        if self.fixed or n_items < self.size or seconds >= _TARGET_CHUNK_SECONDS:
            return
        fitting = int(_TARGET_CHUNK_SECONDS * n_items / max(seconds, 1e-6))
        self.size = min(max(self.size * 2, fitting), self.limit)


def _chunk_seconds(batch, submitted):
    """How long a chunk's items took: the worker's own measure when it sent
    one (the round trip adds the wait behind other chunks and the trip
    itself, which made tiny items look a hundred times slower than they
    are and the chunks grow slowly), else since it was submitted."""
    span = getattr(batch, "span", None)
    if span is None:
        return time.perf_counter() - submitted
    return span[2]


def _chunks(calls, sizer):
    # Inputs.calls() reads a chunk in one go; other iterables item by item.
    take = getattr(calls, "take", None) or (lambda n: list(itertools.islice(calls, n)))
    while True:
        chunk = take(sizer.size)
        if not chunk:
            return
        yield chunk


class ChunkedRun:
    """One map as chunks on futures. ``outcomes`` yields a ``Batch`` per
    finished chunk (not in input order); ``stop`` ends the run.

    With a time limit, items go one at a time and one per worker, so each
    is running from the moment it is submitted and a stuck one can be found.
    Subclasses say how to submit, wait, and deal with their own failures.
    """

    def __init__(self, func, options, batch_size, n_items, n_workers, func_label,
                 tiny_items=False, max_chunk=None):
        self.func = func
        self.func_label = func_label
        timed = options.timeout is not None
        self.max_pending = n_workers * (1 if timed else _IN_FLIGHT_PER_WORKER)
        self.sizer = ChunkSizer(1 if timed else batch_size, n_items, n_workers, tiny_items,
                                max_chunk)
        if self.sizer.whole:  # on a guess: the worker hands back what turns out slow
            options = options._replace(hand_back_after=item_costs.HAND_BACK_AFTER)
        self.options = options
        self.pending = {}  # future -> (chunk, submit time)
        self.retry = []  # chunks to submit again
        self.cancel = None  # a threading.Event: stop when set (background runs)
        self.started = time.perf_counter()
        self.next_tick = self.started + _FIRST_TICK  # the next empty batch is due

    # -- what subclasses provide ----------------------------------------------
    def _submit(self, chunk):
        """Submit a chunk; return its future."""
        raise NotImplementedError

    def _wait(self, futures, timeout):
        """The futures that finish first (within ``timeout``), as a set."""
        raise NotImplementedError

    def _submit_failed(self, exc, chunk):
        """Batches for a chunk whose submission raised ``exc``."""
        raise NotImplementedError

    def _failed(self, exc, chunk):
        """Batches for a chunk whose future raised ``exc``."""
        raise NotImplementedError

    def _abandon(self):
        """Stop whatever the workers are still running for this run."""

    def _release(self):
        """Free what the run held (temporary folders...)."""

    def hard_limit(self):
        """Seconds after submission at which a chunk counts as stuck: the
        worker stops an item at its limit itself (time_limits); this is for
        items that ignore it, busy in compiled code."""
        return self.options.timeout + max(_TIMEOUT_GRACE, self.options.timeout)

    def _stop_stuck(self, stuck):
        """Deal with stuck futures (already removed from ``pending``);
        return the message their items fail with."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------
    def outcomes(self, calls):
        __tracebackhide__ = True
        chunks = _chunks(iter(calls), self.sizer)
        try:
            while True:
                refused = self._fill(chunks)
                if refused is not None:
                    yield from self._submit_failed(*refused)
                    continue
                if not self.pending:
                    return
                done = self._wait(list(self.pending), self._wait_timeout())
                if self.cancel is not None and self.cancel.is_set():
                    raise RunCancelled()
                if not done and self._tick_due():
                    yield Batch()  # nothing finished for a while: see _FIRST_TICK
                if not done and self.options.timeout is not None:
                    yield from self._expire_stuck()
                for future in done:
                    if future in self.pending:  # not already settled meanwhile
                        yield from self._settle(future)
        except KeyboardInterrupt:
            self._abandon()  # busy workers would delay the next call
            raise

    def stop(self, grace):
        """Stop submitting, cancel what has not started, give running chunks
        ``grace`` seconds, stop the workers if some are still busy, and
        return the outcomes of chunks that finished meanwhile."""
        self.retry.clear()
        for future in self.pending:
            future.cancel()
        running = [future for future in self.pending if not future.cancelled()]
        if running and grace:
            self._wait_all(running, grace)
        finished = [
            future.result()
            for future in running
            if future.done() and not future.cancelled() and future.exception() is None
        ]
        if any(not future.done() for future in running):
            self._abandon()
        self.pending.clear()
        self._release()
        return finished

    def resubmit(self, calls):
        """Run these ``(index, args)`` calls again (``--retries``), each
        alone, so a crash or a time limit in one does not fail the others
        again: before any new chunk, on a fresh pool after a crash."""
        self.retry.extend([call] for call in calls)

    def _wait_all(self, futures, timeout):
        deadline = time.perf_counter() + timeout
        remaining = list(futures)
        while remaining and time.perf_counter() < deadline:
            done = self._wait(remaining, deadline - time.perf_counter())
            remaining = [future for future in remaining if future not in done]

    def _fill(self, chunks):
        """Submit chunks up to the in-flight limit; return (error, chunk) if
        a submission was refused."""
        while len(self.pending) < self.max_pending:
            chunk = self.retry.pop() if self.retry else next(chunks, None)
            if chunk is None:
                return None
            try:
                future = self._submit(chunk)
            except Exception as exc:
                return exc, chunk
            self.pending[future] = (chunk, time.perf_counter())
        return None

    def _settle(self, future):
        chunk, submitted = self.pending.pop(future)
        try:
            outcomes = future.result()
        except Exception as exc:
            yield from self._failed(exc, chunk)
            return
        self.sizer.observe(len(chunk), _chunk_seconds(outcomes, submitted))
        if outcomes.handed_back:  # spread over the workers, lowest index first
            rest = chunk[len(chunk) - outcomes.handed_back:]
            self.retry.extend([call] for call in reversed(rest))
        yield outcomes

    def _unsendable(self, chunk, exc):
        """The chunk could not be pickled (``exc`` says why): name the
        culprit. An unpicklable function ends the run; unpicklable items
        fail, the rest go again. When the function and each item pickle on
        their own, the chunk's items fail with what the pickling raised."""
        __tracebackhide__ = True
        error = pickling.function_error(self.func, self.func_label)
        if error is not None:
            raise error from None
        failed, sendable = Batch(), []
        for index, args in chunk:
            error = pickling.item_error(index, args[0] if len(args) == 1 else args, args)
            if error is None:
                sendable.append((index, args))
            else:
                failed.indices.append(index)
                failed.values.append(None)
                failed.failures[index] = (error, [])
        if not failed:  # only the combination fails: report the whole chunk
            error = (pickling.item_error(chunk[0][0], [a for _, a in chunk], chunk)
                     or exc.__cause__ or exc)
            failed = Batch.failed((index for index, _ in chunk), lambda: error)
            sendable = []
        if sendable:
            self.retry.append(sendable)
        yield failed

    # -- time limits ------------------------------------------------------------
    def _tick_due(self):
        now = time.perf_counter()
        if now < self.next_tick:
            return False
        self.next_tick = now + _TICK_EVERY
        return True

    def _wait_timeout(self):
        tick = max(0.0, self.next_tick - time.perf_counter())
        if self.cancel is not None:
            tick = min(tick, _CANCEL_CHECK)
        if self.options.timeout is None:
            return tick
        oldest = min(submitted for _, submitted in self.pending.values())
        limit = max(0.0, oldest + self.hard_limit() - time.perf_counter())
        return min(limit, tick)

    def _expire_stuck(self):
        now = time.perf_counter()
        stuck = [
            future for future, (_, submitted) in self.pending.items()
            if not future.done() and now - submitted >= self.hard_limit()
        ]
        if not stuck:
            return
        items = [index for future in stuck for index, _ in self.pending.pop(future)[0]]
        message = yield from self._stop_stuck(stuck)
        yield Batch.failed(items, lambda: ItemTimeoutError(message))
