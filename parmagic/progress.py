"""The progress bar: ``tqdm.auto``, so a widget in Jupyter and text in a
terminal. By default it appears only once a run has lasted a second."""

import time

from . import capture

AUTO_DELAY = 1.0  # seconds before a bar appears in "auto" mode


class ProgressBar:
    """A bar counting finished items (``mode``: "auto", True or False), and
    the way to print captured output without tearing it."""

    def __init__(self, mode, total, desc):
        self._bar = None
        if mode is not False:
            from tqdm.auto import tqdm  # imports ipywidgets in Jupyter: only when needed

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit="item",
                delay=0 if mode is True else AUTO_DELAY,
                dynamic_ncols=True,
            )

    def update(self, n_items):
        if self._bar is not None:
            self._bar.update(n_items)

    def print(self, parts):
        """Write captured worker output; a text bar is lifted out of the way
        once it is on screen."""
        bar = self._bar
        if bar is None or hasattr(bar, "container") or not self._due(bar):
            capture.replay(parts)  # no bar, a Jupyter widget, or not shown yet
            return
        with bar.external_write_mode():
            capture.replay(parts)

    @staticmethod
    def _due(bar):
        return time.time() - bar.start_t >= bar.delay

    def close(self):
        if self._bar is not None:
            self._bar.close()
