"""The pickle of a notebook function, kept from one run to the next while
nothing it carries can have changed.

cloudpickle ships a notebook function by value: its code, defaults,
closure, attributes and the globals its code reads. Pickling it again for
every run is a tenth of the notebook's time in a warm call of a few tiny
items. A kept pickle is reused only for a plain function whose every part
is either immutable or sent by name (numbers, strings, None, modules,
builtin functions) and is still the very same object (``is``), and only
while no module was imported since (cloudpickle lists the submodules a
function reaches, which depends on what is imported). Anything else (a
list, an array, a helper function or class of the notebook, a closure over
a mutable value) is pickled afresh every run, as before.
"""

import operator
import sys
import types
import weakref

import cloudpickle

from .dependencies import code_names

_ATOMS = frozenset((type(None), bool, int, float, complex, str, bytes))
# Read from the function's namespace by the pickle, besides its globals.
_MODULE_KEYS = ("__package__", "__name__", "__path__", "__file__")
_ABSENT = object()  # a name the code reads that is not (yet) a global

_kept = weakref.WeakKeyDictionary()  # function -> (fingerprint, pickle)
_names = weakref.WeakKeyDictionary()  # code object -> the global names it reads


def pickled(func, dumps):
    """``dumps(func)``, or the pickle of ``func`` kept from an earlier run
    if nothing in it can have changed since."""
    if not isinstance(func, types.FunctionType):
        return dumps(func)
    fingerprint = _fingerprint(func)  # before pickling: a change meanwhile shows later
    if fingerprint is None:
        _kept.pop(func, None)
        return dumps(func)
    entry = _kept.get(func)
    if entry is not None and _same(fingerprint, entry[0]):
        return entry[1]
    data = dumps(func)
    _kept[func] = (fingerprint, data)
    return data


def _fingerprint(func):
    """(everything the pickle of ``func`` is made of, as a tuple of objects
    compared by identity, the number of modules imported if it reads one);
    None if some part could change in place."""
    if func.__closure__ is not None or func.__dict__ or func.__annotations__:
        return None
    if cloudpickle.list_registry_pickle_by_value():  # modules shipped by value
        return None
    defaults = func.__defaults__ or ()
    keyword_defaults = tuple((func.__kwdefaults__ or {}).items())  # a dict: copied
    if not _ATOMS.issuperset(map(type, (*defaults, *(v for _, v in keyword_defaults)))):
        return None
    code, namespace = func.__code__, func.__globals__
    parts = [code, func.__name__, func.__qualname__, func.__module__, func.__doc__,
             *(namespace.get(key, _ABSENT) for key in _MODULE_KEYS),
             func.__defaults__, len(keyword_defaults),
             *(part for pair in keyword_defaults for part in pair)]
    modules = None
    for name in _global_names(code):
        value = namespace.get(name, _ABSENT)
        if isinstance(value, types.ModuleType):
            if sys.modules.get(value.__name__) is not value:  # shipped by value
                return None
            modules = len(sys.modules)  # an import since: other submodules to list
        elif not (value is _ABSENT or type(value) in _ATOMS
                  or isinstance(value, types.BuiltinFunctionType)):
            return None
        parts.append(value)
    return tuple(parts), modules


def _same(these, those):
    (parts, modules), (kept_parts, kept_modules) = these, those
    return (modules == kept_modules and len(parts) == len(kept_parts)
            and all(map(operator.is_, parts, kept_parts)))


def _global_names(code):
    names = _names.get(code)
    if names is None:
        names = _names[code] = sorted(code_names(code))
    return names
