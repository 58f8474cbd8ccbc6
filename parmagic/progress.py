"""The progress bar: ``tqdm.auto``, so a widget in Jupyter and text in a
terminal. By default it appears only once a run has lasted a second; until
then tqdm is not even imported, so short runs pay nothing for it."""

import time

from . import capture

AUTO_DELAY = 1.0  # seconds before a bar appears in "auto" mode


class ProgressBar:
    """A bar counting finished items (``mode``: "auto", True or False), and
    the way to print captured output without tearing it."""

    def __init__(self, mode, total, desc):
        self.mode = mode
        self.total = total
        self.desc = desc
        self.count = 0
        self._started = time.time()
        self._bar = None
        if mode is True:
            self._open()

    def _open(self):
        from tqdm.auto import tqdm  # imports ipywidgets in Jupyter: only when needed

        self._bar = tqdm(total=self.total, desc=self.desc, unit="item", dynamic_ncols=True)
        self._bar.start_t = self._started  # elapsed time and rate count from the start
        if self.count:
            self._bar.update(self.count)

    def update(self, n_items):
        self.count += n_items
        if self._bar is not None:
            self._bar.update(n_items)
        elif self.mode == "auto" and time.time() - self._started >= AUTO_DELAY:
            self._open()

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
