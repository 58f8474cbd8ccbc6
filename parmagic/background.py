"""``--bg``: a map that runs in a background thread while the notebook stays
usable. The handle shows live progress; ``wait``, ``result`` and ``cancel``
control it.
"""

import html
import threading

from .error_display import show_cleanly


class RunCancelled(KeyboardInterrupt):
    """Raised inside a background run when its handle is cancelled (a
    ``KeyboardInterrupt``, so the run stops exactly as on Ctrl-C: busy
    workers are stopped and finished results are kept)."""


class BackgroundRun:
    """A map running in a background thread.

    The run record's attributes (``results``, ``errors``, ``outputs``,
    ``status``, ...) read through the handle and fill in as items finish.
    """

    def __init__(self, start, on_done=None):
        """``start(on_start, cancel)`` runs the map (``engine.run``);
        ``on_done(handle)`` is called in the background thread when it ends
        without an error."""
        self.cancel_requested = threading.Event()
        self._record = None
        self._error = None
        self._started = threading.Event()
        self._done = threading.Event()
        self._on_done = on_done
        self._thread = threading.Thread(
            target=self._main, args=(start,), daemon=True, name="parmagic-background"
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
        finally:
            self._started.set()
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
            raise show_cleanly(self._error)
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

    def _progress(self):
        record = self._record
        total = record.total if record.total is not None else "?"
        elapsed = record.wall_time if record.wall_time is not None else record.elapsed()
        text = (
            f"{record.n_finished + len(record.errors)}/{total} items done, "
            f"{len(record.errors)} failed, {elapsed:.1f} s"
        )
        if not self.done():
            return f"running in the background: {text}"
        return f"background run ended: {text}"

    def __repr__(self):
        hint = "" if self.done() else "\n  (.wait(), .result(), .cancel())"
        return f"{self._progress()}\n{self._record!r}{hint}"

    def _repr_pretty_(self, printer, cycle):
        printer.text("BackgroundRun(...)" if cycle else repr(self))

    def _repr_html_(self):
        return (
            f"<div><i>{html.escape(self._progress())}</i>"
            f"{self._record._repr_html_()}</div>"
        )

