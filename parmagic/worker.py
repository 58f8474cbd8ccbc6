"""Code that runs inside the worker processes (or threads).

Everything here is pickled to the workers, so it stays small and imports
nothing heavy. A worker never raises for a failing item: it returns a
``Batch`` that says which items failed and why, so the notebook side can
attribute every error to its item and keep every result that did finish.
"""

import contextlib
import functools
import io
import os
import pickle
import queue
import signal
import threading
import time
from typing import NamedTuple

import cloudpickle

from .capture import install as install_routers
from .capture import start_capture, stop_capture
from .errors import ItemExitError, ItemTimeoutError, NotPicklableError, UnpicklableExceptionError
from .mutation import GlobalWatch
from .tracebacks import frames_of

# Results of these types always pickle; others are pickled once in the worker
# (see Batch.__reduce__) so that a failure is pinned on its own item.
_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes)


class CallOptions(NamedTuple):
    """What a worker does around each call."""

    watch_globals: bool = False  # fingerprint globals (mutation check)
    capture: bool = True  # capture print/stderr output per item
    timeout: float = None  # per-item time limit in seconds
    # How an item is stopped at its limit (see ``time_limit``): None lets the
    # worker choose, True forces the watchdog thread.
    watchdog: bool = None

    # What ``engine.run`` passes as ``watchdog``. Tests set it to True to
    # take, on Linux, the path of platforms without SIGALRM.
    force_watchdog = None


class Batch:
    """What happened to a chunk of items, in a form that pickles quickly.

    ``indices`` and ``values`` run in parallel (a failed item's value is
    None); ``failures`` maps index -> (exception, traceback frames, see
    ``tracebacks.frames_of``); ``outputs`` maps index -> captured parts.
    ``span`` is (worker id, start time, wall seconds, CPU seconds) of the
    chunk's work, None for failures found outside a worker;
    ``changed_globals`` are the globals it changed.
    """

    __slots__ = ("indices", "values", "failures", "outputs", "span",
                 "changed_globals")

    def __init__(self, indices=None, values=None, failures=None, outputs=None,
                 span=None, changed_globals=()):
        self.indices = [] if indices is None else indices
        self.values = [] if values is None else values
        self.failures = {} if failures is None else failures
        self.outputs = {} if outputs is None else outputs
        self.span = span
        self.changed_globals = changed_globals

    @classmethod
    def failed(cls, indices, make_error):
        """A batch in which every item failed with ``make_error()``."""
        indices = list(indices)
        failures = {index: (make_error(), []) for index in indices}
        return cls(indices, [None] * len(indices), failures)

    def __len__(self):
        return len(self.indices)

    def __reduce__(self):
        # Values that are not surely picklable are pickled one by one here,
        # so one that cannot be sent back fails alone, naming its item.
        values, packed = self.values, []
        for position, value in enumerate(values):
            if _surely_picklable(value):
                continue
            try:
                values[position] = cloudpickle.dumps(value)
                packed.append(position)
            except Exception as exc:
                values[position] = None
                self.failures[self.indices[position]] = (_result_not_picklable(value, exc), [])
        failures = {
            index: (_pack_error(error), frames)
            for index, (error, frames) in self.failures.items()
        }
        return (_rebuild, (self.indices, values, packed, failures, self.outputs,
                           self.span, self.changed_globals))


def _rebuild(indices, values, packed, failures, *rest):
    for position in packed:
        values[position] = _loads(values[position])
    failures = {
        index: (_unpack_error(*packed_error), frames)
        for index, (packed_error, frames) in failures.items()
    }
    return Batch(indices, values, failures, *rest)


def _surely_picklable(value):
    if isinstance(value, _PLAIN_TYPES):
        return True
    # numpy arrays and scalars without Python objects inside
    return getattr(getattr(value, "dtype", None), "hasobject", True) is False


def _result_not_picklable(value, exc):
    return NotPicklableError(
        f"the result, a {type(value).__name__}, cannot be sent back from the "
        f"worker process ({type(exc).__name__}: {exc}). Return plain data "
        "instead, or use the threading backend (-b threading), where nothing "
        "is pickled."
    )


