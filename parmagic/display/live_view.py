"""A background run as IPython shows it: live in Jupyter, once in a terminal.

In a Jupyter kernel the handle is shown with a ``display_id``, and a small
thread updates every view of it in place (``update_display``) until the run
ends, with its final state last: counts that move, then done or failed with
the failure. The ``%pmap --bg`` magic shows it in the cell that started the
run; showing the handle again in that cell (``run`` on the cell's last line)
adds nothing, and in a later cell it adds a second view that moves with the
first. In a terminal there is nothing to update in place: the handle prints
as it is, and the magic prints one line when the run ends.
"""

import contextvars
import threading
import uuid

from IPython import get_ipython
from IPython.display import display, update_display

# Seconds between updates of a running view.
UPDATE_EVERY = 0.5


def in_kernel():
    """Whether IPython here is a Jupyter kernel, where views update in place."""
    return getattr(get_ipython(), "kernel", None) is not None


def show(handle):
    """Show ``handle`` (``BackgroundRun._ipython_display_``)."""
    if not in_kernel():
        display(_bundle(handle), raw=True)
        return
    if handle.view is None:
        handle.view = LiveView(handle)
    handle.view.show()


class LiveView:
    """The views of one background run, all under one display id."""

    def __init__(self, handle):
        self.handle = handle
        self.display_id = f"parmagic-run-{uuid.uuid4().hex}"
        self._cells = set()  # execution counts of the cells showing it
        self._follower = None
        self._sending = threading.Lock()  # one update at a time, the final one last
        self._finished = False

    def show(self):
        cell = get_ipython().execution_count
        if cell in self._cells:
            return
        self._cells.add(cell)
        display(_bundle(self.handle), raw=True, display_id=self.display_id)
        if self._follower is None and not self.handle.done():
            self._follower = threading.Thread(  # updates go out as from this cell
                target=contextvars.copy_context().run, args=(self._follow,),
                daemon=True, name="parmagic-live-view")
            self._follower.start()

    def _follow(self):
        while not self.handle.wait(UPDATE_EVERY):
            self._update()
        self.finish()

    def finish(self):
        """Show the run's final state; later updates send nothing. Called
        from the run's own thread before the handle is done, so a cell that
        waits for the run (``run.cancel()``, ``run.wait()``) ends after it."""
        self._update(final=True)

    def _update(self, final=False):
        with self._sending:
            if self._finished:
                return
            self._finished = final
            update_display(_bundle(self.handle), raw=True, display_id=self.display_id)


def _bundle(handle):
    return {"text/plain": repr(handle), "text/html": handle._repr_html_()}
