"""``_parmap.timeline()``: one row per worker, one bar per task it ran, so
idle workers and stragglers show at a glance. Needs matplotlib.

Where the figure goes depends on where the user is: Jupyter (the inline or
widget backend) and ``%matplotlib`` sessions show it by themselves; an
IPython terminal or a script on a display opens a window (``plt.show()``);
without a display nothing can show it, so the user is told to pass
``path=``, which saves the figure in any format matplotlib knows.
"""

import warnings
from pathlib import Path

# matplotlib's backends that draw into files only (matplotlib.backends.
# BackendFilter.NON_INTERACTIVE, which older versions do not have)
_FILE_ONLY_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def show(record, ax=None, path=None):
    """Draw ``record``'s timeline and make sure the user gets to see it.

    ``path``: save the figure there and return the path (a ``Path``), for a
    terminal or a report. Otherwise return the Axes: shown by Jupyter or
    ``%matplotlib``, else in a window (``plt.show()``, which waits for the
    window to close), else with a warning saying to pass ``path=``. An
    ``ax`` given is drawn on and left to its owner.
    """
    plt = _pyplot()
    own_figure = ax is None
    ax = draw(record, ax)
    if path is not None:
        path = Path(path).expanduser()
        ax.figure.savefig(path, bbox_inches="tight")
        if own_figure and not _shows_by_itself(plt):
            plt.close(ax.figure)  # saved is all the user asked for
        return path
    if own_figure and not _shows_by_itself(plt):
        if _can_open_windows(plt):
            plt.show()
        else:
            plt.close(ax.figure)
            warnings.warn(
                f"nothing here can show the timeline (matplotlib's "
                f"{plt.get_backend()!r} backend draws into files only): pass "
                "path='timeline.png' to save it (in Jupyter it shows by itself)",
                stacklevel=3,
            )
    return ax


def draw(record, ax=None):
    """Draw ``record``'s tasks on ``ax`` (a new figure if None); return ax."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * max(1, len(_workers(record)))))
    rows = _workers(record)
    for worker, start, seconds, _cpu, n_items in record.spans:
        row = rows[worker]
        ax.broken_barh([(start - record.started_at, seconds)], (row - 0.4, 0.8),
                       color="tab:blue", edgecolor="white", linewidth=0.5)
    ax.set_yticks(range(len(rows)), [f"worker {row + 1}" for row in rows.values()])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    wall = record.wall_time or 0.0
    if wall:
        ax.set_xlim(0, wall)
    n_items = sum(span[4] for span in record.spans)
    ax.set_title(f"{record.func_name}: {n_items} items, {len(record.spans)} tasks, "
                 f"{len(rows)} workers, {wall:.2f} s")
    return ax


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            'the timeline needs matplotlib: pip install "parmagic[plot]"'
        ) from None
    return plt


def _backend(plt):
    return plt.get_backend().lower()


def _shows_by_itself(plt):
    """Whether a new figure appears without ``plt.show()``: Jupyter's inline
    and widget backends, or interactive mode on a display (``%matplotlib``)."""
    backend = _backend(plt)
    if "inline" in backend or "ipympl" in backend or backend in ("nbagg", "widget"):
        return True
    return plt.isinteractive() and backend not in _FILE_ONLY_BACKENDS


def _can_open_windows(plt):
    return _backend(plt) not in _FILE_ONLY_BACKENDS


def _workers(record):
    """Worker id -> row, in order of first appearance."""
    rows = {}
    for worker, *_ in sorted(record.spans, key=lambda span: span[1]):
        rows.setdefault(worker, len(rows))
    return rows
