"""The plain-Python engine behind the magics: ``pmap`` and ``run``.

Nothing here imports IPython. Inputs are checked before any worker starts;
results stream back into a :class:`~parmagic.report.ParmapRecord` as they
finish, so a failed or interrupted run keeps everything computed so far.
"""

import itertools

from joblib import Parallel, delayed
from joblib._parallel_backends import SequentialBackend

from . import backends, tracebacks
from .errors import ParmagicInputError, describe_item_failure
from .mutation import MutationCheck
from .pool import loky_outcomes, uses_loky_pool
from .report import ParmapRecord
from .worker import RemoteTraceback, call_item


def pmap(
    func,
    *iterables,
    n_jobs=None,
    backend=None,
    batch_size="auto",
    star=False,
    warn_mutation=True,
):
    """Map ``func`` over ``iterables`` on worker processes; return a list.

    Several iterables are zipped, as with the builtin ``map``, and the result
    list is in input order whatever order the workers finish in.

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
        else -1.
    backend : str, default None
        ``"loky"``, ``"threading"``, ``"multiprocessing"``, ``"sequential"``
        or any backend registered with joblib. None takes an enclosing
        ``joblib.parallel_config`` backend, else loky.
    batch_size : int or "auto", default "auto"
        Items sent to a worker at once.
    star : bool, default False
        Call ``func(*item)`` instead of ``func(item)``.
    warn_mutation : bool, default True
        Issue a :class:`parmagic.GlobalMutationWarning` when ``func`` changes
        global variables: in worker processes such changes are lost, in
        threads they race. Found from the source before the run and by
        fingerprinting the globals in the workers.

    Returns
    -------
    list
        ``func``'s results, in input order.

    Examples
    --------
    >>> pmap(abs, [-1, 2, -3], n_jobs=2)
    [1, 2, 3]
    >>> pmap(pow, range(4), [2] * 4, n_jobs=2)
    [0, 1, 4, 9]
    """
    __tracebackhide__ = True
    record = run(
        func,
        iterables,
        n_jobs=n_jobs,
        backend=backend,
        batch_size=batch_size,
        star=star,
        warn_mutation=warn_mutation,
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
    warn_mutation=True,
    labels=None,
    func_source=None,
    on_start=None,
):
    """Run the map and return its :class:`ParmapRecord`.

    ``warn_mutation`` checks for changes to globals (see ``pmap``).
    ``labels`` names the function and each iterable in error messages (the
    magics pass the expressions the user typed); ``func_source`` is FUNC's
    source when ``inspect`` cannot find it (a lambda typed in a magic).
    ``on_start`` is called with the record before any item runs, so a caller
    can publish it and still see partial results if the run fails.
    """
    __tracebackhide__ = True
    func_label, *iterable_labels = labels or _default_labels(len(iterables))
    _check_inputs(func, iterables, star, func_label, iterable_labels)
    settings = check_settings(n_jobs=n_jobs, backend=backend, batch_size=batch_size)
    n_jobs, backend, batch_size = settings["n_jobs"], settings["backend"], settings["batch_size"]
    parallel = Parallel(
        n_jobs=n_jobs,
        backend=backend,
        batch_size=batch_size,
        return_as="generator" if backends.streams_results(backend) else "list",
    )
    record = ParmapRecord(
        _name_of(func, func_label), _backend_name(parallel), parallel._effective_n_jobs()
    )
    if on_start is not None:
        on_start(record)

    inputs = _Inputs(iterables, star)
    if not inputs.has_items():  # empty input: no worker is started
        record.finish("done")
        return record
    check = MutationCheck(func, _isolation(parallel), func_source, warn_mutation)
    outcomes = _outcomes(parallel, func, inputs, batch_size, check.active)
    status = "failed"
    try:
        _collect(outcomes, func, inputs, record, check)
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        record.finish(status)
        check.report(record.func_name, record.results)
    return record


def check_settings(*, n_jobs=None, backend=None, batch_size="auto"):
    """Validate run settings before anything runs; return them normalised."""
    return {
        "n_jobs": backends.check_n_jobs(n_jobs),
        "backend": backends.check_backend(backend),
        "batch_size": backends.check_batch_size(batch_size),
    }