class RemoteTraceback(Exception):
    """Carries the worker's traceback text; set as the ``__cause__`` of an
    exception re-raised in the notebook, so the user sees their own code."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


def _pack_error(error):
    """An item's exception, pickled here whatever pickler the transport
    uses, and checked to unpickle. A class the standard pickler finds by
    name goes by reference (``__main__.MyError`` in a forked worker is the
    notebook's); else cloudpickle sends it by value, and its class tracker
    gives the notebook back its very own class, so ``except MyError``
    catches it there. The type's name and the message travel beside it, for
    a stand-in if it cannot make the trip."""
    described = (_type_path(type(error)), _safe_str(error))
    for dumps in (pickle.dumps, cloudpickle.dumps):
        try:
            blob = dumps(error)
            _loads(blob)  # e.g. an __init__ that unpickling cannot call
            return (blob, *described)
        except Exception as exc:
            failure = exc
    return (cloudpickle.dumps(_stand_in(*described, failure)), *described)


def _unpack_error(blob, type_path, text):
    try:
        return _loads(blob)
    except Exception as exc:  # e.g. its module is installed on the workers only
        return _stand_in(type_path, text, exc)


def _stand_in(type_path, text, exc):
    reason = f"{type(exc).__name__}: {_safe_str(exc)}"
    return UnpicklableExceptionError(type_path, text, reason)


def _type_path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _safe_str(value):
    try:
        return str(value)
    except Exception as exc:
        return f"<str() failed: {type(exc).__name__}>"


def _loads(blob):
    if b"_class_setstate" not in blob:  # no class sent by value: the fast way
        return pickle.loads(blob)
    return _KeepClassesDefinedHere(io.BytesIO(blob)).load()


class _KeepClassesDefinedHere(pickle.Unpickler):
    """Unpickles as cloudpickle does, except that a class sent by value that
    exists here already (the notebook's own class, found by cloudpickle's
    class tracker) keeps its attributes: cloudpickle would replace its
    methods with the worker's copies, whose globals are a frozen snapshot,
    so a method reading a notebook global would stop seeing it change."""

    _internals = getattr(cloudpickle, "cloudpickle", None)
    _trackers = getattr(_internals, "_DYNAMIC_CLASS_TRACKER_BY_ID", None)

    def __init__(self, file):
        super().__init__(file)
        self.existing = []  # classes of this pickle that were here before

    def find_class(self, module, name):
        found = super().find_class(module, name)
        if self._trackers is None:  # another cloudpickle: leave it be
            return found
        if found is getattr(self._internals, "_make_skeleton_class", None):
            return functools.partial(self._make_skeleton_class, found)
        if found is getattr(self._internals, "_class_setstate", None):
            return functools.partial(self._class_setstate, found)
        return found

    def _make_skeleton_class(self, make, *args):
        tracker_id = args[4]  # (type_constructor, name, bases, kwargs, tracker_id, extra)
        existed = tracker_id is not None and tracker_id in self._trackers
        cls = make(*args)
        if existed:
            self.existing.append(cls)
        return cls

    def _class_setstate(self, setstate, cls, state):
        if any(cls is existing for existing in self.existing):
            return cls
        return setstate(cls, state)


_item_state = threading.local()


def inside_item():
    """Whether this thread is running a mapped item right now (so a ``pmap``
    called here is nested in another)."""
    return getattr(_item_state, "depth", 0) > 0


def call_item(func, index, args, options=CallOptions()):
    """Call ``func(*args)`` for item ``index`` and report what happened."""
    return run_calls(func, [(index, args)], options)


def run_calls(func, calls, options=CallOptions()):
    """A ``Batch`` for the ``(index, args)`` calls. The globals are
    fingerprinted once around all the calls (cheap per chunk)."""
    watch = GlobalWatch(func) if options.watch_globals else None
    before = watch.snapshot() if watch else None
    clock = _cpu_clock()
    started, cpu_started = time.time(), clock()
    batch = Batch()
    if options.capture:
        install_routers()
    _item_state.depth = getattr(_item_state, "depth", 0) + 1
    try:
        for index, args in calls:
            _call(func, index, args, options, batch)
    finally:
        _item_state.depth -= 1
    worker = (os.getpid(), threading.get_ident())
    batch.span = (worker, started, time.time() - started, clock() - cpu_started)
    if watch:
        batch.changed_globals = watch.changed(before)
    return batch


def _cpu_clock():
    # A worker process's own CPU time includes threads it starts (BLAS);
    # in a thread of the notebook's process only that thread's time is ours.
    if threading.current_thread() is threading.main_thread():
        return time.process_time
    return time.thread_time


def _call(func, index, args, options, batch):
    parts = start_capture() if options.capture else None
    value = None
    try:
        with time_limit(options.timeout, options.watchdog):
            value = func(*args)
    except SystemExit as exc:
        error = ItemExitError(f"the item called sys.exit({exc.code!r})")
        batch.failures[index] = (error, frames_of(exc))
    except _TimeLimitReached as exc:
        error = ItemTimeoutError(f"the item ran longer than its {options.timeout:g} s time limit")
        frames = frames_of(exc)
        while frames and frames[-1][0] == __file__:  # the alarm's handler
            frames.pop()
        batch.failures[index] = (error, frames)
    except Exception as exc:
        batch.failures[index] = (exc, frames_of(exc))  # packed in Batch.__reduce__
    finally:
        if options.capture:
            stop_capture(parts)
    batch.indices.append(index)
    batch.values.append(value)
    if parts and parts[1]:
        batch.outputs[index] = parts[1]


class _TimeLimitReached(ItemTimeoutError):
    """Raised in an item when its time limit is reached; ``_call`` reports
    it as an ``ItemTimeoutError`` naming the limit. A class of its own
    because ``PyThreadState_SetAsyncExc`` can only raise a class, without
    arguments."""

    def __init__(self, *args):
        super().__init__(*args or ("the item ran longer than its time limit",))


def time_limit(seconds, watchdog=None):
    """A context that raises ``ItemTimeoutError`` in the running code after
    ``seconds`` (None: no limit).

    In the main thread of a process that has ``signal.setitimer`` (not
    Windows), an alarm signal does it, and it interrupts even a blocking
    call such as ``time.sleep``. Elsewhere (Windows, the threads of the
    threading backend or of a dask worker, a background run), or with
    ``watchdog=True``, a watchdog thread raises the error in the item's
    thread: Python code stops at once, on every platform and in threads too,
    but a call into compiled code (``time.sleep``, a long numpy operation)
    runs to its end first.
    """
    if not seconds:
        return contextlib.nullcontext()
    if watchdog is None:
        watchdog = not (hasattr(signal, "setitimer") and _in_main_thread())
    return _ThreadLimit(seconds) if watchdog else _alarm(seconds)


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _alarm(seconds):
    def expired(signum, frame):
        raise _TimeLimitReached()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _ThreadLimit:
    """A time limit kept by the process's watchdog thread for the thread that
    enters it.

    The exception arrives when that thread next runs Python code, and must
    never hit the code after the item, so leaving clears one that was sent
    but not delivered yet. Leaving takes no lock: the exception could arrive
    while it is held, and the lock would never be released. A handshake of
    flags does it instead (each store is atomic under the GIL): the watchdog
    sends only while ``done`` is unset, and leaving waits out a send in
    progress.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self.done = self.sending = self.sent = False

    def __enter__(self):
        self.thread = threading.get_ident()
        self.deadline = time.monotonic() + self.seconds
        _watchdog.arm(self)

    def __exit__(self, *exc_info):
        # An exception delivered in here leaves the with statement as the
        # item's own: the item did reach its limit.
        self.done = True
        while self.sending:
            time.sleep(0)  # lets the watchdog finish
        if self.sent:
            _raise_in_thread(self.thread, None)  # clears it if still pending

    def expire(self):
        """Called by the watchdog thread at the deadline."""
        self.sending = True
        if not self.done:
            _raise_in_thread(self.thread, _TimeLimitReached)
            self.sent = True
        self.sending = False


class _Watchdog:
    """One thread per process, started with the first limit, that expires
    the limits of items past their deadline."""

    def __init__(self):
        self.new = queue.SimpleQueue()  # put() takes no Python-level lock
        self.thread = None

    def arm(self, limit):
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="parmagic-watchdog",
                                           daemon=True)
            self.thread.start()
        self.new.put(limit)

    def _run(self):
        armed = []
        while True:
            now = time.monotonic()
            wait = min((limit.deadline for limit in armed), default=now + 3600) - now
            with contextlib.suppress(queue.Empty):
                armed.append(self.new.get(timeout=max(wait, 0)))
            now = time.monotonic()
            for limit in [limit for limit in armed if limit.done or limit.deadline <= now]:
                armed.remove(limit)
                limit.expire()


