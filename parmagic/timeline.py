"""``_parmap.timeline()``: one row per worker, one bar per task it ran, so
idle workers and stragglers show at a glance. Needs matplotlib."""


def draw(record, ax=None):
    """Draw ``record``'s tasks on ``ax`` (a new figure if None); return ax."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            'the timeline needs matplotlib: pip install "parmagic[plot]"'
        ) from None
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


def _workers(record):
    """Worker id -> row, in order of first appearance."""
    rows = {}
    for worker, *_ in sorted(record.spans, key=lambda span: span[1]):
        rows.setdefault(worker, len(rows))
    return rows
