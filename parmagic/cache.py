"""``--cache DIR``: every finished item's result on disk, so a rerun after an
interrupt, a crash or a kernel restart computes only what is missing.

An entry's key is the item's arguments hashed with ``joblib.hash`` (numpy
aware), inside a folder named after the function's fingerprint: its code,
the code of the notebook functions it calls, its defaults, closure
variables and the global values it reads. Change any of those and the run
starts afresh (the old folder stays until the user deletes it).

joblib's ``Memory`` is not used as is: it keys a function by its source
text and name only (not the globals it reads), and it stores a result when
the call returns in the worker, whereas here results are written by the
notebook as they arrive, one small file each, and checked on the way back.
Each file is written to a temporary name and renamed, carries its length
and a CRC32, and a file that fails either check is deleted and recomputed.
"""

import inspect
import os
import pickle
import struct
import tempfile
import types
import zlib
from pathlib import Path

import cloudpickle
import joblib

from .errors import ParmagicInputError
from .mutation import code_names

_HEADER = struct.Struct("<8sQI")  # magic, payload length, CRC32 of the payload
_MAGIC = b"PARMAGC1"
_MISSING = object()


class ResultCache:
    """The cached results of one function, in ``root``."""

    def __init__(self, root, func):
        try:
            self.folder = Path(root).expanduser() / f"{_safe_name(func)}-{function_key(func)}"
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParmagicInputError(f"cannot use {root!r} as a cache folder: {exc}") from None
        self._keys = {}  # index -> key of items sent to workers
        self.n_hits = 0

    def lookup(self, index, args):
        """The cached result for item ``index``, else ``_MISSING`` (and the
        item's key is remembered so that ``store`` can write it)."""
        key = item_key(args)
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
    arguments: its code and that of the functions it calls from its own
    module (the notebook's), their defaults and closure variables, and the
    global values they read."""
    parts, seen, stack = [], set(), [func]
    home = getattr(func, "__module__", None)
    while stack:
        function = stack.pop()
        code = getattr(function, "__code__", None)
        if code is None or id(code) in seen or (
            function is not func and getattr(function, "__module__", None) != home
        ):
            # library functions count by name: their code is the installed version's
            parts.append(_describe(function))
            continue
        seen.add(id(code))
        parts.append(_code_parts(code))
        parts.append(_describe(getattr(function, "__defaults__", None)))
        parts.append(_describe(getattr(function, "__kwdefaults__", None)))
        for cell in getattr(function, "__closure__", None) or ():
            stack.extend(_values_or_functions([_cell_value(cell)], parts))
        namespace = getattr(function, "__globals__", {})
        names = sorted(name for name in code_names(code) if name in namespace)
        for name in names:
            parts.append(name)
            stack.extend(_values_or_functions([namespace[name]], parts))
    return joblib.hash(parts)[:16]


def _values_or_functions(values, parts):
    """Functions to fingerprint in turn; other values described into parts."""
    for value in values:
        if inspect.isfunction(value):
            yield value
        else:
            parts.append(_describe(value))


def _code_parts(code):
    consts = tuple(
        _code_parts(const) if isinstance(const, types.CodeType) else repr(const)
        for const in code.co_consts
    )
    return (code.co_name, code.co_code, consts, code.co_names, code.co_varnames)


def _describe(value):
    """Something hashable that changes when ``value`` does: the value itself
    for data, the name for modules, classes and builtins."""
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    if isinstance(value, type) or callable(value):
        return f"{type(value).__name__} {getattr(value, '__qualname__', repr(value))}"
    try:
        joblib.hash(value)
        return value
    except Exception:  # cannot be hashed (a lock...): only its type counts
        return f"unhashable {type(value).__qualname__}"


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _safe_name(func):
    name = getattr(func, "__name__", "func")
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "func"
