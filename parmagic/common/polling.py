"""Which connections have something to read: ``multiprocessing``'s
``connection.wait``, with one ``poll`` call instead of a selector object.

The notebook waits for a chunk's result and a worker checks for its next
chunk once or twice in every run; the selector that ``wait`` builds each
time is a few microseconds of a round trip that costs a few dozen. Where
``select.poll`` does not exist (Windows), ``wait`` itself is used.
"""

import math
import select
from multiprocessing.connection import wait

_EVENTS = getattr(select, "POLLIN", 0) | getattr(select, "POLLPRI", 0)


def readable(connections, timeout=None):
    """The ``connections`` (``multiprocessing`` connections) that can be
    read without blocking, or whose other end has closed, once one can or
    ``timeout`` seconds have passed (None: no limit)."""
    if not hasattr(select, "poll"):
        return wait(connections, timeout)
    poller = select.poll()
    by_fd = {}
    for connection in connections:
        by_fd[connection.fileno()] = connection
        poller.register(connection.fileno(), _EVENTS)
    milliseconds = None if timeout is None else math.ceil(max(0.0, timeout) * 1000)
    return [by_fd[fd] for fd, _ in poller.poll(milliseconds)]
