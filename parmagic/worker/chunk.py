"""``Chunk``: several items sent to a worker as one task, and how a worker
unpickles one (taking on the notebook's present first, and the function
kept from the run's earlier chunks: ``kept_runs``).
"""

import pickle

from parmagic.worker import kept_runs
from parmagic.worker.calls import CallOptions, run_calls
from parmagic.worker.present import arrive
from parmagic.worker.process import prepare_worker


class Chunk:
    """Several items sent to a worker as one task, to amortise dispatch.

    With ``sharing`` (a ``shared_data.RunSharing``, on the loky path) the
    chunk pickles itself, large arrays going through shared memory: as it
    is pickled in the parent, only small references travel, and the worker
    unpickles the function once per run (``kept_runs``).
    """

    def __init__(self, func, calls, options=CallOptions(), sharing=None, kept=None,
                 present=None):
        self.func = func
        self.calls = calls  # (index, args) calls: a list, or a call_chunk.CallChunk
        self.options = options
        self.sharing = sharing
        self.kept = kept  # in a worker: the run's kept_runs.KeptRun
        # the run's present.Present: pickled ahead of the function, so that a
        # worker takes on the notebook's folder, path and modules first
        self.present = present

    @property
    def pickles_itself(self):
        """Whether pickling it needs no more than the standard pickler."""
        return self.sharing is not None

    def __call__(self):
        prepare_worker(batch_scheduling=self.options.batch_scheduling)
        return run_calls(self.func, self.calls, self.options, self.kept)

    def __reduce__(self):
        if self.sharing is None:
            return (_plain_chunk, (self.present, self.func, self.calls, self.options))
        sharing = self.sharing
        present = None if self.present is None else self.present.arguments
        return (_unpickled_chunk, (sharing.token, present,
                                            sharing.dumps_once(self.func),
                                            sharing.dumps_items(self.calls), self.options))


def run_pickled(task_data):
    """Run the task pickled in ``task_data`` (``transport.executor_tasks``:
    pickled in the notebook, so that what cannot be sent is found there)."""
    return pickle.loads(task_data)()


def _plain_chunk(present, func, calls, options):
    """A ``Chunk`` pickled as it is (dask), ``present`` taken on first."""
    return Chunk(func, calls, options)


def _unpickled_chunk(token, present, func_data, calls_data, options):
    """The chunk a worker runs, once it has taken on the notebook's
    ``present`` (``Present.arguments``, or None), before the function is
    unpickled."""
    if present is not None:
        arrive(*present)
    kept = kept_runs.kept_for(token, func_data, reuse=options.reuse_kept_function)
    return Chunk(kept.func, pickle.loads(calls_data), options, kept=kept)
