"""``pmap(..., as_iter=True)`` / ``%pmap --iter``: the results as they come.

The run goes on in a thread of its own while the caller loops over the
iterator: in input order, each result as soon as it and those before it
are ready, or (``unordered``) ``(index, result)`` pairs in the order they
finish. No more than ``room`` finished results wait for the caller: then
the run pauses (what is in flight finishes, no more input is read) until
the caller takes some. Leaving the loop early (``break``, an exception,
``close()``) stops the run; what finished stays in ``record``.
"""

import queue
import threading

from parmagic.common.errors import RunCancelled

# Finished results that may wait for the caller before the run pauses.
DEFAULT_ROOM = 128
# How often a run paused for room checks whether the caller has left.
_LEFT_CHECK_EVERY = 0.1

_RESULT, _FAILED, _END, _ERROR = range(4)


class ResultIterator:
    """The results of a run as they come (see the module docstring).
    ``start_run(on_start, on_batch, cancel)`` runs the map and returns its
    record; it is called in the iterator's own thread."""

    def __init__(self, start_run, unordered=False, on_error="raise", room=DEFAULT_ROOM):
        self.unordered = unordered
        self.record = None  # the run's ParmapRecord, once it has started
        self._stops_at_failure = on_error == "raise"
        self._queue = queue.Queue()
        self._room = threading.Semaphore(room)
        self._left = threading.Event()  # the caller stopped iterating
        self._started = threading.Event()
        self._pending = {}  # index -> result, finished but not yet yielded (in order)
        self._failed = set()
        self._next = 0  # the index the ordered iterator yields next
        self._ended = False
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(start_run,), daemon=True,
                                        name="parmagic-iter")
        self._thread.start()
        self._started.wait()
        if self.record is None:  # it failed before it started: a bad input
            self._thread.join()
            self._take()
            raise self._error

    def __iter__(self):
        return self

    def __next__(self):
        __tracebackhide__ = True
        return self._next_unordered() if self.unordered else self._next_in_order()

    def close(self):
        """Stop the run (if it is still going) and wait until it has."""
        self._left.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        self._left.set()

    def __repr__(self):
        done = "running" if self.record is None else self.record.status
        order = "as they finish" if self.unordered else "in input order"
        return f"<parmagic results of {getattr(self.record, 'func_name', '?')} {order}: {done}>"

    # -- the caller's side ---------------------------------------------------------
    def _next_in_order(self):
        while True:
            if self._next in self._pending:
                self._room.release()
                self._next += 1
                return self._pending.pop(self._next - 1)
            if self._next in self._failed:
                self._room.release()
                self._failed.discard(self._next)
                self._next += 1
                if self._stops_at_failure:  # the run ends with its error, shortly:
                    while not self._ended:  # raised here, as a loop would raise it
                        self._take()
                    if self._error is not None:
                        raise self._error
                continue
            if self._ended:
                if self._error is not None:
                    raise self._error
                if not self._pending:
                    raise StopIteration
                self._next = min(self._pending)  # past items --until left out
                continue
            self._take()

    def _next_unordered(self):
        while True:
            if self._pending:
                index, value = self._pending.popitem()
                self._room.release()
                return index, value
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopIteration
            kind, *payload = self._take()
            if kind == _FAILED:
                self._room.release()

    def _take(self):
        """Wait for the run's next news and note it."""
        kind, *payload = news = self._queue.get()
        if kind == _RESULT:
            index, value = payload
            self._pending[index] = value
        elif kind == _FAILED:
            self._failed.add(payload[0])
        else:
            self._ended = True
            self._error = payload[0] if kind == _ERROR else None
        return news

    # -- the run's thread ------------------------------------------------------------
    def _run(self, start_run):
        try:
            start_run(self._on_start, self._on_batch, self._left)
        except BaseException as exc:  # noqa: B036 - the caller gets it from next()
            self._queue.put((_ERROR, exc))
        else:
            self._queue.put((_END,))
        finally:
            self._started.set()

    def _on_start(self, record):
        self.record = record
        self._started.set()

    def _on_batch(self, indices, values, failures):
        """Hand the finished items to the caller, waiting for room."""
        for index, value in sorted(zip(indices, values), key=lambda pair: pair[0]):
            while not self._room.acquire(timeout=_LEFT_CHECK_EVERY):
                if self._left.is_set():
                    raise RunCancelled()
            self._queue.put((_FAILED, index) if index in failures else (_RESULT, index, value))
