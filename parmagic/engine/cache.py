"""``--cache DIR``: every finished item's result on disk, so a rerun after an
interrupt, a crash or a kernel restart computes only what is missing.

An entry's key is the item's arguments hashed with ``joblib.hash`` (numpy
aware), inside a folder named after the function's fingerprint: its code,
the code of the notebook functions it calls and of the methods of the
notebook classes it uses, those classes' attributes, defaults, closure
variables and the global values read (``dependencies.walk``). Change any
of those and the run starts afresh (the old folder stays until the user
deletes it).

joblib's ``Memory`` is not used as is: it keys a function by its source
text and name only (not the globals it reads), and it stores a result when
the call returns in the worker, whereas here results are written by the
notebook as they arrive, one small file each, and checked on the way back.
Each file is written to a temporary name and renamed, carries its length
and a CRC32, and a file that fails either check is deleted and recomputed.
"""

import hashlib
import os
import pickle
import struct
import tempfile
import types
import zlib
from pathlib import Path

import cloudpickle
import joblib

from parmagic.common.dependencies import own_modules, state_bytes, walk
from parmagic.common.errors import ParmagicInputError
from parmagic.common.own_modules import digest

_HEADER = struct.Struct("<8sQI")  # magic, payload length, CRC32 of the payload
_MAGIC = b"PARMAGC1"
_MISSING = object()


class ResultCache:
    """The cached results of one function, in ``root``; with ``init``
    (SETUP), of the two together: what SETUP builds decides the results."""

    def __init__(self, root, func, init=None, seed=None):
        key = function_key(func)
        if init is not None or seed is not None:
            key = joblib.hash([key, None if init is None else function_key(init), seed])[:16]
        self.seeded = seed is not None  # an item's stream depends on its index
        try:
            self.folder = Path(root).expanduser() / f"{_safe_name(func)}-{key}"
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParmagicInputError(f"cannot use {root!r} as a cache folder: {exc}") from None
        self._keys = {}  # index -> key of items sent to workers
        self.n_hits = 0

    def lookup(self, index, args):
        """The cached result for item ``index``, else ``_MISSING`` (and the
        item's key is remembered so that ``store`` can write it). An item
        that cannot be hashed (a lock, an open file) is computed, never
        cached, as a result that cannot be pickled is."""
        try:
            key = item_key((index, args) if self.seeded else args)
        except Exception:
            return _MISSING
        value = self._read(self.folder / f"{key}.pkl")
        if value is _MISSING:
            self._keys[index] = key
        else:
            self.n_hits += 1
        return value

    def store(self, index, value):
        key = self._keys.pop(index, None)
        if key is None:
            return
        try:
            payload = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return  # not picklable here: simply not cached
        header = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload))
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(header)
                file.write(payload)
            os.replace(temporary, self.folder / f"{key}.pkl")
        except OSError:
            Path(temporary).unlink(missing_ok=True)

    def forget(self, index):
        """Item ``index`` failed: nothing to store."""
        self._keys.pop(index, None)

    @staticmethod
    def _read(path):
        try:
            data = path.read_bytes()
        except OSError:
            return _MISSING
        try:
            magic, length, crc = _HEADER.unpack_from(data)
            payload = data[_HEADER.size:]
            if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
                raise ValueError("damaged cache entry")
            return pickle.loads(payload)
        except Exception:  # truncated, corrupt, or unreadable here: compute again
            path.unlink(missing_ok=True)
            return _MISSING


def cached_calls(calls, cache, store_hit):
    """``calls`` without the items found in ``cache``; each hit goes to
    ``store_hit(index, value)`` instead of a worker."""
    for index, args in calls:
        value = cache.lookup(index, args)
        if value is _MISSING:
            yield index, args
        else:
            store_hit(index, value)


def item_key(args):
    return joblib.hash(args)


def function_key(func):
    """A fingerprint of what decides ``func``'s results besides its
    arguments: everything ``dependencies.walk`` finds. Notebook functions
    and methods count by their code, classes by their bases (their
    attributes and methods are items of their own), values by content and
    library code by name, except the user's own modules (``own_modules``),
    which count by the contents of their files: an edit there is a new key."""
    modules = sorted((name, digest(path)) for name, path in own_modules(func).items())
    return joblib.hash([[_key_part(item) for item in walk(func)], modules])[:16]


def _key_part(item):
    if item.kind == "function":
        return ("function", item.name, _code_parts(item.value.__code__))
    if item.kind == "class":
        return ("class", item.name, [_describe(base) for base in item.value.__bases__])
    return (item.kind, item.name, _describe(item.value))


def _code_parts(code):
    # Line numbers are left out: moving a function down a cell changes nothing.
    consts = tuple(
        _code_parts(const) if isinstance(const, types.CodeType) else repr(const)
        for const in code.co_consts
    )
    return (code.co_name, code.co_code, consts, code.co_names, code.co_varnames)


_BY_NAME = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)


def _describe(value):
    """Something hashable that changes when ``value`` does: the name for
    modules, classes and functions (notebook ones have items of their own),
    a content hash for data, objects of notebook classes included."""
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    if isinstance(value, _BY_NAME):
        return f"{type(value).__name__} {value.__module__}.{value.__qualname__}"
    try:
        return joblib.hash(value)
    except Exception:  # e.g. an object whose notebook class was redefined since
        pass
    try:
        return hashlib.sha256(state_bytes(value)).hexdigest()
    except Exception:  # cannot be pickled (a lock...): only its type counts
        return f"unhashable {type(value).__qualname__}"


def _safe_name(func):
    name = getattr(func, "__name__", "func")
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "func"
