"""``--max-memory``: a worker whose memory passes the limit is stopped.

A thread of the notebook looks at each worker of the run every
``CHECK_EVERY`` seconds and kills one whose own memory (resident, less the
pages it shares, such as the arrays it maps from the shared store) is over
the limit, before it can take the machine's memory and the kernel with it.
The run then reports the items that worker ran as a ``MemoryLimitError``
(a ``WorkerCrashError``, so ``--retries`` runs them again), naming the
limit and what the worker had, and the next chunks go to fresh workers.

Looking from outside, not ``setrlimit`` inside: a limit on address space
counts what a worker maps without using (thread stacks, the shared
arrays), and a ``MemoryError`` raised deep in a library may leave it
broken or be caught; a killed worker is certain. An allocation faster than
the look may pass the limit by what it took in ``CHECK_EVERY``; the
out-of-memory killer takes a worker first even then (``worker_process``).
"""

import re
import threading

from parmagic.common import processes
from parmagic.common.errors import ParmagicInputError, describe_items

CHECK_EVERY = 0.05  # seconds

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(size):
    """Bytes from ``size``: a number of bytes, or a string such as "500MB",
    "2G", "1.5 GiB" (units of 1024); None stays None."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, float, str)):
        raise ParmagicInputError(f"max_memory must be a size such as '2GB', got {size!r}")
    if isinstance(size, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", size.lower())
        if match is None:
            raise ParmagicInputError(
                f"max_memory: {size!r} is not a size; write it as e.g. 500MB or 2GB")
        size = float(match.group(1)) * _UNITS[match.group(2)]
    if size <= 0:
        raise ParmagicInputError(f"max_memory must be more than 0 bytes, got {size!r}")
    return int(size)


def shown(nbytes):
    """"512 MB", "2.5 GB": a size as a message says it."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.3g} GB"
    return f"{nbytes / 2**20:.0f} MB"


def own_memory(pid):
    """Bytes of memory the process ``pid`` has to itself (resident, less
    shared pages), or None if it is gone."""
    import psutil

    try:
        info = psutil.Process(pid).memory_info()
    except psutil.Error:
        return None
    return info.rss - getattr(info, "shared", 0)


class MemoryWatch:
    """Kills the workers ``pids()`` names whose own memory passes ``limit``
    bytes, until ``stop()``; ``stopped`` maps each killed pid to the bytes
    it had."""

    def __init__(self, pids, limit):
        self.pids, self.limit = pids, limit
        self.stopped = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="parmagic-memory-watch")
        self._thread.start()

    def _watch(self):
        while not self._done.wait(CHECK_EVERY):
            try:
                pids = list(self.pids())
            except RuntimeError:  # the pool's table changed as it was read: next time
                continue
            for pid in pids:
                used = own_memory(pid)
                if used is not None and used > self.limit and pid not in self.stopped:
                    self.stopped[pid] = used
                    processes.kill(pid)  # (False: gone meanwhile)

    def stop(self):
        self._done.set()
        self._thread.join()

    def message(self, items):
        """What the ``MemoryLimitError`` of ``items``, lost as a worker
        died, says, if this watch stopped that worker (else None)."""
        if not self.stopped:
            return None
        used = max(self.stopped.values())
        message = (
            f"a worker process went past --max-memory {shown(self.limit)} (it had "
            f"{shown(used)}) while running {describe_items(items)}"
            f"{'' if len(items) == 1 else '; one of them needed that much'}, and was "
            "stopped. The notebook is fine, and later items run on fresh workers. "
            "Raise --max-memory, or make the item need less.")
        self.stopped.clear()
        return message
