"""Direct connections from the notebook to the workers of a loky pool.

Each worker runs ``worker_channel.serve``, connected to the notebook by a
Unix socket (or TCP on the loopback where there is none, as on Windows,
or where its path would be too long: see ``_socket_folder``): a chunk is
pickled and written to an idle worker's connection, and its ``Batch`` is
read back by the thread that waits for it. No thread hands anything over
on the way, so a round trip costs about 0.1 ms here, against about 1 ms
through loky's executor. Ahead of a long chunk's ``Batch`` come messages
with what its items printed so far (``worker.live_output``), handed to
``on_output`` as they are read.

A worker holds at most two chunks, the second only if both are small (a
quarter of the socket's send buffer each: then writing the second never
blocks, as the buffer takes it whole while the worker, which has read the
first, may be busy writing a large result the notebook has not read yet);
others wait here, where they can still be cancelled. When a worker dies, loky breaks
the pool (and stops its other workers); each chunk on a connection that
ended fails with the error loky gives the worker's ``serve`` task, which
names the exit codes (``concurrent.futures.process.BrokenProcessPool``).

With ``max_tasks`` set (``--max-tasks-per-worker``), a worker that has run
that many items, counted since it started, is let go once it is idle: its
connection is closed, so its ``serve`` task returns, loky stops it as
cleanly as at its own shutdown, and a fresh worker connects in its place
(``common.joblib_internals.retire_worker``). A chunk never takes a worker past the
limit: the run's chunks are no larger than it (``chunked.ChunkSizer``), and
a worker that could not take the next chunk whole is replaced first.
"""

import collections
import contextlib
import hmac
import os
import pickle
import shutil
import socket
import struct
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection

import cloudpickle

from parmagic.common.joblib_internals import (
    at_exit_before_threads_stop,
    retire_worker,
    track_folder,
    untrack_folder,
)
from parmagic.common.polling import readable
from parmagic.transport.worker_channel import RUN_OVER, TaskFailed, serve
from parmagic.worker import live_output

# The send buffer asked for on each connection (the system may give less,
# e.g. macOS's 8 kB default for local sockets is raised by asking).
_SEND_BUFFER_BYTES = 256 * 1024
# How long workers may take to start and connect.
_CONNECT_TIMEOUT = 120.0
# How often the notebook looks up from waiting for connections, to see
# whether a worker died starting.
_ACCEPT_POLL = 0.05
# How long exit waits for a pool that was still connecting to give up.
_CONNECT_ABORT_TIMEOUT = 10.0
# How long a connection that ended waits for loky to say why the worker died.
_DEATH_NOTICE_TIMEOUT = 5.0
# The longest Unix socket path every system takes (macOS: 104 bytes with
# the final NUL), and what _socket_folder adds to its base folder.
_MAX_SOCKET_PATH = 103
_FOLDER_AND_SOCKET_NAME = len("/parmagic-12345678/s")


class NotSent(Exception):
    """A chunk that could not be pickled here (the exception is its cause)."""


class _Channel:
    def __init__(self, connection, small, pid):
        self.connection = connection
        self.small = small  # bytes: a chunk this size may go to a busy worker
        self.pid = pid  # the worker's process id
        self.serving = None  # loky's future of the worker's serve task
        self.in_flight = collections.deque()  # (future, pickled size)
        self.used = False  # sent a chunk since the last run_over
        self.items = 0  # items sent to this worker since it started

    def fail(self, error):
        """Fail the chunks on their way here with ``error``."""
        while self.in_flight:
            future, _ = self.in_flight.popleft()
            future.set_exception(error)

    def takes(self, nbytes, items, max_tasks):
        if self.spent(items, max_tasks):
            return False
        if not self.in_flight:
            return True
        return (len(self.in_flight) == 1 and nbytes <= self.small
                and self.in_flight[0][1] <= self.small)

    def spent(self, items, max_tasks):
        """Whether ``items`` more would take this worker past ``max_tasks``
        (a fresh worker takes any chunk)."""
        return max_tasks is not None and self.items > 0 and self.items + items > max_tasks


