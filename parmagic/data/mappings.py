"""In a worker: the shared arrays of ``shared_data``, mapped from their files.

A worker maps each file copy-on-write and keeps the mapping for later runs
while it has written to none of its pages (``written_pages``), since a
fresh mapping faults every page in again. It keeps only the mappings the
last run that shared arrays used, and forgets those whose file the notebook
removed.
"""

import mmap
import os

from parmagic.data import written_pages


def attach(run, path, nbytes, dtype, shape, order):
    """The shared array at ``path``, mapped copy-on-write.

    A worker keeps its mappings, so its later tasks do not fault the pages
    in again (~20 ms per 200 MB here). Within a ``run``, what a task writes
    stays visible to the same worker's later tasks (as in any process that
    changes its own copy of a global, and reported as such). Another run
    gets a kept mapping only if this process wrote to none of its pages
    (``written_pages``); otherwise the file is mapped afresh, so no run sees
    what an earlier one wrote.
    """
    import numpy

    global _mapped_run
    if run != _mapped_run:
        if _mapped_run is None:  # this worker's first shared array
            # (here: a worker that maps no array never imports joblib's parallel module)
            from parmagic.common.joblib_internals import count_only_private_memory

            count_only_private_memory()
        _mapped_run = run
        _checked.clear()
        _checked.update(_unwritten_while_idle)  # no chunk ran since that check
        _forget_mappings()
    mapped = _mappings.get(path)
    if mapped is not None and path not in _checked and not written_pages.unwritten(mapped):
        mapped = None  # unmapped once no array of the earlier run uses it
    if mapped is None:
        with open(path, "rb") as file:
            mapped = _mappings[path] = mmap.mmap(file.fileno(), nbytes,
                                                 access=mmap.ACCESS_COPY)
    _checked.add(path)
    _used.add(path)
    return numpy.frombuffer(mapped, dtype=dtype).reshape(shape, order=order)


def check_while_idle():
    """In a worker with nothing to do: check the kept mappings now, so that
    the next run need not (2 to 3 ms per 200 MB with ``PAGEMAP_SCAN``, about
    5 ms from the pagemap entries). A written one is dropped.
    Holds until a chunk runs (``chunk_starts``)."""
    for path, mapped in list(_mappings.items()):
        if path not in _unwritten_while_idle:
            if written_pages.unwritten(mapped):
                _unwritten_while_idle.add(path)
            else:
                del _mappings[path]


def chunk_starts():
    """A chunk's code is about to run here: it may write to any mapping."""
    _unwritten_while_idle.clear()


def _forget_mappings():
    """A run that shares arrays begins: keep only the mappings the last such
    run used (an array changed at every run would otherwise leave one per
    version), and of those only the ones whose file is still there (the
    memory of a removed file lives while it is mapped)."""
    for path in list(_mappings):
        if path not in _used or not os.path.exists(path):
            del _mappings[path]
    _used.clear()


# In a worker: path -> its mmap, kept across runs; the paths the current
# run uses; those checked (or mapped) in it; those found unwritten since
# the last chunk ran.
_mappings = {}
_used = set()
_checked = set()
_unwritten_while_idle = set()
_mapped_run = None
