"""Stopping the worker pool on request (e.g. at the end of a test suite)."""

from parmagic.engine import warmup
from parmagic.engine.cluster import close_clients
from parmagic.engine.parallel_run import stop_own_forkserver
from parmagic.engine.warm_pool import shutdown_pools


def shutdown_workers(kill=False):
    """Stop the loky workers that parmagic and joblib keep warm between calls.

    The next call starts a fresh pool. ``kill=True`` terminates busy workers
    instead of waiting for their current task; the pools of background runs
    still going are always killed (those runs fail as crashed). Connections
    parmagic opened to dask schedulers (``--scheduler``) are closed too; the
    clusters and the notebook's own clients are left alone. A warm-up still
    starting the pool (``%load_ext``) is waited for first, or its workers
    would start after this and be left running. The forkserver that
    ``-b multiprocessing`` runs started (Python 3.14's default on Linux)
    stops too.
    """
    warmup.wait()
    shutdown_pools(kill)
    close_clients()
    stop_own_forkserver()
