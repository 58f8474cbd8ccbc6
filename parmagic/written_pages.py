"""Whether this process has written into a copy-on-write file mapping.

A worker maps each shared array's file privately (``mappings.attach``):
pages it only reads stay the file's pages, and the first write to a page
gives the process a private copy of it. Linux says which pages are private
copies in ``/proc/self/pagemap`` (one 64-bit entry per page; bit 63: in
memory, 62: swapped out, 61: a page of a file or of shared memory). A
mapping none of whose pages is a private copy still holds exactly the
file's bytes, so a worker can keep it from one run to the next instead of
mapping the file afresh, which faults every page in again (about 20 ms per
200 MB here, against about 5 ms for this check).
"""

import mmap
import os
import threading

_PAGE = mmap.PAGESIZE
_ENTRY = 8  # bytes per page in /proc/self/pagemap
_IN_MEMORY, _SWAPPED, _FILE_PAGE = 4, 2, 1  # bits 63, 62, 61, shifted down by 61

# (pid, file descriptor or None): /proc/self is resolved when the file is
# opened, so a forked child opens its own
_pagemap = (None, None)
_lock = threading.Lock()


def unwritten(buffer):
    """True if this process wrote to no page of ``buffer`` (a private file
    mapping); False if it did, or if that cannot be told here (no
    ``/proc/self/pagemap``: not Linux, or a restricted /proc)."""
    import numpy

    fd = _pagemap_fd()
    if fd is None:
        return False
    view = numpy.frombuffer(buffer, dtype=numpy.uint8)
    if view.size == 0:
        return True
    first = view.ctypes.data // _PAGE
    last = (view.ctypes.data + view.size - 1) // _PAGE
    try:
        raw = os.pread(fd, (last - first + 1) * _ENTRY, first * _ENTRY)
    except OSError:
        return False
    flags = numpy.frombuffer(raw, dtype=numpy.uint64) >> numpy.uint64(61)
    held = (flags & numpy.uint64(_IN_MEMORY | _SWAPPED)) != 0
    private_copy = held & ((flags & numpy.uint64(_FILE_PAGE)) == 0)
    return not private_copy.any()


def _pagemap_fd():
    global _pagemap
    with _lock:
        pid, fd = _pagemap
        if pid != os.getpid():
            try:
                fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = None
            _pagemap = (os.getpid(), fd)
        return fd
