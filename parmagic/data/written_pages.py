"""Which pages of this process's memory were written: asked of Linux.

Two users. A worker maps each shared array's file privately
(``mappings.attach``): pages it only reads stay the file's pages, and the
first write to a page gives the process a private copy of it. A mapping
none of whose pages is a private copy still holds exactly the file's
bytes, so a worker keeps it from one run to the next (``unwritten``)
instead of mapping the file afresh, which faults every page in again
(about 20 ms per 200 MB here). And the notebook asks which pages of a
write-protected array were written since (``write_watch``).

Linux 6.7 and later answer in the kernel (the ``PAGEMAP_SCAN`` ioctl on
``/proc/self/pagemap``: 1.7 ms per 200 MB of small pages here, stopping at
the first page that matches). Older kernels only have the pagemap entries
themselves (one 64-bit entry per page; bit 63: in memory, 62: swapped out,
61: a page of a file or of shared memory), read and checked here: about
5 ms per 200 MB.
"""

import ctypes
import mmap
import os
import struct
import threading

try:
    import fcntl
except ImportError:  # not a POSIX system: nothing here is asked of the kernel
    fcntl = None

_PAGE = mmap.PAGESIZE
_ENTRY = 8  # bytes per page in /proc/self/pagemap
_IN_MEMORY, _SWAPPED, _FILE_PAGE = 4, 2, 1  # bits 63, 62, 61, shifted down by 61

# PAGEMAP_SCAN's page categories (linux/fs.h)
WRITTEN = 1 << 1  # written since write-protected by a userfaultfd (async mode)
FILE = 1 << 2  # a page of a file or of shared memory, not a private copy
PRESENT = 1 << 3
SWAPPED = 1 << 4

_SCAN_ARGS = struct.Struct("12Q")  # struct pm_scan_arg
_PAGEMAP_SCAN = 3 << 30 | _SCAN_ARGS.size << 16 | ord("f") << 8 | 16  # _IOWR('f', 16, ...)
_CHECK_WP_ASYNC = 1 << 1  # PM_SCAN_CHECK_WPASYNC

# (pid, file descriptor or None): /proc/self is resolved when the file is
# opened, so a forked child opens its own
_pagemap = (None, None)
_lock = threading.Lock()


def unwritten(buffer):
    """True if this process wrote to no page of ``buffer`` (a private file
    mapping); False if it did, or if that cannot be told here (no
    ``/proc/self/pagemap``: not Linux, or a restricted /proc)."""
    import numpy

    view = numpy.frombuffer(buffer, dtype=numpy.uint8)
    if view.size == 0:
        return True
    # a private copy is a page in memory or swapped out that is not the file's
    copied = any_page(view.ctypes.data, view.size, inverted=FILE, required=FILE,
                      any_of=PRESENT | SWAPPED)
    if copied is None:
        return _unwritten_by_entries(view)
    return not copied


def any_page(address, nbytes, *, inverted=0, required=0, any_of=0, watched=False):
    """Whether a page of ``nbytes`` at ``address`` matches: it has every
    category in ``required`` and one of ``any_of`` at least, after the
    categories in ``inverted`` are inverted (PAGEMAP_SCAN's rule). None if
    the kernel cannot tell: no PAGEMAP_SCAN, or, with ``watched``, part of
    the range is not write-protected by a userfaultfd in async mode."""
    fd = _pagemap_fd()
    if fd is None:
        return None
    start = address // _PAGE * _PAGE
    end = -(-(address + nbytes) // _PAGE) * _PAGE
    found = (ctypes.c_uint64 * 3)()  # one struct page_region
    args = bytearray(_SCAN_ARGS.pack(
        _SCAN_ARGS.size, _CHECK_WP_ASYNC if watched else 0, start, end,
        0, ctypes.addressof(found), 1, 1, inverted, required, any_of,
        required | any_of or inverted))
    try:
        return fcntl.ioctl(fd, _PAGEMAP_SCAN, args, True) > 0
    except OSError:  # ENOTTY before Linux 6.7; EPERM: not all watched
        return None


def _unwritten_by_entries(view):
    import numpy

    fd = _pagemap_fd()
    if fd is None:
        return False
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
                fd = os.open("/proc/self/pagemap", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                fd = None
            _pagemap = (os.getpid(), fd)
        return fd
