"""Per-item time limits (``--timeout``), enforced inside the worker.

An alarm signal where the item runs in a process's main thread and the
system has ``setitimer``; elsewhere a watchdog thread that raises the error
in the item's thread. What neither can stop (compiled code) is left to the
notebook side, which stops the worker (see ``pool.LokyRun``).
"""

import contextlib
import os
import queue
import signal
import threading
import time

from parmagic.common.errors import ItemTimeoutError


class TimeLimitReached(ItemTimeoutError):
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
        raise TimeLimitReached()

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
    but not delivered yet. The watchdog sends only while ``done`` is unset,
    holding ``sending``; leaving sets ``done`` and then waits out a send in
    progress by taking ``sending``. A lock, not a flag, orders the two
    threads' stores and loads (free-threaded builds run them in parallel);
    it is this limit's own, so one left held by an exception delivered
    while leaving takes it is never taken again.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self.done = self.sent = False
        self.sending = threading.Lock()

    def __enter__(self):
        self.thread = threading.get_ident()
        self.deadline = time.monotonic() + self.seconds
        _watchdog.arm(self)

    def __exit__(self, *exc_info):
        # An exception delivered in here leaves the with statement as the
        # item's own: the item did reach its limit.
        self.done = True
        self.sending.acquire()  # a send in progress ends first
        self.sending.release()
        if self.sent:
            _raise_in_thread(self.thread, None)  # clears it if still pending

    def expire(self):
        """Called by the watchdog thread at the deadline."""
        with self.sending:
            if not self.done:
                _raise_in_thread(self.thread, TimeLimitReached)
                self.sent = True


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
