"""The run record: what one map did, bound as ``_parmap`` in IPython.

The engine fills the record while results stream in, so whatever finished
before an error or an interrupt is still there afterwards.
"""

import html
import time

from .errors import short_repr


class _NotComputed:
    """Placeholder in ``results`` for an item that never finished."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "<not computed>"

    def __reduce__(self):
        return (_NotComputed, ())


NOT_COMPUTED = _NotComputed()


class ItemError:
    """One failed item: its index, a short repr of its value, the exception
    and the worker's traceback text."""

    def __init__(self, index, item_repr, exception, traceback_text):
        self.index = index
        self.item_repr = item_repr
        self.exception = exception
        self.traceback = traceback_text

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
        Item index -> :class:`ItemError`.
    func_name, backend, n_jobs : str, str, int
        What was mapped, and where.
    status : str
        ``"running"``, ``"done"``, ``"failed"`` or ``"interrupted"``.
    wall_time : float or None
        Seconds from start to end of the run (None while running).
    n_finished : int
        How many items have a result.
    """

    def __init__(self, func_name, backend, n_jobs):
        self.func_name = func_name
        self.backend = backend
        self.n_jobs = n_jobs
        self.results = []
        self.errors = {}
        self.status = "running"
        self.wall_time = None
        self.n_finished = 0
        self._started = time.perf_counter()

    # -- filled by the engine -------------------------------------------------
    def expect(self, n_items):
        """Make room for items read from the input so far."""
        missing = n_items - len(self.results)
        if missing > 0:
            self.results.extend([NOT_COMPUTED] * missing)

    def add_result(self, index, value):
        self.expect(index + 1)
        self.results[index] = value
        self.n_finished += 1

    def add_error(self, index, item, exception, traceback_text):
        self.expect(index + 1)
        self.errors[index] = ItemError(index, short_repr(item), exception, traceback_text)

    def finish(self, status):
        self.status = status
        self.wall_time = time.perf_counter() - self._started

    # -- read by the user -----------------------------------------------------
    def _summary_lines(self):
        wall = "running" if self.wall_time is None else f"{self.wall_time:.3f} s"
        lines = [
            f"parmap run of {self.func_name}: {self.status}",
            f"  items: {len(self.results)} read, {self.n_finished} finished, "
            f"{len(self.errors)} failed",
            f"  backend: {self.backend}, n_jobs: {self.n_jobs}, wall time: {wall}",
        ]
        for error in list(self.errors.values())[:3]:
            lines.append(
                f"  item {error.index} ({error.item_repr}): "
                f"{type(error.exception).__name__}: {error.exception}"
            )
        return lines

    def __repr__(self):
        return "\n".join(self._summary_lines())

    def _repr_pretty_(self, printer, cycle):
        printer.text("ParmapRecord(...)" if cycle else repr(self))

    def _repr_html_(self):
        head, *rest = self._summary_lines()
        rows = "".join(f"<li>{html.escape(line.strip())}</li>" for line in rest)
        return f"<div><b>{html.escape(head)}</b><ul>{rows}</ul></div>"
