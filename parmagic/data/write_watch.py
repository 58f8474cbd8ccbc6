"""The notebook's large arrays that nothing wrote to since a run hashed
them, told by the kernel instead of by hashing them again.

``shared_data`` names each version of an array by a hash of its bytes, so a
worker never reads stale data; hashing 200 MB costs about 12 ms per run.
Linux (6.7 and later) can watch the array instead: a range registered with
a userfaultfd in asynchronous write-protect mode has the first write to
each of its pages recorded by the kernel (the writer is not stopped, no
thread handles anything), and ``PAGEMAP_SCAN`` reads those records
(``written_pages``) in microseconds. An array with no page written since
it was protected still has the bytes that were hashed after protecting it.

The watch is not free for the notebook's own code: after protecting, the
first write to each page takes a fault (``BIG += 1`` on 200 MB took 100 ms
instead of 32 here). So an array is watched only once two runs in a row
found it unchanged, and stops being watched at the first run that finds it
written; an array changed before every run is hashed every run and never
protected.

What keeps the answer true:
- protection comes before the hash, so a write during or after hashing is
  recorded;
- a page that is not in memory counts as written (memory given back with
  ``madvise`` reads as zeros without a write; a swapped-out page is only
  hashed again, which is safe), and so does a page of a file or of shared
  memory (another process, or a write to the file, changes it without a
  write through this mapping): only private memory is watched;
- the scan fails unless the whole range is still registered: memory
  unmapped and mapped again (a freed array, a new one at its address) is
  hashed;
- only the pages an array fills are protected (a partial first or last
  page may hold other objects, written all the time); the bytes it has on
  those two are kept and compared instead;
- watched ranges never share a page, since protecting one would clear the
  other's record;
- a forked child opens its own userfaultfd (registrations are not
  inherited).
Every write through the page tables counts, the kernel's own included
(``readinto`` an array, another process's ``process_vm_writev``). One that
bypasses them does not: a device writing by DMA into memory pinned before
the protection (RDMA, io_uring's registered buffers), as with the kernel's
soft-dirty bits.
Where any of this is missing (not Linux, an older kernel, a seccomp filter
that forbids userfaultfd, a file-backed array) arrays are hashed every run,
as before.
"""

import collections
import ctypes
import mmap
import os
import struct
import sys
import threading
import weakref

try:
    import fcntl
except ImportError:  # not a POSIX system: nothing here is asked of the kernel
    fcntl = None

from parmagic.data import written_pages

MIN_WATCHED_BYTES = 4 << 20  # below this, hashing costs under 0.5 ms
_KEPT = 256  # arrays whose last digest is remembered (the oldest forgotten)

_PAGE = mmap.PAGESIZE
_SYSCALL = {"x86_64": 323, "aarch64": 282}  # userfaultfd(2)
_USER_MODE_ONLY = 1  # UFFD_USER_MODE_ONLY: allowed without privileges
_API = 0xAA
_WP_UNPOPULATED, _WP_ASYNC = 1 << 13, 1 << 15  # UFFD_FEATURE_*
_MODE_WP = 1 << 1  # UFFDIO_REGISTER_MODE_WP; UFFDIO_WRITEPROTECT_MODE_WP is 1


def _ioctl_number(direction, number, size):
    return direction << 30 | size << 16 | 0xAA << 8 | number


_UFFDIO_API = _ioctl_number(3, 0x3F, 24)
_UFFDIO_REGISTER = _ioctl_number(3, 0x00, 32)
_UFFDIO_UNREGISTER = _ioctl_number(2, 0x01, 16)
_UFFDIO_WRITEPROTECT = _ioctl_number(3, 0x06, 24)


class _Known:
    __slots__ = ("owner", "digest", "repeated", "pages", "edges")

    def __init__(self, owner, digest):
        self.owner = owner  # a weak reference to the array owning the memory
        self.digest = digest
        self.repeated = False  # the last two hashes agreed
        self.pages = None  # (start, end) of the protected pages, if watched
        self.edges = None  # the bytes on the array's partial first and last pages


