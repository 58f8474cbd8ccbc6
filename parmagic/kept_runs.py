"""What a worker process keeps of a run between the run's chunks.

The chunks of one run carry the same pickled function; a worker unpickles
it once (a notebook function's unpickling costs more than a chunk of tiny
items), so its globals live on from one chunk of the run to the next, as
in any worker process, and the mutation check keeps its watch. The next
run starts from the notebook's values again, and the notebook says when a
run is over (``forget_runs``).
"""

import pickle
import threading

from . import worker, worker_setup  # looked up at call time: worker imports this module


class KeptRun:
    """What a worker process keeps of one run between its chunks, per
    thread: the function, unpickled once (so its globals live on from
    chunk to chunk, as in any process, and a notebook function costs one
    unpickling, not one per chunk), and the mutation check's watch with
    the last fingerprints it took."""

    def __init__(self, func):
        self.func = func
        self.watch = None
        self.snapshot = None


_kept = {}  # (run token, thread id) -> KeptRun, for the latest run only
_kept_lock = threading.Lock()


def forget_runs():
    """The notebook says its run is over: drop what this worker kept of it
    (the function and whatever its globals hold, and SETUP's), so that a
    large global does not stay in every worker until the next run."""
    with _kept_lock:
        _kept.clear()
    worker_setup.forget_runs()


def unpickled_chunk(token, func_data, calls_data, options):
    key = (token, threading.get_ident())
    with _kept_lock:
        kept = _kept.get(key)
    if kept is None:
        kept = KeptRun(pickle.loads(func_data))
        with _kept_lock:
            if any(other != token for other, _ in _kept):
                _kept.clear()  # an earlier run's: its chunks are done here
            _kept[key] = kept
    return worker.Chunk(kept.func, pickle.loads(calls_data), options, kept=kept)
