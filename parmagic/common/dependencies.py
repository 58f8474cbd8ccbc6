"""What a mapped function depends on, found once for every part that asks.

The cache keys results by it, the mutation check watches the globals in it,
the pickling diagnosis looks in it for what cannot be sent, and tracebacks
look in it for the code of a failing frame. One walk keeps them in step:
before it, a method of a notebook class was invisible to the cache.

"Notebook code" is what cloudpickle ships by value: functions and classes
defined in ``__main__`` or in the mapped function's own module. The walk
goes into those (code, defaults, closure cells, the globals their code
reads, the methods and attributes of classes, the class of an instance) and
stops at everything else: library functions, classes and modules count as
their name, since their code is the installed version. It runs in the
workers once per chunk, so it only reads attributes, never pickles.
"""

import functools
import inspect
import io
import pickle
import sys
import types
from collections import deque

from parmagic.common.own_modules import own_file

# Class entries that are bookkeeping rather than behaviour (the line number
# moves when a cell is edited above the class; that must not count).
_CLASS_BOOKKEEPING = frozenset(
    "__dict__ __weakref__ __module__ __qualname__ __doc__ __firstlineno__ "
    "__static_attributes__".split()
)
_DESCRIPTORS = (types.MemberDescriptorType, types.GetSetDescriptorType)


class Dependency:
    """One thing a function depends on.

    ``kind`` is "function" or "class" (notebook code, walked into), or the
    way a value is reached: "global", "closure", "default" (positional),
    "kwdefault", "attribute" (of a notebook class), "mapped" (the callable
    itself when it is not a plain function). ``name`` is the name the user
    wrote (``Cls.attr`` for attributes). ``holder`` is where a global or an
    attribute lives (a namespace dict or a class), so that a value rebound
    there can be read again.
    """

    __slots__ = ("kind", "name", "value", "holder")

    def __init__(self, kind, name, value, holder=None):
        self.kind, self.name, self.value, self.holder = kind, name, value, holder

    def __repr__(self):
        return f"Dependency({self.kind!r}, {self.name!r})"


def walk(func):
    """The dependencies of ``func``, breadth first so that ``func``'s own
    come before its helpers'; within one function or class, by name."""
    return _Walk(func).items


def notebook_homes(func):
    """Module names whose code is shipped by value along with ``func``: the
    notebook's and the mapped function's own (None when it was exec'd
    without a ``__name__``). A library callable adds nothing."""
    while isinstance(func, (types.MethodType, functools.partial)):
        func = getattr(func, "__func__", None) or func.func
    if isinstance(func, types.FunctionType):
        return {"__main__", func.__module__}
    return {"__main__"}


def is_notebook_class(value, homes):
    return isinstance(value, type) and value.__module__ in homes


def is_notebook_instance(value, homes):
    kind = type(value)
    return kind.__module__ in homes and not isinstance(value, (type, types.FunctionType))


def code_names(code):
    """Names ``code`` and the code nested in it look up (globals, but also
    attribute names: a superset of the globals read)."""
    return {name for current in nested_code(code) for name in current.co_names}


def nested_code(code):
    """``code`` and the code objects of the functions, lambdas and
    comprehensions defined inside it."""
    found, stack = [], [code]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(c for c in current.co_consts if inspect.iscode(c))
    return found


def own_modules(func):
    """The user's own modules (``own_modules.own_file``) that ``func``
    reaches, as ``{name: file}``: the modules its dependencies are, or are
    defined in (a function imported from ``localmod``, ``localmod``
    itself), and through their namespaces the user's modules those reach
    in turn (``localmod`` calling ``helpers.f``). Installed modules are
    where the search stops: their code is the installed version."""
    found, queue = {}, [item.value for item in walk(func)]
    while queue:
        value = queue.pop()
        module = value if isinstance(value, types.ModuleType) else _home_module(value)
        if module is None or module.__name__ in found:
            continue
        path = own_file(module)
        if path is None:
            continue
        found[module.__name__] = path
        queue.extend(vars(module).values())
    return found


def _home_module(value):
    """The module a function, class or object of a class is defined in."""
    if not isinstance(value, (types.FunctionType, type)):
        value = type(value)
    name = getattr(value, "__module__", None)
    return sys.modules.get(name) if isinstance(name, str) else None


def notebook_code(func):
    """Every code object of the notebook functions and methods ``func``
    reaches, nested ones included."""
    return [code for item in walk(func) if item.kind == "function"
            for code in nested_code(item.value.__code__)]


def state_bytes(value, sample=False):
    """``value``'s data as bytes, for comparing it with itself later. The
    classes and functions it refers to are written as their names: a plain
    pickle of an object of a notebook class fails in a worker (cloudpickle
    shipped the class by value, so ``__main__`` has no such name), and
    cloudpickle would ship the class and its methods' globals each time.

    With ``sample=True`` (the mutation watch, twice per chunk) large
    buffers (numpy arrays, the columns of a DataFrame) come out of band
    (pickle protocol 5) and only a sample of each is kept, so a 200 MB frame
    costs about what a small one does; a change that misses every sampled
    byte goes unseen. The cache key needs every byte: no sampling there.
    """
    if not sample:
        return _pickled(value, None)
    buffers = []
    return b"".join([_pickled(value, buffers.append), *map(_sample, buffers)])


