"""The run record: what one map did, bound as ``_parmap`` in IPython.

The engine fills the record while results stream in, so whatever finished
before an error or an interrupt is still there afterwards.
"""

import html
import time

from parmagic.common.errors import short_repr
from parmagic.common.not_computed import NOT_COMPUTED
from parmagic.runs.timeline import show as show_timeline
from parmagic.runs.timing import Timing
from parmagic.worker.capture import joined

# Failures listed in the record's repr.
_ERRORS_SHOWN = 3


class ItemError:
    """One failed item: its index, a short repr of its value, the exception
    and the worker's traceback text."""

    def __init__(self, index, item_repr, exception, traceback_text):
        self.index = index
        self.item_repr = item_repr
        self.exception = exception
        self.traceback = traceback_text

    @property
    def summary(self):
        return f"{type(self.exception).__name__}: {self.exception}"

    def __repr__(self):
        return (
            f"ItemError(index={self.index}, item={self.item_repr}, "
            f"exception={self.exception!r})"
        )


class ParmapRecord:
    """Results and facts of one parallel map.

    Attributes
    ----------
    results : list
        One entry per item read so far, in input order; items that did not
        finish hold ``parmagic.NOT_COMPUTED``.
    errors : dict
        Item index -> :class:`ItemError`, in index order.
    retried : dict
        Item index -> list of :class:`ItemError`, one per failed attempt that
        was run again (``retries``); the last attempt's failure, if it
        failed too, is in ``errors``.
    outputs : list of str
        What each item printed (stdout and stderr), "" for silent items.
    func_name, backend, n_jobs : str, str, int
        What was mapped, and where.
    status : str
        ``"running"``, ``"done"``, ``"failed"``, ``"interrupted"`` (Ctrl-C)
        or ``"cancelled"`` (a background run's ``cancel()``).
    wall_time : float or None
        Seconds from start to end of the run (None while running).
    cpu_time, busy_time : float
        Worker CPU seconds and worker wall seconds spent on the items that
        reported back, summed over workers.
    spans : list of tuple
        ``(worker, start, seconds, cpu seconds, n items)`` per task a worker
        ran, ``start`` in ``time.time()`` seconds; see :meth:`timeline`.
    changed_globals : list of str
        Notebook globals the function changes (see ``GlobalMutationWarning``).
    n_finished : int
        How many items have a result.
    n_cached : int
        How many of those came from the ``cache`` folder.
    """

    def __init__(self, func_name, backend, n_jobs, total=None):
        self.func_name = func_name
        self.total = total  # number of items, when the input has a length
        self.backend = backend
        self.n_jobs = n_jobs
        self.results = []
        self.errors = {}
        self.retried = {}
        self.stopped_by = None  # until=: the item whose result stopped the run
        self.status = "running"
        self.wall_time = None
        self.cpu_time = 0.0
        self.busy_time = 0.0
        self.spans = []
        self.load_samples = []  # busy threads on the machine, see timing.py
        self.changed_globals = []
        self.n_finished = 0
        self.n_cached = 0
        self.transfer = None  # shared_data.Transfer: what went to the workers, and how
        self.workers = None  # how many workers the run used, when fewer than n_jobs
        self.startup = None  # loky runs: timing.WorkerStartup, the wait for new workers
        self._output_parts = {}
        self._started = time.perf_counter()
        self.started_at = time.time()

    # -- filled by the engine -------------------------------------------------
    def expect(self, n_items):
        """Make room for items read from the input so far."""
        missing = n_items - len(self.results)
        if missing > 0:
            self.results.extend([NOT_COMPUTED] * missing)

    def add_batch(self, indices, values, failures):
        """Store the values of finished items, except those in ``failures``."""
        if not indices:
            return
        whole_chunk = isinstance(indices, range) and indices.step == 1
        self.expect((indices[-1] if whole_chunk else max(indices)) + 1)
        results = self.results
        first = indices[0]
        if not failures and (whole_chunk
                             or indices == list(range(first, first + len(indices)))):
            results[first:first + len(indices)] = values  # a chunk, in one step
        else:
            for index, value in zip(indices, values):
                if index not in failures:
                    results[index] = value
        self.n_finished += len(indices) - len(failures)

    def add_error(self, index, item, exception, traceback_text):
        self.expect(index + 1)
        error = ItemError(index, short_repr(item), exception, traceback_text)
        last = next(reversed(self.errors), -1)
        self.errors[index] = error
        if index < last:  # failures arrive in any order; keep them in index order
            self.errors = dict(sorted(self.errors.items()))

    def add_failed_attempt(self, index, item, exception, traceback_text):
        """An attempt at item ``index`` failed and the item runs again."""
        attempt = ItemError(index, short_repr(item), exception, traceback_text)
        self.retried.setdefault(index, []).append(attempt)

    def add_span(self, span, n_items):
        worker, start, seconds, cpu = span
        self.spans.append((worker, start, seconds, cpu, n_items))
        self.busy_time += seconds
        self.cpu_time += cpu

    def add_output(self, index, parts):
        self._output_parts[index] = parts

    def is_finished(self, index):
        """Whether item ``index`` has a result or an error."""
        return index in self.errors or (
            index < len(self.results) and self.results[index] is not NOT_COMPUTED
        )

    def elapsed(self):
        """Seconds since the run started."""
        return time.perf_counter() - self._started

    def finish(self, status):
        self.status = status
        self.wall_time = time.perf_counter() - self._started

    # -- read by the user -----------------------------------------------------
    def timing(self):
        """Where the run's time went, with advice (what ``%pmap -t`` prints)."""
        return Timing(self)

    def timeline(self, ax=None, path=None):
        """Plot each worker's tasks over time (needs matplotlib).

        ``path`` (e.g. ``"timeline.png"``; the suffix picks the format):
        save the figure there and return the path. Without it, return the
        matplotlib Axes; Jupyter shows the figure, an IPython terminal opens
        a window (after ``%matplotlib``, or waiting until it is closed), and
        where nothing can show it a warning says to pass ``path``. With
        ``ax``, draw on that Axes (its figure is left to you).
        """
        return show_timeline(self, ax, path)

    @property
    def attempts(self):
        """Item index -> how many times it ran, for the items that ran more
        than once (``retries``), in index order (failures arrive in any
        order); every other item ran once."""
        return {index: len(failed) + 1 for index, failed in sorted(self.retried.items())}

    @property
    def outputs(self):
        return [joined(self._output_parts.get(i)) for i in range(len(self.results))]

    def _facts(self):
        """(label, text) pairs shared by the text and HTML reprs."""
        wall = "running" if self.wall_time is None else f"{self.wall_time:.3f} s"
        n_printed = len(self._output_parts)
        changed = [("globals changed", ", ".join(self.changed_globals) + " (see the "
                    "GlobalMutationWarning)")] if self.changed_globals else []
        return [
            ("items", self.counts()),
            ("where", f"{self.backend} backend, n_jobs={self.n_jobs}" + self._fewer_workers()),
            ("time", f"wall {wall}, worker CPU {self.cpu_time:.3f} s"),
            ("output", f"{n_printed} item{'s' if n_printed != 1 else ''} printed "
                       "something (see .outputs)"),
        ] + changed + self._retry_facts() + self._stop_facts()

    def _stop_facts(self):
        if self.stopped_by is None:
            return []
        return [("stopped by", f"item {self.stopped_by}, whose result satisfied until "
                               "(items not finished by then were stopped or not started)")]

    def _fewer_workers(self):
        if self.workers is None or self.n_jobs is None or self.workers >= self.n_jobs:
            return ""
        return f" ({self.workers} worker{'s' if self.workers != 1 else ''} used: fewer items)"

    def counts(self):
        """"3 of 6 finished, 1 failed": the same words wherever a run's
        progress is shown. Without a known length, the items read so far
        are the total."""
        total = self.total if self.total is not None else f"{len(self.results)} read so far"
        cached = f" ({self.n_cached} from the cache)" if self.n_cached else ""
        return f"{self.n_finished} of {total} finished{cached}, {len(self.errors)} failed"

    def _retry_facts(self):
        if not self.retried:
            return []
        n_items = len(self.retried)
        return [("retries", f"{n_items} item{'s' if n_items != 1 else ''} needed a "
                            f"retry, up to {max(self.attempts.values())} attempts "
                            "(see .attempts and .retried)")]

    def first_errors(self, n=_ERRORS_SHOWN):
        """The ``n`` failed items with the lowest indices, and how many more
        there are."""
        errors = sorted(self.errors.values(), key=lambda error: error.index)
        return errors[:n], max(0, len(errors) - n)

    def __repr__(self):
        lines = [f"parmap run of {self.func_name}: {self.status}"]
        lines += [f"  {label}: {text}" for label, text in self._facts()]
        shown, more = self.first_errors()
        lines += [f"  item {e.index} ({e.item_repr}): {e.summary}" for e in shown]
        if more:
            lines.append(f"  ... and {more} more failed items in .errors")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text("ParmapRecord(...)" if cycle else repr(self))

    def _repr_html_(self):
        colour = _STATUS_COLOURS.get(self.status, "#666")
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{label}</th>"
            f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
            for label, text in self._facts()
        )
        shown, more = self.first_errors()
        errors = "".join(
            f"<li><code>item {e.index} ({html.escape(e.item_repr)})</code>: "
            f"{html.escape(e.summary)}</li>"
            for e in shown
        )
        if more:
            errors += f"<li>... and {more} more in <code>.errors</code></li>"
        return (
            f"<div><b>parmap run of <code>{html.escape(self.func_name)}</code></b> "
            f"<span style='color:white;background:{colour};padding:0 .4em;"
            f"border-radius:3px'>{self.status}</span>"
            f"<table>{rows}</table>"
            + (f"<b>failed items</b><ul>{errors}</ul>" if errors else "")
            + "</div>"
        )


_STATUS_COLOURS = {
    "done": "#2e7d32",
    "failed": "#c62828",
    "interrupted": "#ef6c00",
    "cancelled": "#ef6c00",
    "stopped": "#2e7d32",
    "running": "#1565c0",
}
