"""``--init SETUP``: a setup function run once in each worker before its
first item, whose globals the mapped function then sees there (load a model
once per worker, not once per item).
"""

import contextlib
import threading
import types
import uuid

from parmagic.common.errors import ItemExitError
from parmagic.worker.capture import install as install_routers
from parmagic.worker.capture import start_capture, stop_capture
from parmagic.worker.tracebacks import frames_of


class Setup:
    """``init=SETUP`` for one run: SETUP and the mapped function travel
    together, and SETUP runs once in each worker before its first item.

    Pickled, the two go in one pickle, so that notebook functions share one
    globals dict in the worker (cloudpickle gives the functions of one
    namespace one dict per pickle): what SETUP assigns with ``global`` is
    what the function reads. A worker process keeps the first copy it
    unpickles for the run (``token``), so SETUP runs once per process and
    every later chunk sees its globals. In the notebook's own process
    (threading, sequential) each thread gets its own copy of the namespace
    instead (``_own_namespace``), and the notebook's stays as it was.
    """

    def __init__(self, init, func, init_label="SETUP", token=None, shipped=False):
        self.init = init
        self.func = func
        self.init_label = init_label
        self.__name__ = getattr(func, "__name__", "func")  # names dask tasks
        self.token = token or uuid.uuid4().hex
        self.shipped = shipped  # unpickled in a worker process
        self._lock = threading.Lock()
        self._ready = {}  # thread id, or None in a worker process -> (func, failure)
        self._assigned = set()  # the globals SETUP bound: the worker's own state

    def __reduce__(self):
        return (_setup_in_worker, (self.token, self.init, self.func))

    def changes_lost(self, changed_globals):
        """The globals in ``changed_globals`` whose change is lost to the
        notebook: what SETUP built is meant to live in the worker."""
        if not changed_globals or not self._assigned:
            return changed_globals
        return [name for name in changed_globals if name not in self._assigned]

    def prepared(self, outputs, index):
        """(the function to call, None) once SETUP has run in this worker
        (or thread), or (None, SETUP's failure); what SETUP prints goes to
        ``outputs`` (None: not captured) as item ``index``'s."""
        key = None if self.shipped else threading.get_ident()
        ready = self._ready.get(key)
        if ready is None:
            # the threads of one process (dask) wait for one SETUP; the
            # notebook's threads each run their own, side by side
            with self._lock if self.shipped else contextlib.nullcontext():
                ready = self._ready.get(key)
                if ready is None:
                    ready = self._ready[key] = self._set_up(outputs, index)
        return ready

    def _set_up(self, outputs, index):
        """Run SETUP: (the function to call, None), or (None, failure)."""
        init, func = self.init, self.func
        if not self.shipped:
            init, func = _own_namespace(init, func)
        if outputs is not None:
            install_routers()
            token, sink = start_capture(outputs)
            sink.index = index
        namespace = init.__globals__ if isinstance(init, types.FunctionType) else {}
        before = dict(namespace)
        try:
            init()
        except (Exception, SystemExit) as exc:
            error = exc
            if isinstance(exc, SystemExit):
                error = ItemExitError(f"SETUP called sys.exit({exc.code!r})")
            setattr(error, _SETUP_FAILED, True)
            return None, (error, frames_of(exc))
        finally:
            if outputs is not None:
                stop_capture(token)
        self._assigned.update(name for name, value in list(namespace.items())
                              if before.get(name, _UNSET) is not value)
        return func, None


_SETUP_FAILED = "_parmagic_setup_failed"
_UNSET = object()


def setup_failed(error):
    """Whether ``error`` is SETUP's (``init=``): no item of its worker ran."""
    return getattr(error, _SETUP_FAILED, False) is True


_shipped = {}  # in a worker process: run token -> its Setup (the latest run's)
_shipped_lock = threading.Lock()


def forget_runs():
    """Drop the Setup a worker process kept (``kept_runs.forget_runs``)."""
    with _shipped_lock:
        _shipped.clear()


def _setup_in_worker(token, init, func):
    """The run's ``Setup`` in this worker process: the copy the first chunk
    brought, so that all chunks call one function with SETUP's globals. An
    earlier run's is dropped, with whatever its SETUP loaded."""
    with _shipped_lock:
        setup = _shipped.get(token)
        if setup is None:
            _shipped.clear()
            setup = _shipped[token] = Setup(init, func, token=token, shipped=True)
    return setup


def _own_namespace(init, func):
    """SETUP and the function rebound to a copy of SETUP's namespace (the
    notebook's), for one thread: what SETUP assigns stays in the copy. The
    functions defined in it are rebound too, so that helpers the function
    calls by name see SETUP's globals as well."""
    if not isinstance(init, types.FunctionType):
        return init, func  # a callable object or a builtin assigns no globals
    namespace = init.__globals__
    copy = dict(namespace)
    for name, value in list(copy.items()):
        copy[name] = _rebound(value, namespace, copy)
    return _rebound(init, namespace, copy), _rebound(func, namespace, copy)


def _rebound(value, namespace, copy):
    """``value`` reading ``copy`` if it is a function of ``namespace``."""
    if not isinstance(value, types.FunctionType) or value.__globals__ is not namespace:
        return value
    function = types.FunctionType(value.__code__, copy, value.__name__,
                                  value.__defaults__, value.__closure__)
    function.__kwdefaults__ = value.__kwdefaults__
    function.__qualname__ = value.__qualname__
    function.__dict__.update(value.__dict__)
    return function