class _ChannelFuture(Future):
    """A chunk's future: asked for its result, it reads the connections
    itself (nothing else does), in the thread that asks."""

    def __init__(self, channels):
        super().__init__()
        self._channels = channels

    def result(self, timeout=None):
        self._channels.wait([self], timeout)
        return super().result(timeout=0)  # TimeoutError if it is not done

    def exception(self, timeout=None):
        self._channels.wait([self], timeout)
        return super().exception(timeout=0)


class Channels:
    """The connections to ``executor``'s workers: ``submit`` a chunk (any
    callable that pickles), ``wait`` for futures. Used by one thread at a
    time (``pool.LokyRun``)."""

    def __init__(self, executor, n_workers, spawning=contextlib.nullcontext):
        self.executor = executor
        self.spawning = spawning
        self.channels = _connect(executor, n_workers, spawning)
        self.waiting = collections.deque()  # (future, data, items) not yet sent
        self.max_tasks = None  # items a worker runs before a fresh one replaces it
        self.retired = 0  # workers replaced for max_tasks
        # called with each live_output.News of running chunks, as it comes,
        # in the thread that waits; None: dropped
        self.on_output = None

    def __len__(self):
        return len(self.channels)

    def submit(self, task, items=1):
        """Send ``task`` (counting as ``items`` towards ``max_tasks``) to an
        idle worker, or keep it until one is; returns its future."""
        future = _ChannelFuture(self)
        try:
            data = dumps_task(task)
        except Exception as exc:
            error = NotSent(f"the task could not be pickled: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            future.set_exception(error)
            return future
        self.waiting.append((future, data, items))
        self._send_waiting()
        return future

    def wait(self, futures, timeout):
        """The ``futures`` that are done, once one is (or ``timeout`` passed;
        None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done = {future for future in futures if future.done()}
            busy = {channel.connection: channel for channel in self.channels
                    if channel.in_flight}
            if done or not busy:  # (nothing on its way: none of these will end)
                return done
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = readable(list(busy), remaining)
            for connection in ready:
                self._receive(busy[connection])
            self._send_waiting()
            if not ready and remaining is not None and time.monotonic() >= deadline:
                return {future for future in futures if future.done()}

    def run_over(self):
        """Tell the workers the run sent chunks to that it is over, so they
        drop what they kept of it; nothing comes back."""
        for channel in self.channels:
            if not channel.used:
                continue
            channel.used = False
            try:
                channel.connection.send_bytes(RUN_OVER)
            except OSError:  # its worker is gone: found at the next run
                pass

    def idle(self):
        """Whether nothing is on its way or waiting to go."""
        return not self.waiting and not any(channel.in_flight for channel in self.channels)

    def close(self):
        """End the workers' ``serve`` tasks (they return to loky's pool).
        Chunks not sent yet are cancelled; those on their way fail."""
        for channel in self.channels:
            channel.connection.close()
            channel.fail(BrokenProcessPool("the pool was stopped"))
        self.channels = []
        for future, _, _ in self.waiting:
            future.cancel()
        self.waiting.clear()

    # -- the connections ---------------------------------------------------------
    def _send_waiting(self):
        while self.waiting:
            future, data, items = self.waiting[0]
            if future.cancelled():
                self.waiting.popleft()
                continue
            if self.max_tasks is not None:
                self._replace_spent(items)
            # an idle worker first; a busy one takes a small second chunk
            taking = [c for c in self.channels if c.takes(len(data), items, self.max_tasks)]
            if not taking:
                return
            channel = min(taking, key=lambda c: len(c.in_flight))
            self.waiting.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                channel.connection.send_bytes(data)
            except OSError:  # its worker is gone: found when reading it
                pass
            channel.in_flight.append((future, len(data)))
            channel.used = True
            channel.items += items

    def _replace_spent(self, items):
        """Replace each idle worker that ``items`` more would take past
        ``max_tasks`` by a fresh one (one whose results are still on their
        way is replaced once they are read)."""
        for channel in [c for c in self.channels
                        if not c.in_flight and c.spent(items, self.max_tasks)]:
            self.channels.remove(channel)
            channel.connection.close()  # its serve task returns
            self.retired += 1
            try:
                retire_worker(self.executor, channel.pid, self.spawning)
                self.channels.extend(_connect(self.executor, 1, self.spawning))
            except BrokenProcessPool as exc:
                self._fail_waiting_if_none_left(exc)
                return

    def _receive(self, channel):
        try:
            data = channel.connection.recv_bytes()
        except (EOFError, OSError):
            self._lost(channel)
            return
        news = live_output.unpickled(data)
        if news is not None:  # output of the chunk running there, not its end
            if self.on_output is not None:
                self.on_output(news)
            return
        future, _ = channel.in_flight.popleft()
        try:
            outcome = pickle.loads(data)
        except Exception as exc:  # e.g. a result's class is unknown here
            future.set_exception(exc)
            return
        if isinstance(outcome, TaskFailed):
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome)

    def _lost(self, channel):
        """A worker's connection ended: its process died. loky fails its
        serve task with the reason (exit codes); its chunks fail with it."""
        self.channels.remove(channel)
        channel.connection.close()
        # serve tasks are paired with connections at random (see _connect),
        # so this one may belong to a worker replaced for max_tasks, which
        # ended well: another, failed with the pool, has the reason
        pending = [c.serving for c in (channel, *self.channels)
                   if not c.serving.done() or c.serving.exception() is not None]
        error = _death_notice(pending[0] if pending else channel.serving)
        channel.fail(error)
        self._fail_waiting_if_none_left(error)

    def _fail_waiting_if_none_left(self, error):
        if not self.channels:  # nothing can run what waits here
            for future, _, _ in self.waiting:
                if future.set_running_or_notify_cancel():
                    future.set_exception(error)
            self.waiting.clear()


def dumps_task(task):
    # A chunk that pickles itself (worker.Chunk, with cloudpickle inside where
    # needed) goes by the standard pickler, which is faster; anything else
    # by cloudpickle, so that functions defined in __main__ travel by value.
    if getattr(task, "pickles_itself", False):
        return pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)


def _death_notice(serving):
    try:
        serving.result(timeout=_DEATH_NOTICE_TIMEOUT)
    except BrokenProcessPool as exc:
        return exc
    except Exception:
        pass
    return BrokenProcessPool(
        "A worker process ended while running a chunk "
        "(the exit codes of the workers are {unknown exit code})")


# Set at interpreter exit: pools still connecting give up (see _abort_at_exit).
exiting = threading.Event()
_connecting = set()  # threads waiting for workers to connect


def _abort_at_exit():
    """At exit, a pool whose workers are still connecting (the warm-up
    started by ``%load_ext`` in a script that ends at once) gives up: its
    thread stops its workers and removes its folder before loky, whose exit
    hook kills them, leaving half-made resources for its tracker to warn
    about."""
    exiting.set()
    for thread in list(_connecting):
        if thread is not threading.current_thread():
            thread.join(_CONNECT_ABORT_TIMEOUT)


def _connect(executor, n_workers, spawning):
    """Have ``n_workers`` of ``executor``'s workers serve chunks, each on a
    connection of its own; returns their ``_Channel``s. A fresh executor
    starts its workers as the serve tasks are submitted, inside
    ``spawning()``; waiting for them to connect is outside it."""
    if exiting.is_set():  # nothing new starts once the process is exiting
        raise BrokenProcessPool("the notebook process is exiting")
    folder = _socket_folder()
    if folder is not None:  # removed by loky's resource tracker if this process dies here
        track_folder(folder)
    listener = None
    channels = []
    greeting = {}  # connections taken, whose hello is not complete: what came so far
    try:
        listener, address = _listen(folder, n_workers)
        key = os.urandom(16)
        with spawning():
            serving = [executor.submit(serve, address, key) for _ in range(n_workers)]
        # once, with the first pool, which has just registered loky's hook
        at_exit_before_threads_stop(_abort_at_exit)
        _connecting.add(threading.current_thread())
        deadline = time.monotonic() + _CONNECT_TIMEOUT
        while len(channels) < n_workers:
            for sock in readable([listener, *greeting], _ACCEPT_POLL):
                if sock is listener:
                    _accept(listener, greeting)
                    continue
                pid = _read_hello(sock, greeting, key)
                if pid is not None:
                    del greeting[sock]
                    sock.setblocking(True)
                    small = _small_chunk_bytes(sock)
                    channels.append(_Channel(Connection(sock.detach()), small, pid))
            if len(channels) < n_workers:
                _check_starting(serving, deadline)
    except BaseException:
        for channel in channels:
            channel.connection.close()
        raise
    finally:
        _connecting.discard(threading.current_thread())
        for sock in greeting:  # never said who they were
            sock.close()
        if listener is not None:
            listener.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            untrack_folder(folder)
    # which serve task is whose does not matter until one ends: then its
    # worker is dead, and loky gives every serve task of the pool the reason
    for channel, future in zip(channels, serving):
        channel.serving = future
    return channels


def _socket_folder():
    """A new private folder for the Unix socket the workers connect to, in
    the temp folder or else in /tmp; None where there is no Unix socket
    (Windows) or no folder short enough for its address (macOS allows 104
    bytes, and its $TMPDIR is long): the workers then connect over TCP on
    the loopback (``_listen``)."""
    if not hasattr(socket, "AF_UNIX"):
        return None
    for base in (tempfile.gettempdir(), "/tmp"):
        if len(base) + _FOLDER_AND_SOCKET_NAME <= _MAX_SOCKET_PATH and os.access(base, os.W_OK):
            return tempfile.mkdtemp(prefix="parmagic-", dir=base)
    return None


def _listen(folder, backlog):
    """A listening socket and the address the workers connect to: a Unix
    socket in ``folder``, or TCP on 127.0.0.1 when there is none. Either
    way only a worker that sends the key is taken (``_connect``)."""
    family = socket.AF_INET if folder is None else socket.AF_UNIX
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0) if folder is None else os.path.join(folder, "s"))
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener, listener.getsockname()


def _accept(listener, greeting):
    try:
        sock, _ = listener.accept()
    except BlockingIOError:  # (taken back by the other end meanwhile)
        return
    sock.setblocking(False)
    if sock.family != getattr(socket, "AF_UNIX", None):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    greeting[sock] = b""


def _read_hello(sock, greeting, key):
    """Read what ``sock`` has of its hello: the process id of a worker of
    this pool once its hello is whole and right, else None. A connection
    that says anything else, or hangs up, is closed at once; one that says
    nothing waits beside the others, never in their way (on TCP, anyone on
    the machine may connect), until the pool has started."""
    # the hello as multiprocessing's Connection frames it: length, key, pid
    expected = struct.pack("!i", len(key) + 8) + key
    try:
        data = sock.recv(len(expected) + 8 - len(greeting[sock]))
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        data = b""
    received = greeting[sock] + data
    known = min(len(received), len(expected))
    if not data or not hmac.compare_digest(received[:known], expected[:known]):
        del greeting[sock]  # hung up, or not one of these workers
        sock.close()
        return None
    greeting[sock] = received
    if len(received) < len(expected) + 8:
        return None
    return int.from_bytes(received[len(expected):], "little")


def _small_chunk_bytes(sock):
    """A quarter of the connection's send buffer, after asking for more."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER_BYTES)
    except OSError:
        pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 4


def _check_starting(serving, deadline):
    if exiting.is_set():
        raise BrokenProcessPool("the notebook process is exiting")
    for future in serving:
        if future.done():  # a worker died starting, or the pool broke
            error = future.exception()
            raise error if error is not None else BrokenProcessPool(
                "a worker stopped serving before it connected")
    if time.monotonic() > deadline:
        raise BrokenProcessPool(
            f"the worker processes did not connect within {_CONNECT_TIMEOUT:g} s")
