"""What a loky worker process does for itself: leave Ctrl-C to the
notebook, exit when the notebook process is gone, let the notebook have its
core when it sends work, and be the process that dies when memory runs
out."""

import os
import signal
import threading
import time

from parmagic.common import processes


def _leave_interrupts_to_the_notebook():
    """In a worker process, ignore SIGINT. Jupyter's interrupt (and Ctrl-C
    in a terminal) reaches the whole process group; the notebook side stops
    a foreground run and its workers itself, and a background run must not
    die because another cell was interrupted. (The notebook started this
    process with SIGINT held back, so none arrived before this; one held
    back meanwhile is dropped by the unblocking.)"""
    global _interrupts_ignored
    if not _interrupts_ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        _interrupts_ignored = True


_interrupts_ignored = False


def prepare_worker(notebook_pid=None, batch_scheduling=True):
    """Run by each loky worker process as it starts, given the notebook's
    pid (and again, harmlessly, before each chunk, for workers that started
    without it). ``batch_scheduling``: run as SCHED_BATCH on Linux
    (``switches.batch_scheduling``)."""
    _leave_interrupts_to_the_notebook()
    _exit_with_the_notebook(notebook_pid or os.getppid())
    if batch_scheduling:
        _yield_to_the_notebook()
    _die_first_when_memory_runs_out()


def _die_first_when_memory_runs_out():
    """Linux: when memory runs out, the kernel's out-of-memory killer stops
    the process it scores highest, by default the largest: often the
    notebook's kernel, holding hours of work. A worker raises its own score
    to the most (no privilege is needed to raise it), so a worker is killed
    instead, and its items fail as a crash the notebook reports."""
    global _first_to_die
    if _first_to_die or threading.current_thread() is not threading.main_thread():
        return  # done already, or a thread of someone else's process (dask)
    _first_to_die = True
    try:
        with open("/proc/self/oom_score_adj", "w") as file:
            file.write(str(OOM_SCORE_ADJ))
    except OSError:  # not Linux, or /proc is not there
        pass


# The highest score: a worker goes before any process not marked the same.
OOM_SCORE_ADJ = 1000
_first_to_die = False


def _yield_to_the_notebook():
    """Linux: schedule this process as batch work (same priority, but a
    wakeup never preempts a running task). The notebook sends each worker
    its chunk in turn; without this the first worker, woken by its chunk,
    often took the notebook's core before the second chunk was sent (a
    fifth of a small run's time here, in the notebook's write call; 10,000
    tiny items 12% faster). Threads it starts later inherit it."""
    global _batch_scheduled
    if (_batch_scheduled or not hasattr(os, "SCHED_BATCH")
            or threading.current_thread() is not threading.main_thread()):
        return  # done already, not Linux, or a thread of someone else's process (dask)
    _batch_scheduled = True
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:  # not allowed here: stay as scheduled
        pass


_batch_scheduled = False


def _exit_with_the_notebook(notebook_pid):
    """In a worker process, exit as soon as the notebook process is gone.

    A killed kernel cannot stop its workers, and loky's would otherwise live
    on until their idle timeout (minutes), one of them perhaps still busy
    with an item, and keep the kernel's shared-memory folder from being
    removed by the resource tracker, which waits for them.
    """
    global _watching_parent
    if _watching_parent or threading.current_thread() is not threading.main_thread():
        return  # watching already, or a thread of someone else's process (dask)
    _watching_parent = True

    def watch():  # the pid is given: the notebook may be gone before this starts
        if os.name == "nt":  # getppid goes on giving a dead parent's pid there
            processes.wait_for_exit(notebook_pid)
        else:  # an orphan gets another parent
            while os.getppid() == notebook_pid:
                time.sleep(_PARENT_CHECK_EVERY)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parmagic-parent-watch").start()


_watching_parent = False
_PARENT_CHECK_EVERY = 0.5  # seconds
