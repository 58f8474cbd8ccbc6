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

from parmagic.common.dependencies import code_names
from parmagic.common.switches import switches
from parmagic.worker.batch import PLAIN_TYPES

# Read from the function's namespace by the pickle, besides its globals.
_MODULE_KEYS = ("__package__", "__name__", "__path__", "__file__")
_ABSENT = object()  # a name the code reads that is not (yet) a global

_kept = weakref.WeakKeyDictionary()  # function -> (fingerprint, pickle)
_names = weakref.WeakKeyDictionary()  # code object -> the global names it reads


def pickled(func, dumps):
    """``dumps(func)``, or the pickle of ``func`` kept from an earlier run
    if nothing in it can have changed since."""
    if not switches.pickle_reuse or not isinstance(func, types.FunctionType):
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
    if not holds_only_fixed_parts(func) or cloudpickle.list_registry_pickle_by_value():
        return None  # (a registered module is shipped by value)
    defaults = func.__defaults__ or ()
    keyword_defaults = tuple((func.__kwdefaults__ or {}).items())  # a dict: copied
    # plain values only: a module here would not be checked against sys.modules
    values = (*defaults, *(value for _, value in keyword_defaults))
    if not PLAIN_TYPES.issuperset(map(type, values)):
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
        elif not (value is _ABSENT or fixed(value)):
            return None
        parts.append(value)
    return tuple(parts), modules


def _same(these, those):
    (parts, modules), (kept_parts, kept_modules) = these, those
    return modules == kept_modules and same_objects(parts, kept_parts)


def holds_only_fixed_parts(func):
    """Whether ``func`` is a plain function without a closure, attributes
    or annotations: what else it holds (defaults, globals) is to be checked
    with ``fixed``."""
    return (isinstance(func, types.FunctionType) and func.__closure__ is None
            and not func.__dict__ and not func.__annotations__)


def fixed(value):
    """Whether ``value`` cannot change in place: a number, a string, None,
    a module or a builtin function (the last two are pickled by name)."""
    return (type(value) in PLAIN_TYPES
            or isinstance(value, (types.ModuleType, types.BuiltinFunctionType)))


def same_objects(these, those):
    """Whether two sequences hold the very same objects, in order."""
    return len(these) == len(those) and all(map(operator.is_, these, those))


def _global_names(code):
    names = _names.get(code)
    if names is None:
        names = _names[code] = sorted(code_names(code))
    return names
