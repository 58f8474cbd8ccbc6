"""``--bg``: a map that runs in a background thread while the notebook stays
usable. The handle shows live progress; ``wait``, ``result`` and ``cancel``
control it.
"""

import contextvars
import html
import threading

from parmagic.common.errors import RunCancelled
from parmagic.display.error_display import show_cleanly


class BackgroundRun:
    """A map running in a background thread.

    The run record's attributes (``results``, ``errors``, ``outputs``,
    ``status``, ...) read through the handle and fill in as items finish.
    """

    def __init__(self, start, on_done=None, on_end=None):
        """``start(on_start, cancel)`` runs the map (``engine.run``);
        ``on_done(handle)`` is called in the background thread when it ends
        without an error, then ``on_end(handle)`` however it ended.

        The thread runs in a copy of the caller's context (``contextvars``):
        in Jupyter that is what sends the run's output to the cell that
        started it rather than to whichever cell runs when it arrives.
        """
        self.cancel_requested = threading.Event()
        self._record = None
        self._error = None
        self._started = threading.Event()
        self._done = threading.Event()
        self._on_done = on_done
        self._on_end = on_end
        self.view = None  # how IPython shows the handle (live_view.LiveView)
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._main, start), daemon=True,
            name="parmagic-background",
        )
        self._thread.start()
        self._started.wait()
        if self._record is None:  # it failed before the run began (bad input)
            raise self._error

    def _main(self, start):
        try:
            start(self._on_start, self.cancel_requested)
            if self._on_done is not None:
                self._on_done(self)
        except BaseException as exc:  # kept for result(); the thread ends quietly
            self._error = exc
            self._error_tb = exc.__traceback__  # each result() raises it from here
        finally:
            self._started.set()
            try:
                if self._on_end is not None and self._record is not None:
                    self._on_end(self)
            finally:
                self._done.set()

    def _on_start(self, record):
        self._record = record
        self._started.set()

    # -- control ------------------------------------------------------------------
    def done(self):
        return self._done.is_set()

    def wait(self, timeout=None):
        """Wait for the run to end (at most ``timeout`` seconds); return
        whether it has."""
        return self._done.wait(timeout)

    def result(self, timeout=None):
        """The results, once the run has ended; raises the run's error (a
        failing item's exception, with its note) if it failed, and
        ``TimeoutError`` if it is still running after ``timeout`` seconds."""
        __tracebackhide__ = True
        if not self.wait(timeout):
            raise TimeoutError(f"the run is still going after {timeout} s")
        if self._error is not None:
            raise show_cleanly(self._error.with_traceback(self._error_tb))
        return self._record.results

    def cancel(self):
        """Stop the run: items not started are not run, busy workers are
        stopped, finished results are kept. Returns once it has stopped."""
        self.cancel_requested.set()
        self.wait()

    # -- reading --------------------------------------------------------------------
    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._record, name)

    def summary(self):
        """One line: where the run is, in the record's own counts, and how
        it failed, if it did."""
        record = self._record
        elapsed = record.wall_time if record.wall_time is not None else record.elapsed()
        text = f"{record.counts()}, {elapsed:.1f} s"
        if record.status == "running":
            return f"running in the background: {text}"
        ended = f"background run of {record.func_name} {record.status}: {text}"
        if self._error is not None and not isinstance(self._error, RunCancelled):
            ended += f". {_failure_line(self._error)} (.result() raises it)"
        return ended

    def __repr__(self):
        running = self._record.status == "running"
        hint = "\n  (.wait(), .result(), .cancel())" if running else ""
        return f"{self.summary()}\n{self._record!r}{hint}"

    def _repr_pretty_(self, printer, cycle):
        printer.text("BackgroundRun(...)" if cycle else repr(self))

    def _repr_html_(self):
        return (
            f"<div><i>{html.escape(self.summary())}</i>"
            f"{self._record._repr_html_()}</div>"
        )

    def _ipython_display_(self):
        from parmagic.display.live_view import (
            show,  # (imports IPython: not for the engine)
        )

        show(self)


def _failure_line(error):
    """``ZeroDivisionError: division by zero`` with parmagic's note after it."""
    text = f"{type(error).__name__}: {error}".rstrip(": ")
    notes = [note.removeprefix("parmagic: ") for note in getattr(error, "__notes__", [])]
    return "; ".join([text, *notes])

