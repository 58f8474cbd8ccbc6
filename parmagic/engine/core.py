"""The plain-Python engine behind the magics: ``pmap`` and ``run``.

Nothing here imports IPython. Inputs are checked before any worker starts;
results stream back into a :class:`~parmagic.runs.report.ParmapRecord` as they
finish, so a failed or interrupted run keeps everything computed so far.
"""

import contextlib
import numbers
import operator
import os
import warnings

from joblib import Parallel

from parmagic.common import joblib_internals as internals
from parmagic.common.errors import ParmagicInputError, short_repr
from parmagic.common.switches import switches
from parmagic.display.progress import ProgressBar
from parmagic.engine import backends, cluster, item_costs, pool_size, worker_limits
from parmagic.engine import retries as retrying
from parmagic.engine.async_run import DEFAULT_LIMIT, AsyncRun
from parmagic.engine.cache import ResultCache, cached_calls
from parmagic.engine.collect import Collector
from parmagic.engine.dask_run import DaskRun
from parmagic.engine.inputs import Inputs, check_inputs, default_labels
from parmagic.engine.parallel_run import ParallelRun
from parmagic.engine.pool import LokyRun
from parmagic.engine.result_iterator import ResultIterator
from parmagic.engine.worker_limits import WorkerLimits
from parmagic.guard.mutation import MutationCheck
from parmagic.runs.background import BackgroundRun
from parmagic.runs.report import ParmapRecord
from parmagic.worker import log_capture, present, seeding
from parmagic.worker.async_calls import is_async
from parmagic.worker.calls import CallOptions, inside_item
from parmagic.worker.setup import Setup

ON_ERROR = ("raise", "collect")


