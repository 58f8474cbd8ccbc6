"""Capturing what each item prints, wherever it runs.

``sys.stdout`` and ``sys.stderr`` are replaced by routers that send text to
the item running in the current thread, if any, and otherwise to the stream
they replaced. Per-thread routing is what lets the threading backend capture
items separately; in a worker process it costs one attribute lookup.

A chunk of items installs one ``Sink`` for its thread and only moves the
sink's ``index`` from item to item: tiny items pay one attribute store for
capture, not a capture object each.

The items of an ``async def`` function run side by side in one thread, so
each of their tasks says where its writes go in a context variable
(``item_outputs``), which the routers look at first.

Only Python-level writes are captured: output written straight to file
descriptor 1 or 2 (C extensions, ``os.system``) goes where it always went.
"""

import contextlib
import contextvars
import logging
import sys
import threading

# The part of an item's output that is a log record, not text (log_capture).
LOG = "log"

_local = threading.local()
# (outputs, index) for the async item whose task runs now: see async_calls
item_outputs = contextvars.ContextVar("parmagic_item_outputs", default=None)
_install_lock = threading.RLock()
_routing_runs = 0  # runs in this process whose items run in its threads
_restore_after = False  # whether the first of them installed the routers


class _Router:
    """Stands in for ``sys.stdout``/``sys.stderr``: writes go to the current
    thread's capture, else to the original stream."""

    def __init__(self, name, original):
        self.name = name
        self.original = original

    def write(self, text):
        target = item_outputs.get()
        if target is None:
            sink = getattr(_local, "sink", None)
            if sink is None:
                return self.original.write(text)
            outputs, index = sink.outputs, sink.index
        else:
            outputs, index = target
        parts = outputs.get(index)
        if parts is None:
            parts = outputs[index] = []
        parts.append((self.name, text))
        return len(text)

    def flush(self):
        if getattr(_local, "sink", None) is None and item_outputs.get() is None:
            self.original.flush()

    def __getattr__(self, name):  # encoding, fileno, isatty, ...
        return getattr(self.original, name)


def install():
    """Put the routers in place (idempotent, thread-safe)."""
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router):
        return
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _Router):
                setattr(sys, name, _Router(name, stream))


def uninstall():
    """Restore the original streams where our routers are still in place."""
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _Router):
                setattr(sys, name, stream.original)


@contextlib.contextmanager
def routing():
    """Keep the routers in place while items run in this process's threads
    (nested runs included). Streams that were not routed before the first
    such run are restored after the last."""
    global _routing_runs, _restore_after
    with _install_lock:
        if _routing_runs == 0:
            _restore_after = not isinstance(sys.stdout, _Router)
        _routing_runs += 1
        install()
    try:
        yield
    finally:
        with _install_lock:
            _routing_runs -= 1
            if _routing_runs == 0 and _restore_after:
                uninstall()


class Sink:
    """Collects a thread's writes into ``outputs``: item index -> list of
    ``(stream name, text)`` parts, for the item whose ``index`` is set."""

    __slots__ = ("index", "outputs")

    def __init__(self, outputs):
        self.index = None
        self.outputs = outputs


def start_capture(outputs):
    """Send this thread's writes to a new ``Sink`` filling ``outputs``
    until ``stop_capture(token)``; returns ``(token, sink)``. A capture
    started inside another (a map nested in an item) ends before it, and
    the outer one then gets what the inner run prints."""
    sink = Sink(outputs)
    token = getattr(_local, "sink", None)
    _local.sink = sink
    return token, sink


def stop_capture(token):
    _local.sink = token


def current_item():
    """``(outputs, index)`` of the item running in this thread (or task)
    whose output is captured, or None."""
    target = item_outputs.get()
    if target is not None:
        return target
    sink = getattr(_local, "sink", None)
    if sink is None or sink.index is None:
        return None
    return sink.outputs, sink.index


def joined(parts):
    """The captured text as the user would have seen it (log records in
    logging's basic format)."""
    if not parts:
        return ""
    return "".join(_LOG_TEXT.format(text) + "\n" if name == LOG else text
                   for name, text in parts)


_LOG_TEXT = logging.Formatter(logging.BASIC_FORMAT)


def replay(parts):
    """Write captured parts to the current ``sys.stdout``/``sys.stderr``;
    a log record goes to this process's logger of its name, whose
    handlers show it (or not) as they would have in a serial loop."""
    for name, text in parts:
        if name == LOG:
            logging.getLogger(text.name).handle(text)
        else:
            getattr(sys, name).write(text)
    for name in {name for name, _ in parts} - {LOG}:
        getattr(sys, name).flush()
