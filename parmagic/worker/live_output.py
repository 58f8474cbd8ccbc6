"""What a running chunk's items print, sent to the notebook before the
chunk ends.

In a worker serving a channel (``transport.worker_channel``), a thread
looks at the captured output of the chunk that runs now: once the chunk
has run ``AFTER`` seconds, and then every ``EVERY`` seconds, it sends what
is new since its last look, as a message of its own ahead of the chunk's
``Batch``. A chunk of tiny items ends before the first look and sends
nothing more than before; a long item's ``print`` or log record reaches the
notebook within a fraction of a second.

Parts are only ever appended to an item's output, so what was sent is the
start of what the Batch carries at the end: the notebook shows the rest
from where the live output left off. Every message on the connection goes
through ``send`` under one lock, so nothing of a chunk follows its Batch.

A chunk's items run one after another (except an ``async def``
function's), so a look also tells which of them have ended: those before
the one running now, whose output has all been sent. The notebook can
then go on to the next item's output without waiting for the chunk's end.
"""

import pickle
import threading
import time
from typing import NamedTuple

# Seconds a chunk runs before its output is first sent, then between sends.
AFTER = 0.3
EVERY = 0.2
# The first byte of a live-output message: a Batch's pickle starts with
# b"\x80", and the notebook's "run over" message is empty.
MARK = b"L"


class News(NamedTuple):
    """One live-output message: ``parts``, [(index, new parts)] of items
    that printed since the last look, and ``ended``, the indices of the
    chunk's items that have ended since (all their output has been sent)."""

    parts: list
    ended: object  # a range or a list


class LiveOutput:
    """Sends the running chunk's new output with ``send_bytes``, the
    connection's, which ``send`` also uses for everything else."""

    def __init__(self, send_bytes):
        self._send_bytes = send_bytes
        self._lock = threading.Lock()
        self._outputs = None  # the running chunk's Batch.outputs, or None
        self._calls = self._sink = None  # its (index, args) calls; its capture.Sink
        self._sent = {}  # index -> how many of its parts were sent
        self._ended = 0  # how many of its calls were reported ended
        self._indices = None  # its calls' indices, listed at the first look
        self._started = 0.0
        self._running = threading.Event()
        self._closed = False
        threading.Thread(target=self._loop, daemon=True, name="parmagic-live-output").start()

    def watch(self, outputs, calls, sink):
        """A chunk of ``calls`` starts, capturing into ``outputs`` (index ->
        parts); ``sink.index`` is the item running now (None: not known)."""
        with self._lock:
            self._outputs, self._calls, self._sink = outputs, calls, sink
            self._sent, self._ended, self._started = {}, 0, time.monotonic()
            self._indices = None
        self._running.set()

    def send(self, data):
        """Send ``data`` (a chunk's outcome): the chunk is over."""
        with self._lock:
            self._outputs = self._calls = self._sink = None
            self._running.clear()
            self._send_bytes(data)

    def close(self):
        with self._lock:
            self._closed = True
            self._outputs = None
        self._running.set()  # the thread wakes and ends

    def _loop(self):
        while True:
            self._running.wait()
            if self._closed:
                return
            time.sleep(EVERY)
            with self._lock:
                if self._outputs is None or time.monotonic() - self._started < AFTER:
                    continue
                message = self._news()
                if message is not None:
                    try:
                        self._send_bytes(message)
                    except OSError:  # the notebook is gone: the main thread finds out
                        self._outputs = None

    def _news(self):
        # the item running first: those before it had printed all they
        # would before it started, so the copy below has all of theirs
        running = self._sink.index
        try:
            items = list(self._outputs.items())
        except RuntimeError:  # an item started as it was copied: next time
            return None
        parts = []
        for index, item_parts in items:
            sent, now = self._sent.get(index, 0), len(item_parts)
            if now > sent:
                parts.append((index, item_parts[sent:now]))
                self._sent[index] = now
        ended = self._ended_before(running)
        if not parts and not ended:
            return None
        try:
            return MARK + pickle.dumps(News(parts, ended), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # the Batch carries it all at the end
            return None

    def _ended_before(self, running):
        """The indices of the calls before item ``running`` not reported
        ended yet."""
        if running is None:
            return ()
        if self._indices is None:
            calls = self._calls
            if hasattr(calls, "indices"):  # a call_chunk.CallChunk: a range of indices
                self._indices = calls.indices()
            else:
                self._indices = [index for index, _ in calls]
        indices = self._indices
        try:
            position = indices.index(running)
        except ValueError:
            return ()
        ended, self._ended = indices[self._ended:position], max(self._ended, position)
        return ended


def unpickled(data):
    """The ``News`` of a live-output message, or None if ``data`` is not
    one. News that does not load here is empty: the Batch has it too."""
    if data[:1] != MARK:
        return None
    try:
        return pickle.loads(data[1:])
    except Exception:
        return News([], ())