def pmap(
    func,
    *iterables,
    n_jobs=None,
    backend=None,
    batch_size="auto",
    star=False,
    on_error="raise",
    timeout=None,
    progress="auto",
    warn_mutation=True,
    scheduler=None,
    cache=None,
    retries=0,
    retry_on=None,
    init=None,
    seed=None,
    max_memory=None,
    max_tasks_per_worker=None,
    until=None,
    as_iter=False,
    unordered=False,
):
    """Map ``func`` over ``iterables`` on worker processes; return a list.

    Several iterables are zipped, as with the builtin ``map``, and the result
    list is in input order whatever order the workers finish in. What the
    items print is captured and printed here in item order.

    Parameters
    ----------
    func : callable
        Called once per item. Functions, lambdas and classes defined in a
        notebook work: they are sent to the workers with cloudpickle.
    *iterables : iterable
        At least one. Generators are read lazily, a little ahead of the
        workers.
    n_jobs : int, default None
        Number of workers, with joblib's meaning (-1 = all cores, -2 = all
        but one). None takes an enclosing ``joblib.parallel_config`` value,
        else -1. A run starts no more workers than it has items (a generator
        is read up to ``n_jobs`` items ahead to count them). More worker
        processes than cores issue a :class:`parmagic.OversubscriptionWarning`
        and get a pool of their own that stops when the run ends.
    backend : str, default None
        ``"loky"``, ``"threading"``, ``"multiprocessing"``, ``"sequential"``,
        ``"dask"`` (a dask.distributed cluster), ``"ray"`` or any backend
        registered with joblib. None takes an enclosing
        ``joblib.parallel_config`` backend, else loky.
    batch_size : int or "auto", default "auto"
        Items sent to a worker at once.
    star : bool, default False
        Call ``func(*item)`` instead of ``func(item)``.
    on_error : {"raise", "collect"}, default "raise"
        ``"raise"`` stops at the first failing item and raises its exception
        (with a note naming the item). ``"collect"`` runs every item, then
        raises an ``ExceptionGroup`` of the failures.
    timeout : float, default None
        Per-item time limit in seconds; an item that runs longer fails with
        :class:`parmagic.ItemTimeoutError` and its worker goes on with the
        next items. Code stuck in a compiled call is stopped by killing its
        worker process; a thread stuck that way cannot be stopped, so on
        the threading backend the run ends there.
    progress : "auto", True or False, default "auto"
        A ``tqdm.auto`` progress bar: "auto" shows it once a run has lasted
        a second, True at once, False never.
    warn_mutation : bool, default True
        Issue a :class:`parmagic.GlobalMutationWarning` when ``func`` changes
        global variables: in worker processes such changes are lost, in
        threads they race. Found from the source before the run and by
        fingerprinting the globals in the workers.
    scheduler : str, default None
        With ``backend="dask"``: the address of the dask scheduler to run on
        (e.g. ``"tcp://10.0.0.5:8786"``), instead of the notebook's active
        ``distributed.Client``. Giving it implies the dask backend.
    cache : str or path, default None
        A folder where each finished item's result is stored as it arrives.
        A rerun of the same function (same code, same globals it reads) on
        the same items takes them from there and computes only the rest:
        after an interrupt, a crash or a kernel restart.
    init : callable, default None
        SETUP: ``init()`` runs once in each worker before that worker's
        first item (once per worker process; per thread with
        ``"threading"``; once with ``"sequential"``; once per dask worker
        process), e.g. to load a model. The globals it assigns with
        ``global`` are visible to ``func`` there, and the caller's own
        globals stay as they were. If it raises, the run stops with its
        exception and a note saying how many items were not run.
    retries : int, default 0
        How many more times an item that fails is run: an item that raises,
        one past its time limit, or one whose worker process died (on a
        fresh worker; a crash counts an attempt for every item in flight,
        as any of them may have caused it). When they run out, the item's
        last exception is raised, with a note saying after how many
        attempts; ``_parmap.attempts`` and ``_parmap.retried`` keep them.
    retry_on : exception class, names or None, default None
        Retry only these exceptions (``isinstance``): classes, or names such
        as ``"ConnectionError,TimeoutError"`` looked up in ``func``'s
        globals, the builtins and parmagic's exceptions. A crash
        (:class:`parmagic.WorkerCrashError`) is retried only when it is
        named here or ``retry_on`` is None.
    seed : int, default None
        Give each item its own random stream, made from
        ``numpy.random.SeedSequence(seed)`` and the item's index: numpy's
        global generator (``np.random.rand()``), the ``random`` module and
        :func:`parmagic.rng` are seeded from it before the item is called,
        so the numbers it draws are the same whatever ``n_jobs``, backend,
        batch size, retry or cache hit (with ``"threading"``, only
        ``rng()``: the global generators are shared by the threads). None:
        not seeded, and no two workers draw the same numbers. Needs numpy.
    max_memory : int or str, default None
        A limit on each worker process's own memory, in bytes or as
        ``"500MB"``, ``"2GB"``: a worker that passes it is stopped, and the
        items it ran fail with :class:`parmagic.MemoryLimitError` (a
        ``WorkerCrashError``: ``retries`` run them again) while later items
        go to fresh workers. Loky workers only (the default backend).
    max_tasks_per_worker : int, default None
        Replace a worker process by a fresh one once it has run this many
        items (counted since it started, over runs), for libraries that
        leak memory or other resources; no chunk is larger than it. Each
        replacement costs a worker's start-up time. None: workers are kept.
        Loky workers only (the default backend).
    until : callable, default None
        PRED: stop the run as soon as a result satisfies ``PRED(result)``:
        the items running are stopped and the rest are not started. The
        results that finished are returned, with ``parmagic.NOT_COMPUTED``
        for the others; the run record's ``stopped_by`` is the index of the
        item whose result satisfied it (the lowest, when several came at
        once), and its status is "stopped".
    as_iter : bool, default False
        Return an iterator over the results instead of a list: it yields
        each result, in input order, as soon as it and those before it are
        ready, while the run goes on in a thread. At most 128 finished
        results wait to be taken; then the run pauses until you take some.
        Leaving the loop early stops the run; the iterator's ``record`` has
        what finished. A failing item raises its exception where the loop
        reaches it (``on_error="raise"``), or is left out and raised with
        the others at the end (``"collect"``).
    unordered : bool, default False
        With or without ``as_iter``: iterate over ``(index, result)`` pairs
        in the order the items finish.

    Returns
    -------
    list
        ``func``'s results, in input order (an iterator with ``as_iter``
        or ``unordered``).

    Examples
    --------
    >>> pmap(abs, [-1, 2, -3], n_jobs=2)
    [1, 2, 3]
    >>> pmap(pow, range(4), [2] * 4, n_jobs=2)
    [0, 1, 4, 9]
    """
    if as_iter or unordered:
        options = {name: value for name, value in locals().items()
                   if name not in ("func", "iterables", "as_iter", "unordered")}
        return iterate(func, iterables, unordered=unordered, **options)
    __tracebackhide__ = True
    record = run(
        func,
        iterables,
        n_jobs=n_jobs,
        backend=backend,
        batch_size=batch_size,
        star=star,
        on_error=on_error,
        timeout=timeout,
        progress=progress,
        warn_mutation=warn_mutation,
        scheduler=scheduler,
        cache=cache,
        retries=retries,
        retry_on=retry_on,
        init=init,
        seed=seed,
        max_memory=max_memory,
        max_tasks_per_worker=max_tasks_per_worker,
        until=until,
    )
    return record.results


