"""In a worker process: the user's own modules are never older than their files.

A warm worker imports ``localmod`` once, for the run that first needs it,
and would run that code for the rest of its life: edits, ``importlib.reload``
and ``%autoreload`` in the notebook would never reach it. So a worker notes
the user's own modules (``own_modules``) that its runs import, with the
signature of each file as it was imported, and at the start of each run it
looks at those files again (a ``stat`` each: a few microseconds). When one
changed, every module of the user's that it noted is dropped from
``sys.modules``, so that the run's function, as it is unpickled, and the
imports it makes, load them afresh, as a new worker would. All of them,
not only the changed one: a module that did ``from changed import f``
holds the old ``f``.

What the worker imported before its first run (parmagic, joblib, what a
fork copied from the notebook) is never dropped.
"""

import importlib
import sys
import threading
import time

from parmagic.common.own_modules import own_file, signature

# The modules a run of this process imported: name -> (file, its signature
# then, None when the file changed while the run was importing it).
_noted = {}
_seen = None  # the names in sys.modules at the last look; None: not a worker
_since_ns = 0  # when the last look was (time.time_ns())
_lock = threading.Lock()
# How much earlier than a look a file's change counts as possibly unseen by
# the import it follows: file times come from a coarse clock.
_CLOCK_SLACK_NS = 50_000_000

generation = 0  # counts the times modules were dropped (kept_runs compares it)


def start():
    """This process is a worker: what it has imported so far is its own
    (never dropped); from now on, what runs import is noted."""
    global _seen, _since_ns
    with _lock:
        if _seen is None:
            _seen = set(sys.modules)
            _since_ns = time.time_ns()


def note_imports():
    """Note the user's modules imported since the last look (after each
    chunk; cheap when nothing was imported)."""
    global _seen, _since_ns
    if _seen is None or len(sys.modules) == len(_seen):
        return
    with _lock:
        names = sys.modules.keys() - _seen
        since = _since_ns
        for name in names:
            path = own_file(sys.modules.get(name))
            if path is not None:
                found = signature(path)
                # changed after the import may have read it: check it again next run
                _noted[name] = (path, None if found and found[0] >= since - _CLOCK_SLACK_NS
                                else found)
        _seen = set(sys.modules)
        _since_ns = time.time_ns()


def refresh():
    """At the start of a run: if a noted module's file changed since it was
    imported, drop every noted module so the run imports them afresh.
    Returns whether it did."""
    global _seen, _since_ns, generation
    with _lock:
        _since_ns = time.time_ns()  # what this run imports, it imports after this
        changed = [name for name, (path, known) in _noted.items()
                   if known is None or _changed(path, known)]
        if not changed:
            return False
        for name in _noted:
            sys.modules.pop(name, None)
        _noted.clear()
        _seen = set(sys.modules)
        generation += 1
    importlib.invalidate_caches()
    return True


def _changed(path, known):
    now = signature(path)
    return now is not None and now != known  # a file that is gone: keep what was loaded
