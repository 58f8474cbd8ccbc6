"""The ``-t`` summary: where a run's time went, and advice when parallelism
did not pay.

It comes from what the workers measured around their tasks (wall and CPU
seconds), the run's wall time, and how many threads of the whole machine
were busy while results came in (``busy_threads``: exact on Linux, the
one-minute load average on other Unix systems, no hint where neither exists).
Time spent waiting for worker processes to start is shown on a line of its
own and is not counted as dispatch overhead: the next call finds them ready.
"""

import os
import threading
from typing import NamedTuple

# Below this share of CPU per second of run time, items mostly wait.
_WAITING_SHARE = 0.5
# Above this many busy threads per core, threads compete for the cores.
_CROWDED = 1.25
# Hint about data movement when it took more than this share of the wall time.
_DATA_SHARE = 0.25
# Worker start-up shorter than this is not worth a hint.
_STARTUP_HINT_AFTER = 0.05
# Seconds between two samples of the machine's busy threads.
_SAMPLE_EVERY = 0.02
_PROC_LOADAVG = "/proc/loadavg"


def busy_threads():
    """Threads busy on this machine now, not counting the caller; None where
    the system does not say (Windows)."""
    running = _running_now()
    if running is not None:
        return max(0, running - 1)
    try:
        # macOS and the BSDs: only an average over the last minute, which
        # lags: a short run shows less of the crowding it caused
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # no such call, or no value to give
        return None