def run(
    func,
    iterables,
    *,
    n_jobs=None,
    backend=None,
    batch_size="auto",
    star=False,
    on_error="raise",
    timeout=None,
    progress="auto",
    warn_mutation=True,
    scheduler=None,
    cache=None,
    retries=0,
    retry_on=None,
    init=None,
    seed=None,
    max_memory=None,
    max_tasks_per_worker=None,
    until=None,
    on_batch=None,
    labels=None,
    func_source=None,
    on_start=None,
    cancel=None,
    own_pool=False,
):
    """Run the map and return its :class:`ParmapRecord` (options as ``pmap``).

    ``labels`` names the function and each iterable in error messages (the
    magics pass the expressions the user typed); ``func_source`` is FUNC's
    source when ``inspect`` cannot find it (a lambda typed in a magic).
    ``on_start`` is called with the record before any item runs, so a caller
    can publish it and still see partial results if the run fails.
    ``cancel`` is a ``threading.Event`` that stops the run when set, and
    ``own_pool=True`` runs it on loky workers of its own instead of the
    warm pool, so that nothing another run does to its workers
    reaches this one (both for :func:`start`).
    """
    __tracebackhide__ = True
    func_label, *iterable_labels = labels or default_labels(len(iterables))
    check_inputs(func, iterables, star, func_label, iterable_labels)
    _check_init(init)
    _check_until(until)
    seed = _check_seed(seed)
    limits = worker_limits.checked(max_memory, max_tasks_per_worker)
    settings = check_settings(
        n_jobs=n_jobs, backend=backend, batch_size=batch_size,
        on_error=on_error, timeout=timeout, progress=progress, scheduler=scheduler,
        retries=retries,
    )
    retry_policy = retrying.policy(
        settings["retries"], retry_on, getattr(func, "__globals__", None))
    if inside_item():
        # A map inside a mapped function runs serially, in the worker it is
        # in: a pool per worker would oversubscribe the cores.
        settings.update(backend="sequential", progress=False, scheduler=None)
    on_loop = _runs_on_event_loop(func, settings, seed)
    if on_loop:  # an async def function: its items side by side on an event loop
        parallel, n_jobs, isolation = None, _in_flight(settings["n_jobs"]), None
    else:
        parallel = _parallel(settings)
        n_jobs = internals.effective_n_jobs(parallel)  # once: on dask it asks the scheduler
        isolation = _isolation(parallel, n_jobs)
    inputs = Inputs(iterables, star)
    record = ParmapRecord(
        _name_of(func, func_label),
        "asyncio" if on_loop else settings["backend"] or internals.backend_name(parallel),
        n_jobs,
        inputs.length,
    )
    if on_start is not None:
        on_start(record)

    if not inputs.has_items():  # empty input: no worker is started
        record.finish("done")
        return record
    if on_loop:
        calls, workers = inputs.calls(), n_jobs
    else:
        calls, workers = pool_size.size_pool(parallel, n_jobs, inputs)
        record.workers = workers
    check = MutationCheck(func, isolation, func_source, warn_mutation)
    options = CallOptions(check.active, switches.capture_output, settings["timeout"],
                          CallOptions.force_watchdog, seed=seed,
                          reuse_kept_function=switches.pickle_reuse,
                          batch_scheduling=switches.batch_scheduling,
                          log_levels=(log_capture.notebook_levels()
                                      if isolation == "processes" else None))
    if seed is not None and isolation == "threads":
        warnings.warn(
            "seed: the threads of one process share numpy's and random's global "
            "generators, so with the threading backend only parmagic.rng() gives "
            "each item its own reproducible stream; np.random.* and random.* "
            "draws depend on how the threads interleave", UserWarning, stacklevel=3)
    # with init, SETUP travels with func and runs before the worker's first item
    sent = func if init is None else Setup(init, func, f"SETUP {_name_of(init, 'init')}")
    if on_loop:
        limits.refuse("asyncio", n_jobs)
        stream = AsyncRun(sent, options, n_jobs)
        stream.cancel = cancel
    else:
        stream = _stream(
            parallel, n_jobs, workers, settings, sent, options, inputs.length, func_label,
            cancel, own_pool, retry_policy, item_costs.fit_one_chunk(func, inputs.length),
            _present(parallel, isolation), limits,
        )
    bar = ProgressBar(settings["progress"], inputs.length, record.func_name)
    results = ResultCache(cache, func, init, seed) if cache is not None else None
    collector = Collector(
        record, inputs, func, check, settings["on_error"], bar, isolation != "processes",
        results, cancel, retry_policy if retry_policy.retries else None, init=init,
        until=until, on_batch=on_batch,
    )
    if isinstance(stream, LokyRun):  # its workers send what items print as they run
        stream.pool.on_output = collector.live_output
    if results is not None:
        calls = cached_calls(calls, results, collector.store_cached)
    # items seeded in this process leave the notebook's generators as they were
    in_process = seed is not None and isolation != "processes"
    try:
        with seeding.generators_kept() if in_process else contextlib.nullcontext():
            collector.run(stream, calls)
    finally:
        record.transfer = getattr(stream, "transfer", None)  # loky runs say what moved
        if isinstance(stream, LokyRun):  # and how long their workers took to start
            record.startup = stream.startup(record.spans)
        if settings["backend"] == "ray":
            internals.restore_multiprocessing_pool()
        item_costs.remember(func, record.busy_time, sum(span[-1] for span in record.spans))
    return record


