"""Turning the workers' outcomes into the run record, the user's output and
the exception the user sees.

Outcomes arrive in any order. Results go into the record at once; captured
output is printed in item order as soon as every earlier item is done, the
first unfinished item's as it prints (on loky's pools, whose workers send
a running chunk's output ahead of its end: ``worker.live_output``); the
first failure stops the run (``on_error="raise"``) or all failures are
raised together at the end (``"collect"``).
"""

import contextlib

from parmagic.common.errors import RunCancelled, WorkerCrashError, describe_item_failure
from parmagic.display.error_display import show_cleanly
from parmagic.engine.ordered_output import OrderedOutput
from parmagic.engine.retries import RetriedAttempt, without
from parmagic.runs.timing import LoadSampler
from parmagic.worker import capture, tracebacks
from parmagic.worker.batch import Batch
from parmagic.worker.setup import setup_failed

# Seconds that items already running get to finish when a run stops early,
# so their results are kept; workers still busy after that are stopped.
STOP_GRACE = 0.25
# Failures shown in the ExceptionGroup of an on_error="collect" run.
GROUP_SHOWN = 3
# Runs shorter than this many seconds do not sample busy threads (for -t).
_SAMPLE_AFTER = 0.05


class Collector:
    """Consumes one run's outcome stream into ``record``."""

    def __init__(self, record, inputs, func, check, on_error, bar, items_run_here,
                 cache=None, cancel=None, retries=None, init=None, until=None,
                 on_batch=None):
        self.record = record
        # called with (indices, values, failures) of what each batch finished
        # (as_iter: the iterator's run thread hands them to the caller)
        self.on_batch = on_batch
        self.until = until  # PRED: stop once a result satisfies it (--until)
        self.inputs = inputs
        self.func = func
        self.init = init  # SETUP (init=), or None
        self.check = check
        self.on_error = on_error
        self.bar = bar
        self.items_run_here = items_run_here  # threads of this process
        self.cache = cache  # a cache.ResultCache, or None
        self.cancel = cancel  # a threading.Event set to stop the run, or None
        self.retries = retries  # a retries.RetryPolicy, or None
        self.resubmit = None  # the stream's, while failed items may go again
        self.output = OrderedOutput(bar.print, record)
        # Samples busy threads for the -t advice, from the first result that
        # comes after _SAMPLE_AFTER seconds: shorter runs pay nothing for it.
        self.load = LoadSampler()

    def run(self, stream, calls):
        """Run the stream to the end; raise as ``on_error`` says."""
        __tracebackhide__ = True
        status = "failed"
        try:
            with capture.routing() if self.items_run_here else contextlib.nullcontext():
                first = self._consume(stream, calls)
            if first is not None:
                raise first
            if self.record.errors:
                raise self._group()
            status = "done" if self.record.stopped_by is None else "stopped"
        except KeyboardInterrupt as interrupt:
            status = "cancelled" if isinstance(interrupt, RunCancelled) else "interrupted"
            self._stop(stream, grace=0)
            interrupt.add_note(
                f"parmagic: {status}; {self._finished_text()} and are kept in "
                "the run record (_parmap.results in IPython)"
            )
            raise
        finally:
            self._stop(stream, grace=0)
            self.record.expect(self.inputs.n_read)
            self.output.flush_all()
            for index, parts in self.output.unended().items():
                self.record.add_output(index, parts)
            self.bar.close()
            self.record.finish(status)
            self.record.load_samples = self.load.stop()
            self.record.changed_globals = self.check.changed_names()
            self.check.report(self.record.func_name, self.record.results)

    def _consume(self, stream, calls):
        """Store outcomes; in "raise" mode return the first failure, with its
        note, once the items already running have had a moment to finish."""
        # joblib.Parallel's path has none: its workers retry (retries.py)
        self.resubmit = getattr(stream, "resubmit", None)
        if self.until is not None:
            calls = self._until_stopped(calls)
        with contextlib.closing(stream.outcomes(calls)) as batches:
            for batch in batches:
                failure = self._store(batch)
                if self.cancel is not None and self.cancel.is_set():
                    raise RunCancelled()
                if self.record.stopped_by is not None:  # --until: what runs is stopped
                    self._stop(stream, grace=0)
                    return None
                if failure is not None and (self.on_error == "raise"
                                            or setup_failed(failure[2])):
                    self._stop(stream, grace=STOP_GRACE)
                    error = failure[2]
                    if setup_failed(error):  # whatever on_error says: nothing can run
                        error.add_note(self._setup_failure_note())
                        return error
                    return self._first_failure()
        return None

    def _until_stopped(self, calls):
        """``calls`` until a result satisfied ``until`` (one from the cache
        too: those are stored as the calls are read)."""
        for call in calls:
            if self.record.stopped_by is not None:
                return
            yield call

    def _check_until(self, batch):
        """Note in the record the lowest item of ``batch`` whose result
        satisfies ``until``."""
        failures = batch.failures
        for index, value in sorted(zip(batch.indices, batch.values), key=lambda pair: pair[0]):
            if index in failures:
                continue
            try:
                satisfied = self.until(value)
            except Exception as exc:
                exc.add_note(f"parmagic: until ({_name(self.until)}) raised on item "
                             f"{index}'s result; the run stopped there")
                raise
            if satisfied:
                self.record.stopped_by = index
                return

    def live_output(self, news):
        """Running items' new output (a ``live_output.News``), as it comes."""
        self.output.live(news)

    def _first_failure(self):
        """The exception of the lowest failed item, with its note: the one a
        serial loop would have stopped at, whichever failed first here."""
        first = next(iter(self.record.errors.values()))  # they are in index order
        index, error = first.index, first.exception
        attempts = self.record.attempts.get(index, 1)
        if isinstance(error, WorkerCrashError):  # it names the items
            index = None
        error.add_note(describe_item_failure(
            index, first.item_repr, self.record.n_finished, self.inputs.length, attempts))
        return error

    def _stop(self, stream, grace):
        self.resubmit = None  # what fails now stays failed
        for batch in stream.stop(grace):
            self._store(batch)

    def _store(self, batch):
        """Record a ``Batch``; return (index, item, error) of its first
        failure, if any."""
        record = self.record
        self.check.observe(batch)
        if batch.span is not None:
            record.add_span(batch.span, len(batch))
        if not self.load.started and record.n_jobs > 1 and record.elapsed() > _SAMPLE_AFTER:
            self.load.start()  # also on an empty batch: see chunked._FIRST_TICK
        if batch.failures and self.retries is not None:
            batch = self._retry_failed(batch)
        items = self.inputs.finished(batch.indices, batch.failures)
        record.add_batch(batch.indices, batch.values, batch.failures)
        if self.cache is not None:
            for index, value in zip(batch.indices, batch.values):
                if index in batch.failures:
                    self.cache.forget(index)
                else:
                    self.cache.store(index, value)
        for index, parts in batch.outputs.items():
            record.add_output(index, parts)
            self.output.add(index, parts)
        failure = None
        for index in sorted(batch.failures):
            error = self._item_error(index, items[index], *batch.failures[index])
            failure = failure or (index, items[index], error)
        if self.until is not None and self.record.stopped_by is None:
            self._check_until(batch)
        if self.on_batch is not None and batch.indices:
            self.on_batch(batch.indices, batch.values, batch.failures)
        self.bar.update(len(batch) - len(batch.failures), len(batch.failures))
        if self.output.waiting:
            self.output.flush_ready()
        return failure

    def _retry_failed(self, batch):
        """Take the failed items that run again out of ``batch``: their
        failure is kept in the record (``retried``), and they go back to the
        stream, unless their worker ran them again itself."""
        again = self._runs_again(batch)
        if not again:
            return batch
        for index in sorted(again):
            error, frames = batch.failures[index]
            text = tracebacks.render(tracebacks.in_notebook(frames, self.func), error)
            self.record.add_failed_attempt(index, self.inputs.item(index), error, text)
            self.output.forget(index)
        if not isinstance(batch, RetriedAttempt):
            self.resubmit([self.inputs.call_again(index) for index in sorted(again)])
        return without(batch, again)

    def _runs_again(self, batch):
        if isinstance(batch, RetriedAttempt):
            return set(batch.failures)
        if self.resubmit is None:
            return set()
        attempts = self.record.attempts
        return {
            index for index, (error, _) in batch.failures.items()
            if self.retries.runs_again(error, attempts.get(index, 1))
        }

    def store_cached(self, index, value):
        """An item whose result came from the cache."""
        self.record.n_cached += 1
        self._store(Batch([index], [value]))

    def _item_error(self, index, item, error, frames):
        placed = tracebacks.in_notebook(frames, self.init if setup_failed(error) else self.func)
        self.record.add_error(index, item, error, tracebacks.render(placed, error))
        worker_tb = tracebacks.rebuild(placed)
        show_cleanly(error.with_traceback(worker_tb), worker_tb)
        return error

    def _setup_failure_note(self):
        name = getattr(self.init, "__qualname__", None) or "init"
        total, finished = self.inputs.length, self.record.n_finished
        if total is None:
            not_run = "the remaining items were not run"
        else:
            not_run = f"{total - finished}{f' of {total}' if finished else ''} items were not run"
        note = f"parmagic: SETUP {name} failed in a worker; {not_run}"
        if finished:
            note += (f"; {finished} results had finished and are kept in the run "
                     "record (_parmap.results in IPython)")
        return note

    def _group(self):
        shown, more = self.record.first_errors(GROUP_SHOWN)
        for error in shown:
            error.exception.add_note(describe_item_failure(
                error.index, error.item_repr,
                attempts=self.record.attempts.get(error.index, 1)))
        message = (
            f"{len(self.record.errors)} of {len(self.record.results)} items failed; "
            f"{self._finished_text()} and are kept in the run record "
            "(_parmap.results in IPython)"
        )
        if more:
            message += (
                f"; the first {len(shown)} failures are shown, and "
                f"{more} more are in _parmap.errors"
            )
        return ExceptionGroup(message, [error.exception for error in shown])

    def _finished_text(self):
        total = self.inputs.length
        of_total = f" of {total}" if total is not None else ""
        return f"{self.record.n_finished}{of_total} results finished"


def _name(func):
    return getattr(func, "__qualname__", None) or repr(func)