def _outcomes(parallel, func, inputs, batch_size, watch_globals):
    """Outcomes from whichever path serves this backend."""
    if uses_loky_pool(parallel):
        return loky_outcomes(
            parallel, func, inputs.calls(), batch_size, inputs.length, watch_globals
        )
    return _parallel_outcomes(parallel, func, inputs.calls(), watch_globals)


def _parallel_outcomes(parallel, func, calls, watch_globals):
    """Other backends go through ``joblib.Parallel``, streaming results."""
    results = parallel(
        delayed(call_item)(func, index, args, watch_globals) for index, args in calls
    )
    try:
        yield from results
    finally:
        if hasattr(results, "close"):  # a list on backends that cannot stream
            results.close()


def _collect(outcomes, func, inputs, record, check):
    """Store outcomes in the record; raise the first failure with a note."""
    __tracebackhide__ = True  # IPython shows the user's frames, not ours
    try:
        for outcome in outcomes:
            check.observe(outcome)
            item = inputs.finished(outcome.index)
            if not outcome.failed:
                record.add_result(outcome.index, outcome.value)
                continue
            error = outcome.error
            text = tracebacks.render(outcome.traceback, error, func)
            record.add_error(outcome.index, item, error, text)
            error.__cause__ = RemoteTraceback(text)
            error.add_note(
                describe_item_failure(
                    outcome.index, item, record.n_finished, inputs.length
                )
            )
            raise error
    finally:
        outcomes.close()
        record.expect(inputs.n_read)


class _Inputs:
    """The zipped iterables, read lazily; remembers items still in flight so
    a failure can show the item's value."""

    def __init__(self, iterables, star):
        self.length = _common_length(iterables)
        self.n_read = 0
        self._in_flight = {}
        source = iterables[0] if len(iterables) == 1 else zip(*iterables)
        self._iterator = iter(source)
        self._as_args = _star_args if star or len(iterables) > 1 else _single_arg
        self._peeked = []

    def has_items(self):
        """Whether there is at least one item (reads it ahead if needed)."""
        for item in self._iterator:
            self._peeked.append(item)
            return True
        return bool(self._peeked)

    def calls(self):
        for item in itertools.chain(self._peeked, self._iterator):
            index = self.n_read
            self.n_read += 1
            self._in_flight[index] = item
            yield index, self._as_args(item)

    def finished(self, index):
        return self._in_flight.pop(index, None)


def _star_args(item):
    return item  # the worker calls func(*item); a non-iterable item fails there


def _single_arg(item):
    return (item,)


def _common_length(iterables):
    try:
        return min(len(iterable) for iterable in iterables)
    except TypeError:
        return None


def _default_labels(n_iterables):
    return ["func"] + [f"iterable {i + 1}" for i in range(n_iterables)]


def _check_inputs(func, iterables, star, func_label, iterable_labels):
    if not callable(func):
        raise ParmagicInputError(
            f"{func_label} is not callable (it is {type(func).__name__}); "
            "the first argument must be the function to map"
        )
    if not iterables:
        raise ParmagicInputError("nothing to map over: give at least one iterable")
    for iterable, label in zip(iterables, iterable_labels):
        try:
            iter(iterable)
        except TypeError:
            raise ParmagicInputError(
                f"{label} is not iterable (it is {type(iterable).__name__})"
            ) from None
    if star and len(iterables) > 1:
        raise ParmagicInputError(
            "star=True takes one iterable of argument tuples; with several "
            "iterables each item is already passed as separate arguments"
        )


def _isolation(parallel):
    """Where the function runs relative to the notebook's globals."""
    backend = parallel._backend
    if isinstance(backend, SequentialBackend) or parallel._effective_n_jobs() == 1:
        return None
    return "threads" if getattr(backend, "uses_threads", False) else "processes"


def _name_of(func, label):
    return getattr(func, "__qualname__", None) or label


def _backend_name(parallel):
    name = type(parallel._backend).__name__
    return name.removesuffix("Backend").lower() or name
