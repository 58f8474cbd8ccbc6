"""``%pmap`` and ``%%parmap``: parse what the user typed, then call the engine."""

import argparse
import ast
import codeop
import functools

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    needs_local_scope,
)
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Integer, Unicode, Union, observe

from parmagic.common.errors import ParmagicInputError
from parmagic.common.switches import Switches, switches
from parmagic.data.shared_data import set_limit
from parmagic.display import error_display, live_view
from parmagic.display.error_display import show_cleanly
from parmagic.engine import core as engine
from parmagic.engine import retries as retrying
from parmagic.engine import warmup, worker_limits
from parmagic.ipython import parsing


def _batch_size(text):
    return text if text == "auto" else int(text)


def _shared_options(magic):
    """The options both magics take (one definition, stacked on each)."""
    options = [
        argument("-n", "--n-jobs", type=int, metavar="N", help=(
            "Number of workers, with joblib's meaning: -1 = all cores, -2 = all "
            "but one. Default: ParMagic.n_jobs, else an enclosing "
            "joblib.parallel_config, else -1.")),
        argument("-b", "--backend", metavar="NAME", help=(
            "loky (processes, the default), threading, multiprocessing, "
            "sequential, dask (a dask.distributed cluster), ray, or any "
            "backend registered with joblib. Default: ParMagic.backend, else loky.")),
        argument("--scheduler", metavar="ADDRESS", help=(
            "With -b dask (implied when -b is not given): the dask scheduler "
            "to run on, e.g. tcp://10.0.0.5:8786, instead of the notebook's "
            "active distributed.Client. Default: ParMagic.scheduler.")),
        argument("-o", "--out", metavar="NAME", help=(
            "Also bind the result list to NAME in the namespace.")),
        argument("--star", action="store_true", help=(
            "Call FUNC(*item) for each item, for an iterable of argument tuples.")),
        argument("--batch-size", type=_batch_size, metavar="N", help=(
            "Items sent to a worker at once, or 'auto' (the default: "
            "ParMagic.batch_size).")),
        argument("--timeout", type=float, metavar="S", help=(
            "Per-item time limit in seconds: an item that runs longer is "
            "stopped and fails with ItemTimeoutError naming it, on every "
            "backend, threads too. One stuck in compiled code is stopped a "
            "little later with its worker process (in a thread, where it "
            "cannot be, the run ends). Default: ParMagic.timeout (none).")),
        argument("--on-error", choices=("raise", "collect"), metavar="MODE", help=(
            "raise: stop at the first failing item (the default, "
            "ParMagic.on_error). collect: run every item, then raise an "
            "ExceptionGroup of all failures.")),
        argument("--init", metavar="SETUP", help=(
            "Call SETUP() once in each worker before its first item (once per "
            "worker process; per thread with -b threading; once with -b "
            "sequential), e.g. to load a model: the globals it assigns with "
            "`global` are visible to FUNC there, and the notebook's stay as "
            "they are. If SETUP raises, the run stops with its exception.")),
        argument("--until", metavar="PRED", help=(
            "Stop the run as soon as a result satisfies PRED(result) (an "
            "expression, e.g. 'lambda r: r > 0.99'): the items running are "
            "stopped, the rest not started; finished results are kept, the "
            "others are NOT_COMPUTED, and _parmap.stopped_by names the item.")),
        argument("--retries", type=int, metavar="N", help=(
            "Run an item that fails up to N more times: one that raises, "
            "passes its time limit, or whose worker process died (again on a "
            "fresh worker; a crash counts an attempt for every item in flight). "
            "When they run out, its exception is raised with a note saying "
            "after how many attempts; _parmap.attempts keeps count. Default: "
            "ParMagic.retries (0).")),
        argument("--retry-on", metavar="EXCEPTIONS", help=(
            "With --retries: retry only these exceptions (and their "
            "subclasses), e.g. ConnectionError,TimeoutError: builtin names or "
            "classes defined in the notebook. A worker crash is retried only "
            "when WorkerCrashError is named. Default: any exception.")),
        argument("--seed", type=int, metavar="S", help=(
            "Give each item its own random stream from "
            "numpy.random.SeedSequence(S) and its index: np.random.*, random.* "
            "and parmagic.rng() are seeded before each item, so results are "
            "the same for any -n, backend, batch size, retry or cache hit "
            "(with -b threading only parmagic.rng(): threads share the global "
            "generators). Needs numpy. Default: ParMagic.seed (none: not "
            "seeded, and no two workers draw the same numbers).")),
        argument("--max-memory", metavar="SIZE", help=(
            "Stop a worker whose own memory passes SIZE (e.g. 500MB, 2GB): "
            "the items it ran fail with MemoryLimitError naming them (retried "
            "by --retries like a crash) and later items go to fresh workers. "
            "Loky workers only. Default: ParMagic.max_memory (no limit).")),
        argument("--max-tasks-per-worker", metavar="N", type=int, help=(
            "Replace a worker by a fresh process once it has run N items "
            "(for libraries that leak memory); chunks are at most N items. "
            "Loky workers only. Default: ParMagic.max_tasks_per_worker "
            "(workers are kept).")),
        argument("--progress", dest="progress", action="store_const", const=True,
                 help="Show a progress bar from the start."),
        argument("--no-progress", dest="progress", action="store_const", const=False,
                 help=(
            "Never show a progress bar. Default: shown once a run has lasted "
            "a second (ParMagic.progress = False turns it off).")),
        argument("--cache", metavar="DIR", help=(
            "Store each finished item's result in DIR as it arrives; a rerun "
            "of the same function on the same items (after an interrupt, a "
            "crash or a kernel restart) computes only what is missing. "
            "Default: ParMagic.cache_dir (none).")),
        argument("--iter", action="store_true", help=(
            "Return an iterator over the results instead of a list: each in "
            "input order as soon as it and those before it are ready, while the "
            "run goes on (at most 128 waiting; then it pauses). Leaving the loop "
            "early stops the run; _parmap has what finished.")),
        argument("--unordered", action="store_true", help=(
            "Like --iter, but yield (index, result) pairs in the order the items "
            "finish.")),
        argument("--bg", action="store_true", help=(
            "Run in the background and return a handle at once (also _parmap): "
            "its repr shows live progress; .wait(), .result() (raises the "
            "run's error, if any) and .cancel() control it. -o NAME is bound "
            "when the run finishes. No progress bar: the handle shows it.")),
        argument("-t", "--time", action="store_true", help=(
            "After the run, print where the time went: wall time, worker CPU, "
            "speedup, dispatch overhead, and advice when parallelism did not "
            "pay (waiting items, tiny items, too many threads).")),
        argument("--no-warn", action="store_true", help=(
            "Skip the check for changes to notebook globals, which are lost in "
            "worker processes (see ParMagic.warn_mutation).")),
    ]
    for option in reversed(options):
        magic = option(magic)
    return magic


