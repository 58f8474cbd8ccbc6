"""How long a function's items took when it last ran, so that a few items
known to be tiny travel as one chunk to one worker.

Each chunk costs a round trip and, on a second worker, a second unpickling
of the function: for four items of a microsecond that was a fifth of the
call here (150 of 750 us), while running them side by side saves nothing.
The first run of a function cannot know; the runs after it ask here. The
guess is checked as the items run: a worker whose one chunk has taken
longer than ``HAND_BACK_AFTER`` hands its remaining items back
(``worker.run_calls``), and they are spread over the workers as any few
items, so a wrong guess costs at most one item's time, once.
"""

import weakref

# Few items whose whole work took less than this in the function's last
# run go as one chunk: splitting them would save at most half of it, less
# than the second chunk's round trip costs.
ONE_CHUNK_WORK = 0.0003
# Seconds after which a chunk sent whole on that guess hands back the items
# it has not started.
HAND_BACK_AFTER = 0.002

# code object -> seconds per item in the last run of a function with that
# code. Keyed by code, not function: a function redefined by re-running its
# cell has new code and starts without a guess; one that lives on keeps it
# until its code is gone.
_seconds_per_item = weakref.WeakKeyDictionary()


def remember(func, busy_seconds, n_items):
    """Record what ``n_items`` items of ``func`` took in the workers."""
    code = getattr(func, "__code__", None)
    if code is not None and n_items:
        _seconds_per_item[code] = busy_seconds / n_items


def fit_one_chunk(func, n_items):
    """Whether ``n_items`` items of ``func`` are, going by its last run,
    too little work to be worth splitting (None: not known, never)."""
    if n_items is None:
        return False
    code = getattr(func, "__code__", None)
    seconds = None if code is None else _seconds_per_item.get(code)
    return seconds is not None and seconds * n_items < ONE_CHUNK_WORK
