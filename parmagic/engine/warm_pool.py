"""parmagic's warm pool: one loky executor kept between runs, configured as
joblib would configure its own (thread limits, idle timeout), whose workers
serve parmagic's direct connections (``transport.channels``) and take no
other tasks. It is not joblib's shared pool: a ``joblib.Parallel`` call
starts that one as usual.

One run at a time has the warm pool (``take``/``give_back``); a run that
finds it in use, and every background run, gets a private pool
(``new_pool``), so that stopping, crashing or timing out any other run never
touches its workers. The warm pool stops once it has been idle for its idle
timeout.
"""

import contextlib
import os
import signal
import threading
import time
import weakref

from parmagic.common import joblib_internals as internals
from parmagic.common.own_modules import installed_version
from parmagic.common.switches import switches
from parmagic.transport.channels import Channels
from parmagic.transport.executor_tasks import ExecutorTasks
from parmagic.worker.process import prepare_worker


@contextlib.contextmanager
def interrupts_held():
    """Hold SIGINT back in this thread while loky may start workers and its
    manager thread: they inherit the signal mask, so a Jupyter interrupt,
    which reaches the kernel's whole process group, cannot kill a worker
    that is still starting, before it has set itself to ignore SIGINT
    (worker_process). The notebook gets a held-back interrupt right after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    # Python 3.11's own resource tracker unblocks SIGINT after it starts
    # (it does not restore the previous mask): have it running first.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


# parmagic's warm pool: executor, channels, how it was configured (key), and
# whether a run has it now (in_use).
_warm = {}
_warm_lock = threading.Lock()
# Every pool whose workers serve parmagic's channels (for shutdown_pools).
_open_pools = weakref.WeakKeyDictionary()  # executor -> its Channels


def executor():
    """The warm pool's executor, or None when there is none."""
    return _warm.get("executor")


def take(parallel, workers, n_jobs):
    """(executor, channels) of the warm pool, configured as ``parallel``
    would be, with at least ``workers`` workers and at most ``n_jobs``
    (``parallel``'s), marked in use; None if another run has it.

    A warm pool configured the same way with enough workers is used as it
    is; otherwise a new one of ``workers`` replaces it (loky's plain
    executor cannot grow: more workers than a pool has cost a new pool).
    So does one whose workers started before a package was installed,
    upgraded or removed: they hold the old version's modules, which cannot
    be reloaded in place (compiled ones least of all)."""
    key = (internals.pool_settings(parallel), installed_version(),
           switches.direct_channels, switches.batch_scheduling)
    with _warm_lock:
        if _warm.get("in_use"):
            return None
        executor, channels = _warm.get("executor"), _warm.get("channels")
        if executor is not None and (
            key != _warm["key"] or not internals.usable(executor)
            or not workers <= len(channels) <= n_jobs
        ):
            stop(executor, channels)
            executor = None
        if executor is None:
            executor, channels = new_pool(parallel, workers)
        _warm.update(executor=executor, channels=channels, key=key, in_use=True,
                     idle_timeout=internals.idle_timeout(parallel))
        return executor, channels


def give_back(executor):
    with _warm_lock:
        if _warm.get("executor") is executor:
            _warm["in_use"] = False
            _warm["last_used"] = time.monotonic()
    if not _idle_watch:
        _idle_watch.append(threading.Thread(target=_stop_when_idle, daemon=True,
                                            name="parmagic-idle-pool"))
        _idle_watch[0].start()


_idle_watch = []


def _stop_when_idle():
    """Stop the warm pool once no run has used it for its idle timeout, as
    loky stops idle workers (its own timeout never fires: a worker serving
    a channel is never idle for loky). Runs for the process's lifetime,
    waking when the pool would time out."""
    while True:
        with _warm_lock:
            due = (_warm["last_used"] + _warm["idle_timeout"]
                   if _warm and not _warm["in_use"] else None)
            if due is not None and time.monotonic() >= due:
                executor, channels = _warm["executor"], _warm["channels"]
                _warm.clear()
                stop(executor, channels)
                due = None
        delay = _IDLE_CHECK_EVERY if due is None else max(0.0, due - time.monotonic())
        time.sleep(min(delay, _IDLE_CHECK_EVERY))


# How often the idle watch looks at a pool that is in use or gone.
_IDLE_CHECK_EVERY = 2.0


def forget(executor):
    with _warm_lock:
        if _warm.get("executor") is executor:
            _warm.clear()


def new_pool(parallel, n_workers):
    """(executor, channels): a loky executor of ``n_workers`` configured as
    joblib would configure its own pool, and its workers' channels (tasks
    pickle themselves, so joblib's memmapping reducers are not needed). For
    the warm pool or for one run alone."""
    executor = internals.new_executor(parallel, n_workers, prepare_worker,
                                      (os.getpid(), switches.batch_scheduling))
    try:
        return executor, _open(executor, n_workers)
    except BaseException:
        executor.shutdown(wait=True, kill_workers=True)
        raise


def _open(executor, n_workers):
    # workers (and loky's threads) start as the channels' tasks are submitted
    transport = Channels if switches.direct_channels else ExecutorTasks
    channels = transport(executor, n_workers, spawning=interrupts_held)
    _open_pools[executor] = channels
    return channels


def stop(executor, channels, wait=False, kill=False):
    """Shut a pool down, waiting for its workers or not, or killing them.
    Its channels close first: their serve tasks end, so that a shutdown
    need not wait for them."""
    channels.close()
    _open_pools.pop(executor, None)
    executor.shutdown(wait=wait, kill_workers=kill)


def shutdown_pools(kill=False):
    """Stop parmagic's pools (the warm one and private ones still running)
    and joblib's own shared pool."""
    with _warm_lock:
        _warm.clear()
    for executor, channels in list(_open_pools.items()):
        stop(executor, channels, wait=True, kill=kill)
    internals.shut_down_shared_pool(kill)
