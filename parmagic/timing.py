"""The ``-t`` summary: where a run's time went, and advice when parallelism
did not pay.

It comes from what the workers measured around their tasks (wall and CPU
seconds), the run's wall time, and how many threads of the whole machine
were busy while results came in (``busy_threads``: exact on Linux, the
one-minute load average on other Unix systems, no hint where neither exists).
"""

import os
import threading

# Below this share of CPU per second of run time, items mostly wait.
_WAITING_SHARE = 0.5
# Above this many busy threads per core, threads compete for the cores.
_CROWDED = 1.25
# Hint about data movement when it took more than this share of the wall time.
_DATA_SHARE = 0.25
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
        self._stop = threading.Event()
        self._thread = None
        self._tried = False

    @property
    def started(self):
        return self._tried

    def start(self):
        self._tried = True
        if busy_threads() is not None:  # nothing to sample on this system
            self._thread = threading.Thread(target=self._sample, daemon=True,
                                            name="parmagic-load-sampler")
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(_SAMPLE_EVERY):
            self.samples.append(busy_threads())

    def stop(self):
        """Stop sampling; return the samples taken."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples


class Timing:
    """Wall time, worker CPU, achieved speedup, overhead and hints of a run."""

    def __init__(self, record, cores=None):
        self.func_name = record.func_name
        self.backend = record.backend
        self.n_items = record.n_finished + len(record.errors)
        self.workers = max(1, record.n_jobs)
        self.cores = cores or os.cpu_count() or 1
        self.wall = record.wall_time or 0.0
        self.busy = record.busy_time
        self.cpu = record.cpu_time
        samples = [n for n in record.load_samples if n is not None]
        self.busy_threads = sum(samples) / len(samples) if samples else None
        self.speedup = self.busy / self.wall if self.wall else 0.0
        self.overhead = max(0.0, self.wall - self.busy / self.workers)
        self.transfer = record.transfer

    def hints(self):
        """Advice for this run, most important first."""
        hints = []
        if self.workers > 1 and self.n_items and self.busy < self.wall:
            hints.append(
                f"The items' own run time adds up to {_seconds(self.busy)}, less than "
                f"the {_seconds(self.wall)} the run took: handing them to workers "
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
            f"  dispatch overhead  {_seconds(self.overhead)} "
            f"({_seconds(per_item)} per item)",
        ]
        if self.transfer is not None:
            lines.append(self._transfer_line())
        lines += [f"hint: {hint}" for hint in self.hints()]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


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