def _parallel(settings):
    """The ``joblib.Parallel`` that configures the backend (and runs it,
    except on the loky and dask paths)."""
    key = None
    if settings["backend"] in (None, "loky") and settings["scheduler"] is None:
        key = (settings["n_jobs"], settings["backend"], settings["batch_size"])
        configuration = internals.configuration()
        known = _loky_parallels.get(key)
        if known is not None and all(map(operator.is_, known[0], configuration)):
            return known[1]
    with cluster.backend_for(settings["backend"], settings["scheduler"]) as backend:
        parallel = Parallel(
            n_jobs=settings["n_jobs"],
            backend=backend,
            batch_size=settings["batch_size"],
            return_as="generator" if backends.streams_results(backend) else "list",
        )
    if key is not None and internals.runs_on_loky(parallel, internals.effective_n_jobs(parallel)):
        _loky_parallels[key] = (configuration, parallel)
    return parallel


# A run on loky only reads its Parallel (its items go through parmagic's own
# pool, never through the Parallel), so later runs with the same settings,
# in the same joblib configuration, read the same one: making one is 50 us,
# a twentieth of a warm call of a few items. (settings) -> (configuration, Parallel)
_loky_parallels = {}


def _present(parallel, isolation):
    """What workers must take on from the notebook before a run
    (``present``): in worker processes only, and on dask and Ray, whose
    workers may be on other machines, only the module check."""
    if isolation != "processes":
        return None
    return present.now(os.urandom(8).hex(), carry=internals.runs_local_processes(parallel))


def _stream(parallel, n_jobs, workers, settings, func, options, n_items, func_label,
            cancel, own_pool, retry_policy, tiny_items, present, limits):
    """Where the items run: a loky pool, a dask client, or joblib. More loky
    workers than cores get a pool of their own, stopped when the run ends,
    so they do not linger and slow the next, smaller, call."""
    batch_size = settings["batch_size"]
    if internals.runs_on_loky(parallel, n_jobs):
        own_pool = own_pool or workers > pool_size.cores()
        stream = LokyRun(parallel, func, options, batch_size, n_items, workers, func_label,
                         private_pool=own_pool, n_jobs=n_jobs, tiny_items=tiny_items,
                         present=present, limits=limits)
    elif limits != WorkerLimits():
        limits.refuse(internals.backend_name(parallel), n_jobs)
    elif settings["backend"] == "dask":
        stream = DaskRun(internals.dask_client(parallel), func, options, batch_size,
                         n_items, n_jobs, func_label, tiny_items, present=present)
    else:
        if not internals.items_in_main_thread(parallel):
            # In a process's main thread the worker stops an item at its limit
            # even in a blocking call (time_limits); in threads it stops Python
            # code but not compiled code: joblib gives up on that a little later.
            parallel.timeout = ParallelRun.gives_up_after(
                settings["timeout"], retry_policy.retries + 1)
        return ParallelRun(parallel, func, options, retry_policy, present,  # cancel: between items
                           by_value=internals.pickles_by_name(parallel))
    stream.cancel = cancel  # also seen while waiting for a chunk
    return stream