def _new_watchdog():
    # also in a forked child, where the parent's watchdog thread does not exist
    global _watchdog
    _watchdog = _Watchdog()


_new_watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_watchdog)


def _raise_in_thread(ident, exception_class):
    """Have thread ``ident`` raise ``exception_class`` at its next Python
    instruction (None: clear a pending one)."""
    import ctypes  # here: only the watchdog needs it, and workers start faster

    api = getattr(ctypes, "pythonapi", None)  # not on PyPy: the notebook side stops it
    if api is not None:
        exception = None if exception_class is None else ctypes.py_object(exception_class)
        api.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exception)


def _leave_interrupts_to_the_notebook():
    """In a worker process, ignore SIGINT. Jupyter's interrupt (and Ctrl-C
    in a terminal) reaches the whole process group; the notebook side stops
    a foreground run and its workers itself, and a background run must not
    die because another cell was interrupted."""
    global _interrupts_ignored
    if not _interrupts_ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _interrupts_ignored = True


_interrupts_ignored = False


def prepare_worker(notebook_pid=None):
    """Run by each loky worker process as it starts, given the notebook's
    pid (and again, harmlessly, before each chunk, for workers that started
    without it)."""
    _leave_interrupts_to_the_notebook()
    _exit_with_the_notebook(notebook_pid or os.getppid())


