"""Large arrays reach the worker processes through shared memory, once per
version.

A task (the function, with the globals it reads, and a chunk of items) is
pickled here with cloudpickle, except that every numpy array of at least
``MIN_SHARED_BYTES`` (the columns of a pandas DataFrame included: they
pickle as numpy arrays) is written once into a file of the shared store and
replaced by a small reference. A worker maps that file copy-on-write: it
reads the notebook's data without a copy, and whatever it writes stays in
its own pages, as it would with a pickled copy (so a function that changes
a global array is still caught by the mutation check, and never changes the
notebook's array or another worker's).

Versions: a file is named by an xxhash (XXH3-128) of the array's bytes. A
run hashes each array once (about 20 ms per 200 MB here, 13 ms in parts on
two threads, against 330 ms for ``joblib.hash`` and 40 ms for a copy); an
unchanged array is found in the store and copied nowhere, a changed one
(even in place, ``BIG += 1``) gets a new file, so a worker never sees
stale data. Where Linux can say that no page of an array was written since
it was last hashed (``write_watch``), the array is not hashed again.

Ownership: the notebook process owns the store's folder (in ``/dev/shm``
where there is one, else the temporary folder). On a shared machine the
data are its user's alone: the folder is made new for this user only
(0700) and each file in it likewise (0600) from its first byte, whatever
the umask; nothing of another user's in /dev/shm is used or removed.
Files are removed when the
store goes over its size limit (least recently used first, never a file the
current run uses), by ``clear()``, and at exit; loky's resource tracker,
which outlives a killed kernel, removes the folder if the kernel could not,
and a folder left even so (kernel and tracker killed together) is removed
by the next store made on the machine.
Workers only map files (``mappings``), never remove them; a file removed
while mapped stays readable until its mapping goes.
"""

import collections
import io
import os
import pickle
import shutil
import stat
import tempfile
import threading
import time
import uuid
from typing import NamedTuple

import cloudpickle

from parmagic.common import processes
from parmagic.common.cores import cores
from parmagic.common.joblib_internals import track_folder, untrack_folder
from parmagic.common.switches import switches
from parmagic.data import write_watch
from parmagic.data.mappings import attach
from parmagic.worker import function_pickles
from parmagic.worker.batch import PLAIN_TYPES

MIN_SHARED_BYTES = 1 << 20
DEFAULT_LIMIT_BYTES = 4 << 30