def _usage_errors(method):
    """Report the engine's input errors as IPython ``UsageError``s: one line,
    no traceback."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        __tracebackhide__ = True
        try:
            return method(*args, **kwargs)
        except ParmagicInputError as exc:
            raise UsageError(str(exc)) from None
        except UsageError:
            raise
        except BaseException as exc:  # shown without parmagic's frames
            show_cleanly(exc)
            raise

    # magic_arguments opens the help with "::", an RST code-block marker
    # that %pmap? shows as it is
    wrapper.__doc__ = method.__doc__.replace("::\n\n  %", "%", 1)
    return wrapper


def _switch(name):
    """The ``%config`` trait of the off switch ``name`` (``common.switches``)."""
    return Bool(True, help=(
        f"An acceleration, on by default; False: {Switches.EFFECTS[name]}.")).tag(config=True)


@magics_class
class ParMagic(Magics):
    """Parallel map magics. Session defaults are set with ``%config``, e.g.
    ``%config ParMagic.n_jobs = 4``, or in ``ipython_config.py``."""

    n_jobs = Integer(None, allow_none=True, help=(
        "Default number of workers (None: an enclosing joblib.parallel_config, "
        "else -1 = all cores).")).tag(config=True)
    backend = Unicode(None, allow_none=True, help=(
        "Default joblib backend (None: an enclosing joblib.parallel_config, "
        "else loky).")).tag(config=True)
    batch_size = Union([Unicode(), Integer()], default_value="auto", help=(
        "Default number of items sent to a worker at once, or 'auto'.")).tag(config=True)
    scheduler = Unicode(None, allow_none=True, help=(
        "Default dask scheduler address for -b dask (None: the notebook's "
        "active distributed.Client).")).tag(config=True)
    cache_dir = Unicode(None, allow_none=True, help=(
        "Default folder for --cache (None: no caching).")).tag(config=True)
    timeout = Float(None, allow_none=True, help=(
        "Default per-item time limit in seconds (None: no limit).")).tag(config=True)
    retries = Integer(0, min=0, help=(
        "Default for --retries: how many more times an item that fails is "
        "run.")).tag(config=True)
    seed = Integer(None, allow_none=True, min=0, help=(
        "Default for --seed: each item's random generators are seeded from "
        "SeedSequence(seed) and its index (None: not seeded).")).tag(config=True)
    max_memory = Unicode(None, allow_none=True, help=(
        "Default for --max-memory: the most memory of its own a worker may "
        "have, e.g. '2GB' (None: no limit).")).tag(config=True)
    max_tasks_per_worker = Integer(None, allow_none=True, min=1, help=(
        "Default for --max-tasks-per-worker: items a worker runs before a "
        "fresh process replaces it (None: workers are kept).")).tag(config=True)
    on_error = Enum(("raise", "collect"), default_value="raise", help=(
        "Default for --on-error: 'raise' stops at the first failing item, "
        "'collect' runs every item and raises all failures together.")).tag(config=True)
    progress = Bool(True, help=(
        "Show a progress bar once a run has lasted a second "
        "(False: never).")).tag(config=True)
    shared_memory_mb = Integer(4096, min=0, help=(
        "Megabytes of shared memory that large arrays sent to the workers may "
        "keep between runs (numpy arrays and DataFrame columns over 1 MB go "
        "there once per version); the least recently used are removed first.")
    ).tag(config=True)
    warm_pool = Bool(True, help=(
        "Start the worker pool in the background when the extension loads, "
        "so the first call finds it warm (False: start it with the first "
        "call).")).tag(config=True)
    warn_mutation = Bool(True, help=(
        "Warn when the mapped function changes notebook globals (a change lost "
        "in worker processes, or racing between threads).")).tag(config=True)

    # the off switches of the accelerations (common.switches)
    capture_output = _switch("capture_output")
    direct_channels = _switch("direct_channels")
    shared_memory = _switch("shared_memory")
    write_watch = _switch("write_watch")
    pickle_reuse = _switch("pickle_reuse")
    batch_scheduling = _switch("batch_scheduling")

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        if shell is not None:
            error_display.install(shell)

    @observe("shared_memory_mb")
    def _shared_memory_limit_changed(self, change):
        set_limit(change["new"] << 20)

    @observe(*Switches.EFFECTS)
    def _switch_changed(self, change):
        setattr(switches, change["name"], change["new"])

    def warm_up(self):
        """Start the default pool in the background, unless the settings say
        it will not be used (another backend) or not to."""
        self._shared_memory_limit_changed({"new": self.shared_memory_mb})
        for name in Switches.EFFECTS:  # as ipython_config.py may have set them
            setattr(switches, name, getattr(self, name))
        if self.warm_pool and self.backend in (None, "loky") and self.scheduler is None:
            warmup.start(self.n_jobs)

    @_usage_errors
    @magic_arguments()
    @_shared_options
    @argument("code", nargs="*", metavar="FUNC ITERABLE", help=(
        "The function to map, then one or more iterables (zipped like map()). "
        "Expressions containing spaces need brackets or the comma form."))
    @needs_local_scope
    @line_magic
    def pmap(self, line, local_ns=None):
        """Map a function over one or more iterables on worker processes.

        The results come back as a list in input order: assign it
        (``x = %pmap ...``) or let IPython show it as Out[n]. The run's record
        (results, errors, timings) is always bound to ``_parmap``.

        Examples:

            In [1]: %load_ext parmagic
            In [2]: def square(x):
               ...:     return x * x
            In [3]: squares = %pmap square range(10)
            In [4]: %pmap (lambda x: x ** 2) range(10)
            In [5]: %pmap lambda x: x ** 2, range(10)
            In [6]: %pmap pow range(10) [2]*10
            In [7]: %pmap -n 4 -b threading fetch urls
            In [8]: %pmap -o out --star pow [(2, 3), (4, 5)]
            In [9]: %pmap --timeout 30 --on-error collect fit params
            In [10]: %pmap --no-progress --batch-size 100 square range(10_000)
            In [11]: %pmap -t square range(10_000)     # where did the time go?
            In [12]: %pmap -b dask --scheduler tcp://10.0.0.5:8786 square data
            In [13]: %pmap --cache ~/.cache/fits fit params      # resumable
            In [14]: run = %pmap --bg -o fits fit params          # returns at once
            In [15]: %pmap --retries 2 --retry-on ConnectionError fetch urls
            In [16]: %pmap --init load_model predict images  # load_model() once per worker
            In [17]: %pmap --seed 0 simulate range(100)   # the same numbers every time
            In [18]: %pmap -n 20 fetch_async urls   # async def: 20 in flight on an event loop
            In [19]: %pmap --until "lambda r: r.ok" try_params grid   # stop at the first hit
            In [20]: fits = %pmap --iter fit params   # then: for fit in fits: ...

        FUNC and each ITERABLE are separated by spaces, so an expression that
        contains spaces needs brackets, or use commas throughout:
        ``%pmap pow, range(10), [2] * 10``. Options come first.

        What the items print is shown in item order, and kept per item in
        ``_parmap.outputs``. A failing item raises its own exception, with a
        note naming the item; the results that finished stay in
        ``_parmap.results``. ``--no-warn`` skips the check for changes to
        notebook globals (lost in worker processes). An ``async def``
        function's items run side by side on an event loop in a thread, at
        most ``-n`` at a time (100 by default), unless ``-b`` names a backend.
        """
        __tracebackhide__ = True
        options, rest = self._parse_options(self.pmap, line)
        func_src, iterable_srcs = parsing.split_func_and_iterables(rest)
        namespace = self._namespace(local_ns)
        func = _evaluate(func_src, namespace)
        return self._run(
            options, self._settings(options), func, func_src, iterable_srcs, namespace
        )

    @_usage_errors
    @magic_arguments()
    @_shared_options
    @argument("-f", "--func", metavar="NAME", help=(
        "The function to map. Default: the last top-level def (or "
        "NAME = lambda ...) in the cell."))
    @argument("code", nargs="*", metavar="ITERABLE", help=(
        "One or more iterables, zipped like map(). Expressions containing "
        "spaces need brackets or the comma form."))
    @cell_magic
    def parmap(self, line, cell):
        """Run the cell, then map the function it defines over ITERABLE(s).

        The cell runs in the notebook's namespace first, so everything it
        defines stays defined. Then the function named by ``-f``, or else the
        last top-level ``def`` (or ``NAME = lambda ...``) of the cell, is
        mapped on worker processes. The ordered results are the cell's value
        and are bound to ``-o NAME``; the record is bound to ``_parmap``.

        Example:

            In [1]: %%parmap -n 2 -o results range(10)
               ...: import time
               ...: def slow_square(x):
               ...:     time.sleep(0.1)
               ...:     return x * x

            In [2]: %%parmap -f fetch --timeout 10 --on-error collect urls
               ...: def fetch(url):
               ...:     return requests.get(url).status_code

        The options are those of ``%pmap`` (see ``%pmap?``): -n, -b,
        --scheduler, -o, --star, --batch-size, --timeout, --on-error,
        --progress, --no-progress, --cache, --iter, --unordered, --bg,
        -t/--time, --no-warn,
        --init, --until, --retries, --retry-on, --seed, --max-memory and
        --max-tasks-per-worker.
        """
        __tracebackhide__ = True
        options, rest = self._parse_options(self.parmap, line)
        iterable_srcs = parsing.split_iterables(rest)
        settings = self._settings(options)  # bad options fail before the cell runs
        name = options.func or self._cell_function(cell)
        outcome = self._run_cell(cell)
        if not outcome.success:
            raise UsageError("the cell has an error (shown above), so nothing was mapped")
        namespace = self._namespace(None)
        if name not in namespace:
            raise UsageError(f"-f {name}: no function named {name!r} is defined")
        return self._run(options, settings, namespace[name], name, iterable_srcs, namespace)

    def _cell_function(self, cell):
        """The name of the function the cell defines. A cell that cannot be
        parsed gives None and is run all the same: running it shows its
        SyntaxError just as running the cell would, and runs nothing."""
        source = self.shell.transform_cell(cell)
        name = parsing.find_cell_function(source)
        if name is None and _parses(source):
            raise UsageError(
                "the cell defines no function to map: end it with a def, "
                "or name the function with -f NAME"
            )
        return name

    def _run_cell(self, cell):
        """Run the cell as a cell (its errors shown as usual), keeping the
        outer cell's result slot, where the mapped results will go."""
        displayhook = self.shell.displayhook
        outer = displayhook.exec_result
        # IPython compiles cells with codeop's PyCF_ALLOW_INCOMPLETE_INPUT, which on
        # 3.13+ turns an unclosed bracket into the private _IncompleteInputError
        # ("incomplete input"); without it the cell shows Python's SyntaxError
        compiler = self.shell.compile
        flags = compiler.flags
        compiler.flags &= ~getattr(codeop, "PyCF_ALLOW_INCOMPLETE_INPUT", 0)
        try:
            return self.shell.run_cell(cell, store_history=False)
        finally:
            compiler.flags = flags
            displayhook.exec_result = outer

    # -- helpers shared by both magics ----------------------------------------
    def _parse_options(self, magic, line):
        options, rest = _parsed_options(magic.parser, magic.__name__, line)
        for name in (options.out, getattr(options, "func", None)):
            if name is not None and not name.isidentifier():
                raise UsageError(f"{name!r} is not a valid Python name")
        return argparse.Namespace(**vars(options)), rest  # the cached one stays as it is

    def _namespace(self, local_ns):
        if local_ns is None or local_ns is self.shell.user_ns:
            return self.shell.user_ns
        return {**self.shell.user_ns, **local_ns}

    def _settings(self, options):
        """Options typed on the line, else the ParMagic config, checked."""
        backend = _first_set(options.backend, self.backend)
        scheduler = options.scheduler
        if scheduler is None and backend == "dask":
            scheduler = self.scheduler
        worker_limits.checked(  # checked here, before the cell runs
            _first_set(options.max_memory, self.max_memory),
            _first_set(options.max_tasks_per_worker, self.max_tasks_per_worker))
        return engine.check_settings(
            n_jobs=_first_set(options.n_jobs, self.n_jobs),
            backend=backend,
            scheduler=scheduler,
            batch_size=_first_set(options.batch_size, self.batch_size),
            on_error=_first_set(options.on_error, self.on_error),
            timeout=_first_set(options.timeout, self.timeout),
            progress=_first_set(options.progress, "auto" if self.progress else False),
            retries=_first_set(options.retries, self.retries),
        )

    def _run(self, options, settings, func, func_src, iterable_srcs, namespace):
        """Evaluate the ITERABLEs, run the map, bind ``_parmap`` and ``-o``."""
        __tracebackhide__ = True
        iterables = [_evaluate(source, namespace) for source in iterable_srcs]
        labels = [f"FUNC {func_src!r}", *(f"ITERABLE {src!r}" for src in iterable_srcs)]
        user_ns = self.shell.user_ns
        options_for_run = dict(
            settings,
            star=options.star,
            warn_mutation=self.warn_mutation and not options.no_warn,
            cache=_first_set(options.cache, self.cache_dir),
            seed=_first_set(options.seed, self.seed),
            max_memory=_first_set(options.max_memory, self.max_memory),
            max_tasks_per_worker=_first_set(options.max_tasks_per_worker,
                                            self.max_tasks_per_worker),
            # evaluated like FUNC, after the cell has run (it may define SETUP)
            init=_evaluate(options.init, namespace) if options.init else None,
            until=_evaluate(_unquoted(options.until), namespace) if options.until else None,
            # names of classes the cell defines are found once it has run
            retry_on=retrying.exception_classes(options.retry_on, namespace)
            if options.retry_on else None,
            labels=labels,
            func_source=func_src,
        )
        if options.iter or options.unordered:
            return self._iterate(options, func, iterables, options_for_run)
        if options.bg:
            return self._start_in_background(options, func, iterables, options_for_run)
        started = []

        def publish(record):
            user_ns["_parmap"] = record
            started.append(record)

        try:
            record = engine.run(func, iterables, on_start=publish, **options_for_run)
        finally:
            if options.time and started:  # also when the run failed
                print(started[0].timing())
        if options.out:
            user_ns[options.out] = record.results
        return record.results

    def _iterate(self, options, func, iterables, options_for_run):
        """``--iter``/``--unordered``: the iterator is the magic's value; the
        run's record is ``_parmap`` from its start."""
        clashing = [flag for flag, given in (("--bg", options.bg), ("-o", options.out),
                                             ("-t", options.time)) if given]
        if clashing:
            raise ParmagicInputError(
                f"--iter and --unordered give the results one by one, so {clashing[0]} "
                "cannot be used with them: loop over the iterator (its record, "
                "_parmap, has the results and .timing() once it is done)")
        results = engine.iterate(func, iterables, unordered=options.unordered,
                                 **options_for_run)
        self.shell.user_ns["_parmap"] = results.record
        return results

    def _start_in_background(self, options, func, iterables, options_for_run):
        """``--bg``: the handle is the cell's value and ``_parmap``; ``-o``
        (and the ``-t`` summary) come when the run has finished. In Jupyter
        the cell shows the run live until it ends (``live_view``); in a
        terminal one line says how it ended."""
        user_ns = self.shell.user_ns
        live = live_view.in_kernel()

        def on_done(handle):
            if options.out:
                user_ns[options.out] = handle.results

        def on_end(handle):
            if options.time:
                print(handle.timing())
            if handle.view is not None:
                handle.view.finish()
            elif not live:
                print(handle.summary())

        handle = engine.start(func, *iterables, on_done=on_done, on_end=on_end,
                              **options_for_run)
        user_ns["_parmap"] = handle
        if live:
            live_view.show(handle)
        return handle