class WriteWatch:
    """Digests of arrays by address and size, kept true by the kernel.

    A protected range is released when a run finds it written, when its
    array is garbage (at the next call), and by ``forget``.
    """

    def __init__(self):
        self._faults = _open()  # the userfaultfd, or None
        self._known = collections.OrderedDict()  # (address, nbytes) -> _Known
        self._gone = collections.deque()  # keys of arrays collected since
        self._lock = threading.Lock()

    def digest(self, array, view, hashing):
        """``hashing(view)`` for the bytes ``view`` of ``array`` (contiguous,
        the notebook's own memory, not a copy made for one run), or the
        digest it gave at an earlier call if no page of it has been written
        since."""
        owner = _owner(array)
        if view.nbytes < MIN_WATCHED_BYTES or self._faults is None or owner is None:
            return hashing(view)
        key = (array.ctypes.data, view.nbytes)
        with self._lock:
            self._release_gone()
            known = self._known.pop(key, None)
            if known is not None and known.owner() is not owner:
                self._unwatch(known)  # another array at the same address
                known = None
            if known is not None and known.pages is not None:
                if _untouched(known.pages) and _edges(key[0], view, known.pages) == known.edges:
                    self._known[key] = known
                    return known.digest
                self._unwatch(known)
            elif known is not None and known.repeated:
                known.pages = self._watch(*key)  # before hashing, and so are
                if known.pages is not None:  # the edges taken
                    known.edges = _edges(key[0], view, known.pages)
            digest = hashing(view)
            if known is None:
                known = _Known(weakref.ref(owner, lambda _, key=key: self._gone.append(key)),
                               digest)
            else:
                known.repeated, known.digest = known.digest == digest, digest
            if known.pages is not None and not _untouched(known.pages):
                self._unwatch(known)  # not private memory (or written meanwhile)
            self._known[key] = known
            while len(self._known) > _KEPT:
                self._unwatch(self._known.popitem(last=False)[1])
            return digest

    def watching(self, array):
        """Whether ``array``'s pages are write-protected now."""
        known = self._known.get((array.ctypes.data, array.nbytes))
        return known is not None and known.pages is not None

    def forget(self):
        """Release every protected range and forget every digest."""
        with self._lock:
            while self._known:
                self._unwatch(self._known.popitem()[1])
            self._gone.clear()

    def _release_gone(self):
        while self._gone:
            known = self._known.get(self._gone.popleft())
            if known is not None and known.owner() is None:
                self._unwatch(known)

    def _watch(self, address, nbytes):
        # whole pages only: the partial ones may hold other objects, written
        # all the time (small arrays live among them); their bytes are kept
        start = -(-address // _PAGE) * _PAGE
        end = (address + nbytes) // _PAGE * _PAGE
        if end <= start:
            return None
        for other in self._known.values():
            if other.pages is not None and other.pages[0] < end and start < other.pages[1]:
                return None
        try:
            fcntl.ioctl(self._faults, _UFFDIO_REGISTER,
                        bytearray(struct.pack("4Q", start, end - start, _MODE_WP, 0)), True)
            fcntl.ioctl(self._faults, _UFFDIO_WRITEPROTECT,
                        bytearray(struct.pack("3Q", start, end - start, 1)), True)
        except OSError:  # memory the kernel will not protect (or another's)
            self._release((start, end))
            return None
        return (start, end)

    def _unwatch(self, known):
        if known.pages is not None:
            self._release(known.pages)
        known.pages = known.edges = None
        known.repeated = False

    def _release(self, pages):
        start, end = pages
        try:
            fcntl.ioctl(self._faults, _UFFDIO_UNREGISTER,
                        bytearray(struct.pack("2Q", start, end - start)), True)
        except OSError:  # unmapped meanwhile: nothing is registered there
            pass


def _owner(array):
    """The outermost numpy array over ``array``'s memory: while it lives,
    the memory does. None if it cannot be referred to weakly."""
    import numpy

    while isinstance(array.base, numpy.ndarray):
        array = array.base
    try:
        weakref.ref(array)
    except TypeError:
        return None
    return array


def _edges(address, view, pages):
    start, end = pages
    return bytes(view[:start - address]) + bytes(view[end - address:])


def _untouched(pages):
    """Whether every page is still protected, in memory, and this
    process's own (not a file's or shared memory's page, which another
    mapping or process can change without a write through this one)."""
    start, end = pages
    return written_pages.any_page(
        start, end - start, inverted=written_pages.PRESENT,
        any_of=written_pages.WRITTEN | written_pages.PRESENT | written_pages.FILE,
        watched=True) is False


def _open():
    """A userfaultfd with asynchronous write protection, or None where the
    system has none (or forbids it)."""
    if not sys.platform.startswith("linux"):  # (the numbers below are Linux's)
        return None
    number = _SYSCALL.get(os.uname().machine)
    if number is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fd = libc.syscall(number, os.O_CLOEXEC | os.O_NONBLOCK | _USER_MODE_ONLY)
    if fd < 0:
        return None
    try:
        fcntl.ioctl(fd, _UFFDIO_API,
                    bytearray(struct.pack("3Q", _API, _WP_ASYNC | _WP_UNPOPULATED, 0)), True)
    except OSError:  # a kernel without asynchronous write protection
        os.close(fd)
        return None
    return fd


_watch = (None, None)  # (pid, WriteWatch): a forked child makes its own
_watch_lock = threading.Lock()


def watch():
    """This process's write watch (made on first use)."""
    global _watch
    with _watch_lock:
        pid, current = _watch
        if pid != os.getpid():
            current = WriteWatch()
            _watch = (os.getpid(), current)
        return current
