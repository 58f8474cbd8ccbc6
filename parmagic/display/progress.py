"""The progress bar: ``tqdm.auto``, so a widget in Jupyter and text in a
terminal. By default it appears only once a run has lasted a second; until
then tqdm is not even imported, so short runs pay nothing for it."""

import time

from parmagic.worker import capture

AUTO_DELAY = 1.0  # seconds before a bar appears in "auto" mode


class ProgressBar:
    """A bar counting items that finished well and, beside it, those that
    failed (``mode``: "auto", True or False), and the way to print captured
    output without tearing it. A run with failures never reads 100%, and
    Jupyter's widget turns red when it ends short."""

    def __init__(self, mode, total, desc):
        self.mode = mode
        self.total = total
        self.desc = desc
        self.count = 0
        self.failed = 0
        self._started = time.time()
        self._bar = None
        if mode is True:
            self._open()

    def _open(self):
        from tqdm.auto import tqdm  # imports ipywidgets in Jupyter: only when needed

        # Opened late, the bar shows the items done so far at once (initial),
        # then counts them all in the rate, over the time since the run began
        # (smoothing=0: the average; a moving rate would take the first
        # update, of all the items so far, as instantaneous).
        bar = tqdm(total=self.total, desc=self.desc, unit="item", dynamic_ncols=True,
                   initial=self.count, smoothing=0, delay=1e-9)
        bar.initial = 0
        bar.start_t = self._started
        self._bar = bar
        self._show_failed()
        bar.refresh()

    def update(self, n_done, n_failed=0):
        """``n_done`` more items finished, ``n_failed`` more failed."""
        self.count += n_done
        self.failed += n_failed
        if self._bar is not None:
            if n_failed:
                self._show_failed()
            self._bar.update(n_done)
        elif self.mode == "auto" and time.time() - self._started >= AUTO_DELAY:
            self._open()

    def _show_failed(self):
        if self.failed:
            self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)

    def print(self, parts):
        """Write captured worker output; a text bar is lifted out of the way."""
        bar = self._bar
        if bar is None or hasattr(bar, "container"):  # no bar, or a Jupyter widget
            capture.replay(parts)
            return
        with bar.external_write_mode():
            capture.replay(parts)

    def close(self):
        if self._bar is not None:
            self._bar.close()