def _exit_with_the_notebook(notebook_pid):
    """In a worker process, exit as soon as the notebook process is gone.

    A killed kernel cannot stop its workers, and loky's would otherwise live
    on until their idle timeout (minutes), one of them perhaps still busy
    with an item, and keep the kernel's shared-memory folder from being
    removed by the resource tracker, which waits for them.
    """
    global _watching_parent
    if _watching_parent or threading.current_thread() is not threading.main_thread():
        return  # watching already, or a thread of someone else's process (dask)
    _watching_parent = True

    def watch():  # the pid is given: the notebook may be gone before this starts
        while os.getppid() == notebook_pid:
            time.sleep(_PARENT_CHECK_EVERY)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parmagic-parent-watch").start()


_watching_parent = False
_PARENT_CHECK_EVERY = 0.5  # seconds


class Chunk:
    """Several items sent to a worker as one task, to amortise dispatch.

    With ``sharing`` (a ``shared_data.RunSharing``, on the loky path) the
    chunk pickles itself, large arrays going through shared memory: as it
    is pickled in the parent, only small references travel.
    """

    def __init__(self, func, calls, options=CallOptions(), sharing=None):
        self.func = func
        self.calls = calls  # list of (index, args)
        self.options = options
        self.sharing = sharing

    def __call__(self):
        prepare_worker()
        return run_calls(self.func, self.calls, self.options)

    def __reduce__(self):
        parts = (self.func, self.calls, self.options)
        if self.sharing is None:
            return (Chunk, parts)
        return (_unpickled_chunk, (self.sharing.dumps(parts),))


def _unpickled_chunk(data):
    return Chunk(*pickle.loads(data))