class SharedStore:
    """The notebook's shared files, by content hash, least recently used first."""

    def __init__(self, limit_bytes=DEFAULT_LIMIT_BYTES, root=None):
        self.limit_bytes = limit_bytes
        self.root = root  # where the folder goes: /dev/shm (or the temp folder) if None
        self.folder = None  # made with the first shared array
        self._files = collections.OrderedDict()  # digest -> (path, nbytes)
        self._pins = collections.Counter()  # digest -> runs using it now
        # (address, bytes) of a notebook array -> the digest of its version
        # here; a version that array replaced is never asked for again, so it
        # goes as soon as no run uses it, limit or not
        self._by_source = {}
        self._superseded = set()
        self._lock = threading.Lock()

    @property
    def nbytes(self):
        return sum(nbytes for _, nbytes in self._files.values())

    def put(self, data, in_use, *, watched=False, source=None):
        """The path of a file holding ``data`` (a contiguous numpy array),
        and whether it had to be written (False: this version was there).
        The file is pinned for the run whose ``in_use`` set it joins, until
        that run calls ``release(in_use)``. ``watched``: ``data`` is the
        notebook's own array, not a copy made for this run, so the kernel
        may be asked whether it changed (``write_watch``) instead of
        hashing it again. ``source``: where the notebook's own array lives
        (its address and size); the version it had before is removed once
        no run uses it."""
        view = memoryview(data).cast("B")
        if watched:
            digest = write_watch.watch().digest(data, view, _digest)
        else:
            digest = _digest(view)
        with self._lock:
            written = digest not in self._files
            if written:
                self._files[digest] = (self._write(digest, view), view.nbytes)
            else:
                self._files.move_to_end(digest)
            if digest not in in_use:
                in_use.add(digest)
                self._pins[digest] += 1
            if source is not None:
                previous = self._by_source.get(source)
                self._by_source[source] = digest
                if previous is not None and previous != digest:
                    self._superseded.add(previous)
            if written:
                self._evict()
            return self._files[digest][0], written

    def _write(self, digest, view):
        """Write a new file, making room first; ``StoreFull`` when its
        file system has no room for it even so."""
        try:
            folder = self._folder()
            self._make_room(folder, view.nbytes)
            path = os.path.join(folder, digest)
            _write(path, view)
        except OSError as exc:
            if isinstance(exc, StoreFull):
                raise
            raise StoreFull(f"{exc.strerror or exc} in {self.root or _root()}") from exc
        return path

    def _make_room(self, folder, nbytes):
        """Remove files no running run uses, least recently used first,
        until the file system holding ``folder`` has room for ``nbytes``
        (and a margin, for the rest of the machine)."""
        needed = nbytes + _KEEP_FREE_BYTES
        free = _free_bytes(folder)
        for digest in list(self._files):
            if free is None or free >= needed:
                return
            if not self._pins[digest]:
                _remove(self._files.pop(digest)[0])
                # (a file a worker still maps frees its pages only when unmapped)
                free = _free_bytes(folder)
        if free is not None and free < needed:
            raise StoreFull(
                f"{_size(free)} free in {os.path.dirname(folder)}, "
                f"an array of {_size(nbytes)} to share")

    def release(self, in_use):
        """A run has ended: its files may be evicted again."""
        with self._lock:
            for digest in in_use:
                self._pins[digest] -= 1
                if self._pins[digest] <= 0:
                    del self._pins[digest]
            in_use.clear()
            self._evict()

    def private_folder(self):
        """The store's folder, made now if need be: this user's alone, and
        removed at exit (or by the next store, after a crash). Another
        library's temporary files for a run go there too (joblib's)."""
        with self._lock:
            return self._folder()

    def _folder(self):
        if self.folder is None:
            root = self.root or _root()
            remove_orphans(root)
            # mkdtemp makes a new folder of a name nobody chose before, for
            # this user alone (0700 whatever the umask): a name another user
            # planted in /dev/shm, a symlink included, is passed over
            self.folder = tempfile.mkdtemp(prefix=f"parmagic_{os.getpid()}_", dir=root)
            track_folder(self.folder)
        return self.folder

    def _evict(self):
        """Remove replaced versions, then the least recently used files
        until the store fits its limit; a file a running run uses stays
        (it may exceed the limit)."""
        self._drop_superseded()
        total = self.nbytes
        for digest in list(self._files):
            if total <= self.limit_bytes:
                return
            if not self._pins[digest]:
                path, nbytes = self._files.pop(digest)
                _remove(path)
                total -= nbytes

    def _drop_superseded(self):
        current = set(self._by_source.values())
        for digest in list(self._superseded):
            if digest in current or digest not in self._files:
                self._superseded.discard(digest)  # (equal content elsewhere, or gone)
            elif not self._pins[digest]:
                self._superseded.discard(digest)
                _remove(self._files.pop(digest)[0])
        if len(self._by_source) > len(self._files):  # forget arrays whose files went
            self._by_source = {source: digest for source, digest in self._by_source.items()
                               if digest in self._files}

    def clear(self):
        """Remove every file and the folder (also run at exit)."""
        with self._lock:
            self._files.clear()
            self._by_source.clear()
            self._superseded.clear()
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                untrack_folder(self.folder)
                self.folder = None


class StoreFull(OSError):
    """The shared store has no room for an array (or cannot be written)."""


# Room a write leaves on the store's file system, for the rest of the
# machine (tmpfs pages are memory too).
_KEEP_FREE_BYTES = 16 << 20


def _root():
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _free_bytes(folder):
    """Bytes free for this process on the file system holding ``folder``,
    or None where that cannot be asked."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    return stats.f_bavail * stats.f_frsize


def _size(nbytes):
    return f"{nbytes / 2**20:.0f} MB"


def remove_orphans(root):
    """Remove this user's store folders of notebook processes that are gone.

    A kernel killed together with its process group (a forced restart)
    takes loky's resource tracker with it, so nothing removed its folder;
    the next store made on this machine does. A folder whose pid is alive
    (perhaps reused by another process) is left alone, and so is anything
    that is not a real folder of this user's own: on a shared machine,
    another user may have put something under such a name in /dev/shm, and
    a notebook (even one run as root) removes only what it made.
    """
    for name in os.listdir(root):
        parts = name.split("_", 2)
        if len(parts) == 3 and parts[0] == "parmagic" and parts[1].isdigit():
            path = os.path.join(root, name)
            if _own_folder(path) and not processes.alive(int(parts[1])):
                shutil.rmtree(path, ignore_errors=True)


def _own_folder(path):
    """Whether ``path`` is a folder (not a link to one) of this user's."""
    try:
        status = os.lstat(path)
    except OSError:
        return False
    owner = getattr(os, "getuid", None)  # (Windows: no owners to compare)
    return stat.S_ISDIR(status.st_mode) and (owner is None or status.st_uid == owner())


