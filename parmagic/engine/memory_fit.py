"""Before a run: say so when the workers' copies of its data could not fit
in the memory that is free.

What a worker gets pickled (the function with the globals it reads, and
its chunks of items) it holds as a copy of its own, in every worker; large
numpy arrays are shared instead (``shared_data``), not copied. Eight
workers each unpickling a 2 GB list need 16 GB: when that is more than the
machine has free, the run would end with the system killing processes, so
the notebook warns first, with what to do. Only large copies are looked
at: asking for free memory costs more than a small run.
"""

import warnings

from parmagic.engine.memory_limit import shown

# Below this much per worker, a run is not looked at.
LARGE_BYTES = 64 << 20


class MemoryFitWarning(UserWarning):
    """The workers' copies of a run's data may not fit in free memory."""


def check(function_bytes, chunk_bytes, n_workers):
    """Warn when ``n_workers`` copies of a function pickled to
    ``function_bytes`` and of two chunks of ``chunk_bytes`` (one running,
    one waiting) are more than the free memory. Returns whether it warned."""
    per_worker = function_bytes + 2 * chunk_bytes
    if per_worker < LARGE_BYTES:
        return False
    free = _available()
    needed = per_worker * n_workers
    if free is None or needed <= free:
        return False
    carried = "the function and the globals it reads" if function_bytes >= chunk_bytes \
        else "its chunks of items"
    warnings.warn(MemoryFitWarning(
        f"parmagic: each of the {n_workers} workers gets its own copy of {carried}, "
        f"about {shown(per_worker)}: {shown(needed)} in all, more than the "
        f"{shown(free)} of memory free, so the system may run out of memory. "
        "Use fewer workers (-n), keep large data in numpy arrays (shared, not "
        "copied), or have the function load its data itself."), stacklevel=2)
    return True


def _available():
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().available
