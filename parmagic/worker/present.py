"""The notebook's present, carried to the workers with every run.

The warm pool starts at ``%load_ext``; its workers would otherwise live in
the world of that moment. A run's ``Present`` travels ahead of its function
in every chunk's pickle, and a worker process that unpickles it takes on
the notebook's working directory, ``sys.path`` and the environment
variables that changed since parmagic was loaded (set or unset), before the
function (and what it imports) is unpickled. At the first chunk of each
run it also drops the user's modules whose files changed
(``fresh_modules``).

Cheap: the notebook compares what it has with what it sent last (a
``getcwd``, a list and a dict compared) and reuses the same pickled state
while nothing changed; a worker compares that state's bytes with the last
it took on. ``carry=False`` (dask, Ray: workers that may be on other
machines, with folders of their own) carries only the module check.
"""

import importlib
import os
import pickle
import sys
import threading

from parmagic.worker import fresh_modules, seeding


class Present:
    """The notebook's working directory, ``sys.path`` and environment
    changes (``state``, pickled) for the run ``token``."""

    __slots__ = ("state", "token", "carry")

    def __init__(self, state, token, carry=True):
        self.state, self.token, self.carry = state, token, carry

    @property
    def arguments(self):
        """What ``arrive`` takes in the worker (plain data: a chunk that
        calls ``arrive`` itself carries these, which pickle at C speed)."""
        return (self.state if self.carry else None, self.token)

    def __reduce__(self):
        return (arrive, self.arguments)


# -- in the notebook -----------------------------------------------------------
def _environment():
    """The process environment as a dict (the one behind ``os.environ``
    where there is one: copying it costs less than decoding it)."""
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else dict(os.environ)


_lock = threading.Lock()
_environment_seen = dict(_environment())  # as it was when parmagic was loaded
_touched = set()  # names of variables set, changed or unset since
_changes = ()  # (name, value or None) for each touched name, as they are now
_last = None  # (cwd, sys.path copy, _changes, state): the last state made


def now(token, carry=True):
    """The notebook's present for the run ``token``."""
    global _last, _notebook
    _notebook = os.getpid()
    cwd = os.getcwd()
    with _lock:
        changes = _environment_changes()
        last = _last
        if last is None or last[0] != cwd or last[1] != sys.path or last[2] is not changes:
            state = pickle.dumps((cwd, list(sys.path), changes), protocol=pickle.HIGHEST_PROTOCOL)
            last = _last = (cwd, list(sys.path), changes, state)
    return Present(last[3], token, carry)


def _environment_changes():
    global _environment_seen, _changes
    environment = _environment()
    if environment == _environment_seen:
        return _changes
    seen = _environment_seen
    _touched.update(name for name in environment.keys() | seen.keys()
                    if environment.get(name) != seen.get(name))
    _environment_seen = dict(environment)
    _changes = tuple(sorted((name, environment.get(name)) for name in _touched))
    return _changes


# -- in a worker ---------------------------------------------------------------
_notebook = None  # the process that makes Presents, which never takes one on
_taken_on = None  # the state this process took on last
_run = None  # the token of the run it saw last


def arrive(state, token):
    """Unpickled in a worker: take on the notebook's ``state`` (None: keep
    this worker's own) and, at a new run, refresh the user's modules."""
    global _taken_on, _run
    if os.getpid() == _notebook:  # a backend that pickles but runs here
        return None
    if state is not None and state != _taken_on:
        _take_on(*pickle.loads(state))
        _taken_on = state
    if token != _run:
        _run = token
        seeding.fresh_streams()
        fresh_modules.start()
        fresh_modules.refresh()
    return None


def _take_on(cwd, path, changes):
    if os.getcwd() != cwd:
        try:
            os.chdir(cwd)
        except OSError:  # removed since: stay where this worker is
            pass
    if sys.path != path:
        sys.path[:] = path
        importlib.invalidate_caches()
    environment = _environment()
    for name, value in changes:
        if environment.get(name) == value:
            continue
        key = os.fsdecode(name) if os.supports_bytes_environ else name
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = os.fsdecode(value) if isinstance(value, bytes) else value


def in_present(present, call, *args):
    """``call(*args)``, for a task of joblib's backends: ``present`` comes
    first in its pickle, so it is taken on before the function is
    unpickled."""
    return call(*args)