# A file is made new (never one already there, nor through a link), and
# readable and writable by this user alone from its first moment.
_NEW_PRIVATE_FILE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
                     | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))


def _write(path, view):
    temporary = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(os.open(temporary, _NEW_PRIVATE_FILE, 0o600), "wb") as file:
            file.write(view)
        os.replace(temporary, path)  # a reader never sees half a file
    except BaseException:
        _remove(temporary)
        raise


# Arrays over this size are hashed in parts, on threads (xxhash lets go of
# the GIL): 13 ms instead of 20 ms per 200 MB on two cores here.
_HASH_IN_PARTS_BYTES = 32 << 20
_hashing = None  # a ThreadPoolExecutor, made on first use
_hashing_lock = threading.Lock()


def _digest(view):
    """XXH3-128 of the bytes in ``view``; of a large buffer, of the digests
    of its parts (one per core), hashed side by side."""
    import xxhash

    parts = min(cores(), 8)
    if view.nbytes < _HASH_IN_PARTS_BYTES or parts < 2:
        return xxhash.xxh3_128_hexdigest(view)
    step = -(-view.nbytes // parts)
    pieces = [view[start:start + step] for start in range(0, view.nbytes, step)]
    digests = _hash_pool(parts).map(xxhash.xxh3_128_digest, pieces)
    return xxhash.xxh3_128_hexdigest(b"".join(digests))


def _hash_pool(parts):
    global _hashing
    with _hashing_lock:
        if _hashing is None:
            from concurrent.futures import ThreadPoolExecutor

            _hashing = ThreadPoolExecutor(parts, thread_name_prefix="parmagic-hash")
        return _hashing


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        if os.name != "nt":
            raise
        # Windows: a file a worker still maps cannot be removed; it goes
        # with the store's folder when the notebook process exits



class Transfer(NamedTuple):
    """What one run sent to its workers, in bytes, and the notebook-side
    seconds it took (hashing, copying into the store, pickling)."""

    shared: int  # array bytes written into shared memory (new versions)
    reused: int  # array bytes already there from an earlier run: not copied
    pickled: int  # bytes of the pickled tasks, summed over tasks
    seconds: float


class RunSharing:
    """Pickles one run's tasks, sharing their large arrays through ``store``.

    Each array is hashed once per run (kept by identity for the run, so its
    id cannot be reused meanwhile); the counters say what went to the
    workers and how, for ``-t``.
    """

    def __init__(self, store):
        self.store = store
        self.token = os.urandom(16).hex()  # tells workers a new run has begun
        self._refs = {}  # id(array) -> (array, reference)
        self._in_use = set()  # digests this run refers to: pinned in the store
        # the store had no room, or is switched off: this run pickles its arrays
        self.store_full = not switches.shared_memory
        self.watch_writes = switches.write_watch
        self._pickled = {}  # id(obj) -> (obj, its pickle), see dumps_once
        self.shared_bytes = 0  # written into the store by this run
        self.reused_bytes = 0  # found there already
        self.pickled_bytes = 0  # sent through the pipe, summed over tasks
        self.function_bytes = 0  # the largest function pickle of the run
        self.chunk_bytes = 0  # the largest chunk pickle of the run
        self.seconds = 0.0

    def dumps(self, obj, plain=False):
        data = self._pickle(obj, plain)
        self.pickled_bytes += len(data)
        return data

    def dumps_once(self, obj):
        """``dumps(obj)``, pickled at its first use in the run and reused:
        the function goes with every chunk, and cloudpickling a notebook
        function costs more than a chunk of tiny items. (Its arrays are
        taken once per run anyway, see ``reference``.) A function whose
        pickle cannot have changed since an earlier run is not pickled
        again at all (``function_pickles``)."""
        known = self._pickled.get(id(obj))
        if known is None:
            known = self._pickled[id(obj)] = (obj, function_pickles.pickled(obj, self._pickle))
            self.function_bytes = max(self.function_bytes, len(known[1]))
        self.pickled_bytes += len(known[1])  # sent with each task
        return known[1]

    def _pickle(self, obj, plain=False):
        """The pickle of ``obj``, by the standard pickler if ``plain``, and
        the time it took counted (its bytes are counted as it is sent)."""
        started = time.perf_counter()
        if plain:
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            buffer = io.BytesIO()
            _SharingPickler(buffer, self).dump(obj)
            data = buffer.getvalue()
        self.seconds += time.perf_counter() - started
        return data

    def dumps_items(self, calls):
        """``dumps(calls)``; a small chunk of plain items (numbers,
        strings...), which holds no array to share and nothing cloudpickle
        is needed for, is pickled by the standard pickler, some ten times
        faster for a few tiny items. (For a large chunk, checking every
        item's type costs more than cloudpickle does: ints and strings do
        not reach its Python code.)"""
        items = getattr(calls, "items", None)
        plain = (items is not None and len(items) <= _FEW_ITEMS
                 and PLAIN_TYPES.issuperset(map(type, items)))
        data = self.dumps(calls, plain)
        self.chunk_bytes = max(self.chunk_bytes, len(data))
        return data

    def transfer(self):
        return Transfer(self.shared_bytes, self.reused_bytes, self.pickled_bytes,
                        self.seconds)

    def reference(self, array):
        known = self._refs.get(id(array))
        if known is not None:
            return known[1]
        import numpy

        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        data = array if array.flags[f"{order}_CONTIGUOUS"] else numpy.ascontiguousarray(array)
        own = data is array  # the notebook's array itself, not a copy for this run
        path, written = self.store.put(
            data.reshape(-1, order=order), self._in_use, watched=own and self.watch_writes,
            source=(array.__array_interface__["data"][0], array.nbytes) if own else None)
        if written:
            self.shared_bytes += array.nbytes
        else:
            self.reused_bytes += array.nbytes
        reference = (self.token, path, array.nbytes, array.dtype, array.shape, order)
        self._refs[id(array)] = (array, reference)
        return reference

    def close(self):
        self._refs.clear()
        self._pickled.clear()
        self.store.release(self._in_use)


_FEW_ITEMS = 64


def _sharable(obj):
    # exact numpy arrays (and memmaps) of plain data, without importing numpy
    module = type(obj).__module__
    if module != "numpy" or type(obj).__name__ not in ("ndarray", "memmap"):
        return False
    return obj.nbytes >= MIN_SHARED_BYTES and not obj.dtype.hasobject


class _SharingPickler(cloudpickle.Pickler):
    """cloudpickle, with large arrays replaced by references to the store."""

    def __init__(self, file, sharing):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.sharing = sharing

    def reducer_override(self, obj):
        if _sharable(obj) and not self.sharing.store_full:
            try:
                return attach, self.sharing.reference(obj)
            except StoreFull as exc:  # the run's arrays go pickled instead
                self.sharing.store_full = True
                _warn_store_full(exc)
        return super().reducer_override(obj)


class SharedMemoryFullWarning(UserWarning):
    """Arrays went to the workers pickled: the shared store had no room."""


def _warn_store_full(exc):
    """Say once per process why arrays go pickled, and what to do."""
    global _warned_full
    if _warned_full:
        return
    _warned_full = True
    import warnings

    warnings.warn(SharedMemoryFullWarning(
        f"parmagic: no room to share large arrays with the workers ({exc}), so "
        "they are pickled to each worker instead: slower, and a copy in each. "
        "To fix: give /dev/shm more room (Docker: docker run --shm-size=2g ...), "
        "free what else uses it, or lower %config ParMagic.shared_memory_mb."),
        stacklevel=2)


_warned_full = False


_store = None
_store_lock = threading.Lock()


def store():
    """The notebook process's store (made on first use, cleared at exit)."""
    global _store
    with _store_lock:
        if _store is None:
            import atexit

            _store = SharedStore()
            atexit.register(_store.clear)
        return _store


def set_limit(limit_bytes):
    """Bytes the store may keep between runs (``ParMagic.shared_memory_mb``)."""
    shared = store()
    shared.limit_bytes = limit_bytes
    with shared._lock:
        shared._evict()
