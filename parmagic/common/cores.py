"""How many CPU cores this process may use."""

import functools

import joblib


@functools.cache
def cores():
    """CPU cores this process may use (cgroup and affinity limits count),
    as joblib counts them for ``n_jobs=-1``. Read once: a running kernel's
    limit practically never changes, and reading it costs a file read."""
    return joblib.cpu_count()