def _running_now():
    """Threads ready to run at this instant, from Linux's ``/proc/loadavg``
    (its fourth field is "running/total"); None elsewhere."""
    try:
        with open(_PROC_LOADAVG) as loadavg:
            return int(loadavg.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


class LoadSampler:
    """Samples ``busy_threads`` in a background thread while a run lasts."""

    def __init__(self):
        self.samples = []
        self._stop = None  # made when sampling starts: most runs are too short
        self._thread = None
        self._tried = False

    @property
    def started(self):
        return self._tried

    def start(self):
        self._tried = True
        if busy_threads() is not None:  # nothing to sample on this system
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True,
                                            name="parmagic-load-sampler")
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(_SAMPLE_EVERY):
            self.samples.append(busy_threads())

    def stop(self):
        """Stop sampling; return the samples taken."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        return self.samples


class WorkerStartup(NamedTuple):
    """How long a run waited for worker processes to start (or stop):
    ``started`` new workers, ``stopped`` ones a smaller pool let go or that
    ended with the run, and whether the pool is ``kept`` for the next call
    (the warm pool) or goes away with the run (a background run's, or
    one with more workers than cores)."""

    seconds: float
    started: int
    stopped: int = 0
    kept: bool = True

    def __str__(self):
        done = []
        if self.started:
            done.append(f"{_workers(self.started)} started")
        if self.stopped:
            done.append(f"{self.stopped if done else _workers(self.stopped)} stopped")
        return f"{_seconds(self.seconds)} ({', '.join(done)})"


def worker_startup(starts, spans, kept=True):
    """Sum up a pool's ``starts`` (``engine.loky_pool.PoolStart``): each
    lasted until the last new worker began its first task (``spans``, as in
    the run record), or as long as starting took in the notebook, if longer.
    None when the run found its workers ready."""
    starts = [start for start in starts if start.started or start.stopped]
    if not starts:
        return None
    first_task = {}
    for (pid, _), began, *_ in spans:
        first_task[pid] = min(began, first_task.get(pid, began))
    seconds = 0.0
    for start in starts:
        ready = [first_task[pid] for pid in start.new_pids if pid in first_task]
        seconds += max(start.seconds, max(ready, default=0.0) - start.asked_at)
    return WorkerStartup(seconds, sum(start.started for start in starts),
                         sum(start.stopped for start in starts), kept)


class Timing:
    """Wall time, worker CPU, achieved speedup, overhead and hints of a run."""

    def __init__(self, record, cores=None):
        self.func_name = record.func_name
        self.backend = record.backend
        self.n_items = record.n_finished + len(record.errors)
        # a run starts no more workers than it has items (pool_size)
        self.workers = max(1, min(record.n_jobs, self.n_items or record.n_jobs))
        self.cores = cores or os.cpu_count() or 1
        self.wall = record.wall_time or 0.0
        self.busy = record.busy_time
        self.cpu = record.cpu_time
        samples = [n for n in record.load_samples if n is not None]
        self.busy_threads = sum(samples) / len(samples) if samples else None
        self.speedup = self.busy / self.wall if self.wall else 0.0
        self.startup = getattr(record, "startup", None)  # a WorkerStartup, loky only
        starting = min(self.startup.seconds, self.wall) if self.startup else 0.0
        # what was left of the run's wall time once the workers were up
        self.after_startup = self.wall - starting
        self.overhead = max(0.0, self.after_startup - self.busy / self.workers)
        self.transfer = record.transfer

    def hints(self):
        """Advice for this run, most important first."""
        hints = []
        startup = self._startup_hint()
        if startup:
            hints.append(startup)
        if self.workers > 1 and self.n_items and self.busy < self.after_startup:
            took = "the run took" + (" once its workers were up" if self.startup else "")
            hints.append(
                f"The items' own run time adds up to {_seconds(self.busy)}, less than "
                f"the {_seconds(self.after_startup)} {took}: handing them to workers "
                "costs more than it saves. Run serially (-b sequential), or send "
                "more items per task (--batch-size) if each is tiny."
            )
        if self.busy > 0.01 and self.cpu / self.busy < _WAITING_SHARE:
            share = f"{100 * self.cpu / self.busy:.0f}%"
            if self.backend == "threading":
                remedy = ("More threads (-n) overlap more waiting, unless they all "
                          "wait on the same disk or server: then use fewer.")
            else:
                remedy = ("Waiting needs no extra processes: try -b threading, or "
                          "fewer jobs if they all wait on the same disk or server.")
            hints.append(
                f"The items used the CPU for only {share} of their run time: they "
                f"mostly wait (I/O, sleep, locks). {remedy}"
            )
        moving = self.transfer.seconds if self.transfer else 0.0
        if moving > 0.05 and moving > _DATA_SHARE * self.wall:
            hints.append(self._data_hint(moving))
        crowd = self.busy_threads
        if crowd is not None and crowd > self.cores * _CROWDED:
            hints.append(
                f"About {crowd:.0f} threads were busy on {self.cores} cores while it "
                "ran, so they competed for the cores. If the function runs threads "
                "of its own (BLAS in numpy/scipy, numba, torch), use fewer jobs or "
                "limit those threads (threadpoolctl); other programs running at the "
                "same time have the same effect."
            )
        return hints

    def _startup_hint(self):
        """When waiting for workers to start was most of the overhead."""
        startup = self.startup
        if (startup is None or not startup.started
                or startup.seconds < _STARTUP_HINT_AFTER or startup.seconds < self.overhead):
            return None
        workers = _workers(startup.started)
        if startup.kept:
            return (f"Most of the overhead was starting {workers} "
                    f"({_seconds(startup.seconds)}); the next call reuses them.")
        return (f"Most of the overhead was starting and stopping {workers} "
                f"({_seconds(startup.seconds)}): workers beyond the cores, and a "
                "background run's, last for one run only, so the next such call "
                "starts them again.")

    def _data_hint(self, moving):
        shared, _, pickled, _ = self.transfer
        text = (f"Sending data to the workers took {_seconds(moving)} of the "
                f"{_seconds(self.wall)} run. ")
        if pickled >= shared:
            return text + (
                "Most of it was pickled for every task: large lists, dicts or "
                "objects travel in full each time, while numpy arrays and pandas "
                "frames are placed in shared memory once. Convert big data to "
                "arrays, or pass small items (indices) and read the data as a global.")
        return text + (
            "Most of it was arrays copied into shared memory because they were "
            "new or had changed since the last run; calls with unchanged data "
            "copy nothing.")

    def _transfer_line(self):
        shared, reused, pickled, seconds = self.transfer
        return (f"  data to workers    {_bytes(shared)} into shared memory, "
                f"{_bytes(reused)} already there, {_bytes(pickled)} pickled "
                f"({_seconds(seconds)})")

    def __str__(self):
        per_item = self.overhead / self.n_items if self.n_items else 0.0
        lines = [
            f"parmap timing of {self.func_name}: {self.n_items} items on "
            f"{self.workers} {self.backend} worker{'s' if self.workers != 1 else ''}",
            f"  wall time          {_seconds(self.wall)}",
            f"  worker CPU         {_seconds(self.cpu)}",
            f"  items' run time    {_seconds(self.busy)} (summed over workers)",
            f"  speedup            {self.speedup:.2f}x with {self.workers} workers",
        ]
        if self.startup is not None:
            lines.append(f"  worker start-up    {self.startup}")
        lines.append(f"  dispatch overhead  {_seconds(self.overhead)} "
                     f"({_seconds(per_item)} per item)")
        if self.transfer is not None:
            lines.append(self._transfer_line())
        lines += [f"hint: {hint}" for hint in self.hints()]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


def _workers(count):
    return f"{count} worker{'s' if count != 1 else ''}"


def _bytes(value):
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _seconds(value):
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"
