"""In a worker process: take chunks straight from the notebook.

loky hands a task to a worker through two manager threads and a queue
feeder in the notebook, about a millisecond per round trip here, as long
as a fork pool's whole call of a few tiny items. So each worker of
parmagic's pools runs one long loky task, ``serve``, which connects to the
notebook (``channels``) and then runs the chunks it receives and sends
their ``Batch`` back on that one connection, until the notebook closes it.
loky still starts, watches and stops the process: a worker that dies
breaks its pool as before, and the notebook sees its connection end.
While a chunk runs, what its items print goes to the notebook on the same
connection as it grows (``live_output``).
"""

import os
import pickle
import socket
from multiprocessing.connection import Connection

import cloudpickle

from parmagic.common.polling import readable
from parmagic.data import mappings
from parmagic.worker import calls, kept_runs
from parmagic.worker.batch import dumps_batch
from parmagic.worker.live_output import LiveOutput

# Seconds without a chunk after which a worker counts as idle. Runs that
# follow each other closely are not kept waiting by its idle work.
_IDLE_AFTER = 0.05


# What the notebook sends when a run is over (a chunk is never empty).
RUN_OVER = b""


class TaskFailed:
    """Sent instead of a ``Batch`` when a chunk could not even be run (its
    pickle did not load here, or its Batch did not pickle)."""

    def __init__(self, error):
        self.error = error


def serve(address, key):
    """Connect to the notebook at ``address``, say who this is (``key``
    and the process id), and run chunks until the notebook closes the connection; forget what
    was kept of a run when the notebook says it is over."""
    if isinstance(address, tuple):  # TCP on the loopback (channels._listen)
        sock = socket.create_connection(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
    connection = Connection(sock.detach())
    calls.next_chunk_waiting = lambda: bool(readable([connection], 0))
    live = LiveOutput(connection.send_bytes)  # what items print, as they run
    calls.live_outputs = live.watch
    try:
        live.send(key + os.getpid().to_bytes(8, "little"))
        while True:
            if not connection.poll(_IDLE_AFTER):  # idle: do what the next run would
                mappings.check_while_idle()
            try:
                message = connection.recv_bytes()
            except (EOFError, OSError):
                return
            if message == RUN_OVER:  # nothing to answer
                kept_runs.forget_runs()
            else:
                live.send(_run(message))
    finally:
        calls.next_chunk_waiting = calls.live_outputs = None
        live.close()
        connection.close()


def _run(message):
    try:
        chunk = pickle.loads(message)  # maps a run's shared arrays (mappings)
        mappings.chunk_starts()
        return dumps_batch(chunk())
    except Exception as exc:
        try:
            return cloudpickle.dumps(TaskFailed(exc), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return pickle.dumps(TaskFailed(RuntimeError(
                f"{type(exc).__name__}: {exc}")), protocol=pickle.HIGHEST_PROTOCOL)
