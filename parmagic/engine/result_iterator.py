"""``pmap(..., as_iter=True)`` / ``%pmap --iter``: the results as they come.

The run goes on in a thread of its own while the caller loops over the
iterator: in input order, each result as soon as it and those before it
are ready, or (``unordered``) ``(index, result)`` pairs in the order they
finish. No more than ``room`` finished results wait for the caller: then
the run pauses (what is in flight finishes, no more input is read) until
the caller takes some. It never pauses while the result the ordered
caller needs next has not come: later ones keep arriving until it does
(else a slow first item would stop the run for good). Leaving the loop
early (``break``, an exception, ``close()``, or dropping the iterator)
stops the run; what finished stays in ``record``.
"""

import queue
import threading

from parmagic.common.errors import RunCancelled

# Finished results that may wait for the caller before the run pauses.
DEFAULT_ROOM = 128
# How often a run paused for room checks whether the caller has left.
_LEFT_CHECK_EVERY = 0.1

_RESULT, _FAILED, _END, _ERROR = range(4)


class _Feed:
    """What the run's thread shares with the iterator. The thread holds
    this, never the iterator, so an iterator dropped unfinished is
    collected, and its ``__del__`` stops the run."""

    def __init__(self, room, in_order):
        self.news = queue.Queue()
        self.room = room
        self.waiting = set()  # indices handed over, not yet taken by the caller
        self.wanted = 0 if in_order else None  # the index the caller needs next
        self.turn = threading.Condition()
        self.left = threading.Event()  # the caller stopped iterating
        self.started = threading.Event()
        self.record = None

    def run(self, start_run):
        try:
            start_run(self.on_start, self.on_batch, self.left)
        except BaseException as exc:  # noqa: B036 - the caller gets it from next()
            self.news.put((_ERROR, exc))
        else:
            self.news.put((_END, None))
        finally:
            self.started.set()

    def on_start(self, record):
        self.record = record
        self.started.set()

    def on_batch(self, indices, values, failures):
        """Hand the finished items to the caller, waiting for room."""
        for index, value in sorted(zip(indices, values), key=lambda pair: pair[0]):
            with self.turn:
                while self._full():
                    if self.left.is_set():
                        raise RunCancelled()
                    self.turn.wait(_LEFT_CHECK_EVERY)
                self.waiting.add(index)
            self.news.put((_FAILED, index) if index in failures else (_RESULT, index, value))

    def _full(self):
        """No room, and the caller has something to take."""
        return len(self.waiting) >= self.room and (
            self.wanted is None or self.wanted in self.waiting)

    def hold_back_nothing(self):
        """The caller waits for the run's end: let everything through."""
        with self.turn:
            self.room = float("inf")
            self.turn.notify()

    def taken(self, index, wanted=None):
        """The caller took ``index`` and needs ``wanted`` next (in order)."""
        with self.turn:
            self.waiting.discard(index)
            if wanted is not None:
                self.wanted = wanted
            self.turn.notify()


class ResultIterator:
    """The results of a run as they come (see the module docstring).
    ``start_run(on_start, on_batch, cancel)`` runs the map and returns its
    record; it is called in a thread of its own."""

    def __init__(self, start_run, unordered=False, on_error="raise", room=DEFAULT_ROOM):
        self.unordered = unordered
        self._stops_at_failure = on_error == "raise"
        self._feed = _Feed(room, in_order=not unordered)
        self._pending = {}  # index -> result, finished but not yet yielded
        self._failed = set()
        self._next = 0  # the index the ordered iterator yields next
        self._ended = False
        self._error = None
        self._thread = threading.Thread(target=self._feed.run, args=(start_run,), daemon=True,
                                        name="parmagic-iter")
        self._thread.start()
        self._feed.started.wait()
        if self._feed.record is None:  # it failed before it started: a bad input
            self._thread.join()
            self._take()
            raise self._error

    @property
    def record(self):
        """The run's ``ParmapRecord`` (``_parmap``)."""
        return self._feed.record

    def __iter__(self):
        return self

    def __next__(self):
        __tracebackhide__ = True
        return self._next_unordered() if self.unordered else self._next_in_order()

    def close(self):
        """Stop the run (if it is still going) and wait until it has."""
        self._feed.left.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        feed = getattr(self, "_feed", None)
        if feed is not None:
            feed.left.set()

    def __repr__(self):
        record = self.record
        order = "as they finish" if self.unordered else "in input order"
        return (f"<parmagic results of {getattr(record, 'func_name', '?')} {order}: "
                f"{getattr(record, 'status', 'starting')}>")

    def _next_in_order(self):
        while True:
            if self._next in self._pending:
                self._next += 1
                self._feed.taken(self._next - 1, wanted=self._next)
                return self._pending.pop(self._next - 1)
            if self._next in self._failed:
                self._failed.discard(self._next)
                self._next += 1
                self._feed.taken(self._next - 1, wanted=self._next)
                if self._stops_at_failure:  # the run ends with its error, shortly:
                    self._feed.hold_back_nothing()  # (what comes meanwhile is not taken)
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
            if self._pending:  # the one that finished first
                index = next(iter(self._pending))
                self._feed.taken(index)
                return index, self._pending.pop(index)
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopIteration
            news = self._take()
            if news[0] == _FAILED:
                self._failed.clear()  # (left out here: raised at the end with collect)
                self._feed.taken(news[1])

    def _take(self):
        """Wait for the run's next news and note it."""
        news = self._feed.news.get()
        kind = news[0]
        if kind == _RESULT:
            self._pending[news[1]] = news[2]
        elif kind == _FAILED:
            self._failed.add(news[1])
        else:
            self._ended = True
            self._error = news[1] if kind == _ERROR else None
        return news