@functools.lru_cache(maxsize=256)  # a warm call often repeats a line: parse it once
def _parsed_options(parser, magic_name, line):
    """(options, rest of the line) of ``line`` typed after ``%magic_name``."""
    parser.allow_abbrev = False

    def takes_value(word):
        action = parser._option_string_actions.get(word)
        return action is not None and action.nargs != 0

    words, rest = parsing.split_options(
        line, takes_value, is_option=parser._option_string_actions.__contains__,
        magic=f"{'%%' if magic_name == 'parmap' else '%'}{magic_name}")
    return parser.parse_args(words), rest  # errors are UsageErrors already


def _unquoted(source):
    """An option's expression without the quotes that keep its spaces
    together (``--until "lambda r: r > 0.99"``)."""
    if len(source) >= 2 and source[0] == source[-1] and source[0] in "'\"":
        return source[1:-1]
    return source


def _first_set(*values):
    return next((value for value in values if value is not None), None)


@functools.lru_cache(maxsize=256)
def _compiled(source):
    # the same line typed again (a cell re-run) is not compiled again
    return compile(source, "<parmagic>", "eval")


def _parses(source):
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def _evaluate(source, namespace):
    """Evaluate an expression the user typed; a failure is their mistake to fix,
    reported in one line."""
    try:
        return eval(_compiled(source), namespace)  # noqa: S307 - the user's own input
    except NameError as exc:
        raise ParmagicInputError(f"{exc} (in {source!r})") from None
    except Exception as exc:
        raise ParmagicInputError(
            f"evaluating {source!r} raised {type(exc).__name__}: {exc}"
        ) from None


def unregister(shell):
    """Undo ``shell.register_magics(ParMagic)``."""
    manager = shell.magics_manager
    manager.magics["line"].pop("pmap", None)
    manager.magics["cell"].pop("parmap", None)
    error_display.uninstall(shell)
    instance = manager.registry.pop(ParMagic.__name__, None)
    if instance in shell.configurables:
        shell.configurables.remove(instance)
