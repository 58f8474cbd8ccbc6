"""How many workers a run starts: never more than it has items, and a
warning when more worker processes than cores would share the machine.

A run of 3 items with ``-n 64`` starts 3 workers: the other 61 would have
nothing to do but start up (each a new Python process) and linger. For an
input without a length (a generator), the run reads up to ``n_jobs`` items
before it starts its workers, which is about as far ahead as it reads
anyway, and sizes the pool by what it found.
"""



from parmagic.common import joblib_internals as internals
from parmagic.common.cores import cores
from parmagic.display import warning_display


class OversubscriptionWarning(UserWarning):
    """A run starts more worker processes than the machine has cores: they
    take turns on the cores, so CPU-bound work gets no faster."""


def size_pool(parallel, n_jobs, inputs):
    """A run's calls (from ``inputs``), and how many workers it starts with
    ``parallel`` for ``n_jobs``: no more than it has items, with a warning
    when that is more processes than cores. joblib's own pools (threading,
    multiprocessing) are sized here too; a cluster's workers are not."""
    calls = inputs.calls()
    if n_jobs < 2 or not internals.starts_local_workers(parallel):
        return calls, n_jobs
    n_items = inputs.length
    if n_items is None:
        calls, n_items = read_ahead(inputs, n_jobs)
    workers = workers_for(n_jobs, n_items)
    if internals.runs_local_processes(parallel):
        warn_if_oversubscribed(n_jobs, workers)
    if workers < n_jobs and not internals.runs_on_loky(parallel, n_jobs):
        # with one job, joblib would run the items in this process
        parallel.n_jobs = max(2, workers)
    return calls, workers


def workers_for(n_jobs, n_items):
    """Workers a run of ``n_items`` (None: unknown) needs with ``n_jobs``."""
    return n_jobs if n_items is None else max(1, min(n_jobs, n_items))


def read_ahead(inputs, n_jobs):
    """Read up to ``n_jobs`` items of ``inputs`` (an ``inputs.Inputs`` with
    no length) now. Returns the calls to run, those first, and the number of
    items when the input ended within them, else None. An error the input
    raises meanwhile is raised where the run reaches it, as without this."""
    head = []
    try:
        while len(head) < n_jobs:
            call = inputs.take(1)
            if not call:
                return _AfterHead(head, inputs.calls()), len(head)
            head += call
    except Exception as error:
        return _AfterHead(head, inputs.calls(), error), None
    return _AfterHead(head, inputs.calls()), None


class _AfterHead:
    """``head`` (calls read already), then ``calls``: one at a time or, as
    ``Inputs.calls()`` does, a list of up to ``n`` with ``take(n)``. An
    ``error`` met while reading the head is raised once the head is used."""

    def __init__(self, head, calls, error=None):
        self._head = head
        self._calls = calls
        self._error = error

    def take(self, n):
        if not self._head:
            self._raise_error()
            return self._calls.take(n)
        taken, self._head = self._head[:n], self._head[n:]
        if len(taken) == n or self._error is not None:
            return taken  # an error comes with the next call
        return taken + self._calls.take(n - len(taken))

    def __iter__(self):
        return self

    def __next__(self):
        if self._head:
            return self._head.pop(0)
        self._raise_error()
        return next(self._calls)

    def _raise_error(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def warn_if_oversubscribed(n_jobs, workers):
    """One warning per run that starts more worker processes than cores."""
    n_cores = cores()
    if workers <= n_cores:
        return
    asked = "" if workers == n_jobs else f" (n_jobs={n_jobs}, one per item)"
    text = (
        f"{workers} worker processes{asked} on {n_cores} CPU cores: they take "
        "turns on the cores, so CPU-bound work gets no faster and each run "
        "waits for them to start; they stop when the run ends. Use -n -1 "
        "(n_jobs=-1) for one per core, or -b threading for work that mostly waits."
    )
    warning_display.warn(text, OversubscriptionWarning, "parmagic", 0)