def _pickled(value, buffer_callback):
    try:  # the fast path, for plain data
        return pickle.dumps(value, protocol=5, buffer_callback=buffer_callback)
    except Exception:
        file = io.BytesIO()
        _NamingPickler(file, protocol=5, buffer_callback=buffer_callback).dump(value)
        return file.getvalue()


def _sample(buffer):
    """A sample of a large out-of-band buffer (``sampled``), as 8-byte
    words where the length allows."""
    raw = buffer.raw()
    try:
        import numpy
    except ImportError:
        return bytes(raw[:: max(1, len(raw) // _STRIDED_SAMPLES)])
    return sampled(numpy.frombuffer(
        raw, dtype=numpy.uint64 if raw.nbytes % 8 == 0 else numpy.uint8))


# What ``sampled`` takes of a large array: every n-th element, about this
# many of them, and this many evenly spaced runs of that many elements.
_STRIDED_SAMPLES = 512
_RUNS, _RUN_LENGTH = 32, 1024


def sampled(flat):
    """The bytes of a sample of the 1-d numpy array ``flat``: every n-th
    element (a change spread over the array shows) and evenly spaced runs
    of neighbours (a change to one region shows if it touches a run). Each
    scattered element costs a cache miss (65,536 of them took 2 ms per
    200 MB here, in a worker busy beside another), and so, about, does each
    run of neighbours."""
    import numpy

    size = flat.size
    if size <= _STRIDED_SAMPLES + _RUNS * _RUN_LENGTH:
        return flat.tobytes()
    step = flat.strides[0]
    runs = numpy.lib.stride_tricks.as_strided(
        flat, shape=(_RUNS, _RUN_LENGTH), strides=(step * (size // _RUNS), step),
        writeable=False)
    return flat[:: size // _STRIDED_SAMPLES].tobytes() + runs.tobytes()


class _NamingPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType)) and obj is not str:
            return str, (f"{obj.__module__}.{obj.__qualname__}",)  # never unpickled
        return NotImplemented


class _Walk:
    def __init__(self, func):
        self.homes = notebook_homes(func)
        self.items, self.queue, self.seen = [], deque(), set()
        if isinstance(func, types.FunctionType):
            self._queue(func)  # whatever its module: it is the code being run
        else:
            self.items.append(Dependency("mapped", _name_of(func), func))
            self._follow(func)
        while self.queue:
            target = self.queue.popleft()
            if isinstance(target, type):
                self._class(target)
            else:
                self._function(target)

    def _follow(self, value):
        """Queue the notebook code ``value`` leads to; leaves stay leaves."""
        if isinstance(value, types.MethodType):  # bound: its function and its object
            self._follow(value.__func__)
            self._follow(value.__self__)
        elif isinstance(value, functools.partial):
            for part in (value.func, *value.args, *value.keywords.values()):
                self._follow(part)
        elif isinstance(value, types.FunctionType):
            if value.__module__ in self.homes:
                self._queue(value)
        elif isinstance(value, type):
            if value.__module__ in self.homes:
                self._queue(value)
        elif is_notebook_instance(value, self.homes):
            self._queue(type(value))  # its state is data; its class is code

    def _queue(self, target):
        if id(target) not in self.seen:
            self.seen.add(id(target))
            self.queue.append(target)

    def _add(self, kind, name, value, holder=None):
        self.items.append(Dependency(kind, name, value, holder))
        self._follow(value)

    def _function(self, function):
        code = function.__code__
        self.items.append(Dependency("function", function.__qualname__, function))
        defaults = function.__defaults__ or ()
        first_default = code.co_argcount - len(defaults)
        for offset, value in enumerate(defaults):
            self._add("default", code.co_varnames[first_default + offset], value)
        for name, value in sorted((function.__kwdefaults__ or {}).items()):
            self._add("kwdefault", name, value)
        for name, cell in zip(code.co_freevars, function.__closure__ or ()):
            self._add("closure", name, _cell_value(cell))
        namespace = function.__globals__
        for name in sorted(code_names(code)):
            if name in namespace:
                self._add("global", name, namespace[name], namespace)

    def _class(self, cls):
        self.items.append(Dependency("class", cls.__qualname__, cls))
        for base in cls.__bases__:
            self._follow(base)
        for name, value in sorted(vars(cls).items()):
            if name in _CLASS_BOOKKEEPING or isinstance(value, _DESCRIPTORS):
                continue
            functions = [f for f in _wrapped_functions(value) if f.__module__ in self.homes]
            if functions:  # a notebook method: its code is what counts
                for function in functions:
                    self._follow(function)
            else:
                self._add("attribute", f"{cls.__qualname__}.{name}", value, cls)


def _wrapped_functions(value):
    """The functions behind a method entry of a class body: plain, static,
    class method, property or cached property; [] for anything else."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset, value.fdel) if f is not None]
    if isinstance(value, functools.cached_property):
        value = value.func
    return [value] if isinstance(value, types.FunctionType) else []


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell: the variable is not bound yet
        return None


def _name_of(value):
    for attribute in ("__qualname__", "__name__"):
        if isinstance(getattr(value, attribute, None), str):
            return getattr(value, attribute)
    return type(value).__qualname__
