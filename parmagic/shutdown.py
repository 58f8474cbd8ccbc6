"""Stopping the worker pool on request (e.g. at the end of a test suite)."""

from joblib.externals.loky import reusable_executor


def shutdown_workers(kill=False):
    """Stop the loky workers that parmagic and joblib keep warm between calls.

    The next call starts a fresh pool. ``kill=True`` terminates busy workers
    instead of waiting for their current task. Connections parmagic opened
    to dask schedulers (``--scheduler``) are closed too; the clusters and
    the notebook's own clients are left alone.
    """
    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=kill)
    from .cluster import close_clients

    close_clients()