def iterate(func, iterables, *, unordered=False, progress=False, **options):
    """A :class:`ResultIterator` over ``run(func, iterables, **options)``
    (``pmap``'s ``as_iter`` and ``unordered``). A progress bar is shown only
    when asked for: the run goes on while other cells run."""
    def start_run(on_start, on_batch, cancel):
        return run(func, iterables, on_start=on_start, on_batch=on_batch, cancel=cancel,
                   progress=progress if progress is True else False, **options)

    return ResultIterator(start_run, unordered, options.get("on_error", "raise"))


def start(func, *iterables, on_done=None, on_end=None, **options):
    """Start ``pmap(func, *iterables, **options)`` in a background thread and
    return its :class:`~parmagic.runs.background.BackgroundRun` at once: its repr
    shows live progress; ``wait()``, ``result()`` and ``cancel()`` control
    it. ``on_done(handle)`` runs (in that thread) when the run succeeds,
    then ``on_end(handle)`` however it ended.
    There is no progress bar: the handle shows the progress.

    >>> handle = start(abs, [-1, -2], n_jobs=2)
    >>> handle.result()
    [1, 2]
    """
    __tracebackhide__ = True
    options["progress"] = False

    def start_run(on_start, cancel):
        run(func, iterables, on_start=on_start, cancel=cancel, own_pool=True, **options)

    return BackgroundRun(start_run, on_done, on_end)


def check_settings(
    *, n_jobs=None, backend=None, batch_size="auto", on_error="raise",
    timeout=None, progress="auto", scheduler=None, retries=0,
):
    """Validate run settings before anything runs; return them normalised."""
    if on_error not in ON_ERROR:
        raise ParmagicInputError(
            f"on_error must be 'raise' or 'collect', not {on_error!r}"
        )
    if progress not in ("auto", True, False):
        raise ParmagicInputError(f"progress must be 'auto', True or False, not {progress!r}")
    if scheduler is not None:
        if not isinstance(scheduler, str):
            raise ParmagicInputError(
                f"scheduler must be an address such as 'tcp://host:8786', not {scheduler!r}"
            )
        backend = "dask" if backend is None else backend  # an address means dask
    return {
        "n_jobs": backends.check_n_jobs(n_jobs),
        "backend": backends.check_backend(backend),
        "batch_size": backends.check_batch_size(batch_size),
        "on_error": on_error,
        "timeout": _check_timeout(timeout),
        "progress": progress,
        "scheduler": scheduler,
        "retries": retrying.check_retries(retries),
    }


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
        raise ParmagicInputError(
            f"timeout must be a positive number of seconds, not {timeout!r}"
        )
    return float(timeout)


def _check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ParmagicInputError(f"seed must be a whole number >= 0, not {seed!r}")
    try:
        import numpy  # noqa: F401  (SeedSequence makes the items' streams)
    except ImportError:
        raise ParmagicInputError(
            "seed needs numpy, which is not installed here: pip install numpy") from None
    return int(seed)


def _check_init(init):
    if init is not None and not callable(init):
        raise ParmagicInputError(
            f"SETUP (init) must be a function to call in each worker, not "
            f"{type(init).__name__} {short_repr(init)}"
        )


def _check_until(until):
    if until is not None and not callable(until):
        raise ParmagicInputError(
            f"until must be a function that takes a result and says whether to stop "
            f"(e.g. lambda r: r > 0.99), not {type(until).__name__} {short_repr(until)}")


def _runs_on_event_loop(func, settings, seed):
    """Whether the run is an ``async def`` function's, on an event loop in a
    thread of this process (``async_run``): when no backend is asked for,
    here or by an enclosing ``joblib.parallel_config``. On a backend that is
    asked for, each worker runs its chunks' items on a loop of its own."""
    if not is_async(func) or settings["backend"] is not None or settings["scheduler"]:
        return False
    if internals.backend_name_configured() != "loky":
        return False
    if seed is not None:
        raise ParmagicInputError(
            "seed: the items of an async function run side by side on one event "
            "loop, so they cannot each have numpy's and random's generators to "
            "themselves; seed inside the function from your own generator instead, "
            "or map a plain (not async) function")
    return True


def _in_flight(n_jobs):
    """How many items of an async function run at once: ``n_jobs`` when it
    is given as a positive number, else ``AsyncRun``'s default."""
    return n_jobs if n_jobs is not None and n_jobs > 0 else DEFAULT_LIMIT


def _isolation(parallel, n_jobs):
    """Where the function runs relative to the notebook's globals."""
    if internals.runs_serially(parallel) or n_jobs == 1:
        return None
    backend = internals.backend_of(parallel)
    return "threads" if getattr(backend, "uses_threads", False) else "processes"


def _name_of(func, label):
    return getattr(func, "__qualname__", None) or label


