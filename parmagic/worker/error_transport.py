"""Sending an item's exception from a worker back to the notebook with its
class intact, notebook-defined classes included, so ``except MyError:``
works around ``%pmap`` as around a loop.

An exception that cannot make the trip becomes an
``UnpicklableExceptionError`` that names the original type and message.
"""

import functools
import io
import pickle

import cloudpickle

from parmagic.common.errors import UnpicklableExceptionError


def pack_error(error):
    """An item's exception, pickled here whatever pickler the transport
    uses, and checked to unpickle. A class the standard pickler finds by
    name goes by reference (``__main__.MyError`` in a forked worker is the
    notebook's); else cloudpickle sends it by value, and its class tracker
    gives the notebook back its very own class, so ``except MyError``
    catches it there. The type's name and the message travel beside it, for
    a stand-in if it cannot make the trip."""
    described = (_type_path(type(error)), _safe_str(error))
    for dumps in (pickle.dumps, cloudpickle.dumps):
        try:
            blob = dumps(error)
            loads(blob)  # e.g. an __init__ that unpickling cannot call
            return (blob, *described)
        except Exception as exc:
            failure = exc
    return (cloudpickle.dumps(_stand_in(*described, failure)), *described)


def unpack_error(blob, type_path, text):
    try:
        return loads(blob)
    except Exception as exc:  # e.g. its module is installed on the workers only
        return _stand_in(type_path, text, exc)


def _stand_in(type_path, text, exc):
    reason = f"{type(exc).__name__}: {_safe_str(exc)}"
    return UnpicklableExceptionError(type_path, text, reason)


def _type_path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _safe_str(value):
    try:
        return str(value)
    except Exception as exc:
        return f"<str() failed: {type(exc).__name__}>"


def loads(blob):
    """Unpickle what a worker sent (a result or an exception), keeping the
    notebook's own classes as they are here."""
    if b"_class_setstate" not in blob:  # no class sent by value: the fast way
        return pickle.loads(blob)
    return _KeepClassesDefinedHere(io.BytesIO(blob)).load()


class _KeepClassesDefinedHere(pickle.Unpickler):
    """Unpickles as cloudpickle does, except that a class sent by value that
    exists here already (the notebook's own class, found by cloudpickle's
    class tracker) keeps its attributes: cloudpickle would replace its
    methods with the worker's copies, whose globals are a frozen snapshot,
    so a method reading a notebook global would stop seeing it change."""

    _internals = getattr(cloudpickle, "cloudpickle", None)
    _trackers = getattr(_internals, "_DYNAMIC_CLASS_TRACKER_BY_ID", None)

    def __init__(self, file):
        super().__init__(file)
        self.existing = []  # classes of this pickle that were here before

    def find_class(self, module, name):
        found = super().find_class(module, name)
        if self._trackers is None:  # another cloudpickle: leave it be
            return found
        if found is getattr(self._internals, "_make_skeleton_class", None):
            return functools.partial(self._make_skeleton_class, found)
        if found is getattr(self._internals, "_class_setstate", None):
            return functools.partial(self._class_setstate, found)
        return found

    def _make_skeleton_class(self, make, *args):
        tracker_id = args[4]  # (type_constructor, name, bases, kwargs, tracker_id, extra)
        existed = tracker_id is not None and tracker_id in self._trackers
        cls = make(*args)
        if existed:
            self.existing.append(cls)
        return cls

    def _class_setstate(self, setstate, cls, state):
        if any(cls is existing for existing in self.existing):
            return cls
        return setstate(cls, state)
