"""The global-mutation check: static cases table, dynamic detection, warnings."""

import linecache
import math
import warnings

import numpy as np
import pytest

from parmagic import GlobalMutationWarning, pmap
from parmagic.guard.mutation import static_findings


def define(source, name="f"):
    """Define functions from ``source`` in a fresh namespace with some globals,
    as a notebook cell would (the source is findable by inspect)."""
    filename = f"<cell-{abs(hash(source))}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {
        "A": [0, 0, 0, 0], "D": {}, "S": set(), "arr": np.zeros(4), "math": math,
        "np": np, "obj": type("Obj", (), {})(), "COUNT": 0, "df": _FakeFrame(),
        "__name__": "__main__",
    }
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


class _FakeFrame:
    def drop(self, *args, **kwargs):
        return self


# (source, expected global names); every function is named f
CASES = [
    # positives: assignment to a declared global
    ("def f(i):\n    global A\n    A[i] = i\n", {"A"}),
    ("def f(i):\n    global COUNT\n    COUNT = i\n", {"COUNT"}),
    ("def f(i):\n    global COUNT\n    COUNT += i\n", {"COUNT"}),
    ("def f(i):\n    global COUNT\n    del COUNT\n", {"COUNT"}),
    ("def f(i):\n    global COUNT\n    for COUNT in range(i):\n        pass\n", {"COUNT"}),
    ("def f(i):\n    global COUNT, A\n    COUNT, A = 1, 2\n", {"COUNT", "A"}),
    # positives: item / attribute assignment without `global`
    ("def f(i):\n    A[i] = i\n", {"A"}),
    ("def f(i):\n    D['k'] = i\n", {"D"}),
    ("def f(i):\n    obj.x = i\n", {"obj"}),
    ("def f(i):\n    A[i] += 1\n", {"A"}),
    ("def f(i):\n    del D[i]\n", {"D"}),
    ("def f(i):\n    arr[i:] = 0\n", {"arr"}),
    ("def f(i):\n    obj.data[i].x = 1\n", {"obj"}),
    # positives: mutating method calls
    ("def f(i):\n    A.append(i)\n", {"A"}),
    ("def f(i):\n    A.extend([i])\n", {"A"}),
    ("def f(i):\n    A.insert(0, i)\n", {"A"}),
    ("def f(i):\n    A.pop()\n", {"A"}),
    ("def f(i):\n    A.sort()\n", {"A"}),
    ("def f(i):\n    D.update(k=i)\n", {"D"}),
    ("def f(i):\n    D.setdefault(i, [])\n", {"D"}),
    ("def f(i):\n    S.add(i)\n", {"S"}),
    ("def f(i):\n    S.discard(i)\n", {"S"}),
    ("def f(i):\n    A.__setitem__(0, i)\n", {"A"}),
    ("def f(i):\n    arr.fill(i)\n", {"arr"}),
    ("def f(i):\n    df.drop('x', inplace=True)\n", {"df"}),
    ("def f(i):\n    np.add(arr, 1, out=arr)\n", {"arr"}),
    ("def f(i):\n    setattr(obj, 'x', i)\n", {"obj"}),
    ("def f(i):\n    delattr(obj, 'x')\n", {"obj"}),
    ("def f(i):\n    setattr(obj.inner, 'x', i)\n", {"obj"}),
    # positives: nested functions, loops, lambdas
    ("def f(i):\n    for j in range(i):\n        A.append(j)\n", {"A"}),
    ("def f(i):\n    def g():\n        D[i] = 1\n    g()\n", {"D"}),
    ("def f(i):\n    if i:\n        while False:\n            S.add(i)\n", {"S"}),
    ("f = lambda i: A.append(i)\n", {"A"}),
    ("f = lambda i: D.__setitem__(i, i)\n", {"D"}),
    # negatives
    ("def f(i):\n    A = [1]\n    A[0] = i\n    return A\n", set()),  # local shadows global
    ("def f(A):\n    A.append(1)\n    return A\n", set()),  # parameter named like a global
    ("def f(i):\n    B = list(A)\n    B.append(i)\n    return B\n", set()),  # local copy
    ("def f(x):\n    x.y = 1\n    return x\n", set()),  # attribute of an argument
    ("def f(i):\n    return A[i] + len(D) + COUNT\n", set()),  # reading globals
    ("def f(i):\n    print(i)\n    return np.sum(A) + math.sqrt(i)\n", set()),
    ("class C:\n    def f(self, v):\n        self.x = v\n        return self\nf = C.f\n", set()),
    ("def f(i):\n    return [A for A in range(i)]\n", set()),  # comprehension variable
    ("def f(i):\n    return {k: v for k, v in D.items()}\n", set()),
    ("def f(i):\n    out = []\n    out.append(i)\n    return out\n", set()),
    ("def f(i):\n    d = dict(D)\n    d.update(x=1)\n    return d\n", set()),
    ("def f(i):\n    return sorted(A)\n", set()),
    ("def f(i):\n    for A in range(3):\n        pass\n    return A\n", set()),
    ("def f(i):\n    import math\n    math.x = 1\n", set()),  # local import
    ("def f(i):\n    np.random.seed(i)\n    return i\n", set()),  # module functions
    ("def f(i):\n    missing.append(i)\n", set()),  # not a notebook global
    ("def f(x):\n    setattr(x, 'y', 1)\n    return x\n", set()),  # an argument
    ("def f(i):\n    return getattr(obj, 'x', i)\n", set()),  # reading
    ("def f(i):\n    setattr = print\n    setattr(obj, 'x', i)\n", set()),  # not the builtin
    ("def f(i):\n    setattr(np, 'x', i)\n", set()),  # a module
]


@pytest.mark.parametrize("source, expected", CASES, ids=[c[0].splitlines()[0] + "..." + str(n) for n, c in enumerate(CASES)])
def test_static_detection_table(source, expected):
    func = define(source)
    assert {finding.name for finding in static_findings(func)} == expected


def test_static_finding_names_the_line():
    func = define("def f(i):\n    global A\n    A[i] = i\n")
    (finding,) = static_findings(func)
    assert (finding.name, finding.lineno, finding.line) == ("A", 3, "A[i] = i")


def test_lambda_typed_in_a_magic_is_read_from_the_fallback_source():
    func = eval("lambda i: A.append(i)", {"A": []})
    findings = static_findings(func, fallback_source="(lambda i: A.append(i))")
    assert [f.name for f in findings] == ["A"]


def _one_warning(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    mutation = [w for w in caught if issubclass(w.category, GlobalMutationWarning)]
    return result, mutation


def test_seed_case_warns_once_with_the_fix_and_the_none_hint():
    func = define("def f(i):\n    global A\n    A[i] = i\n")
    result, caught = _one_warning(lambda: pmap(func, range(4), n_jobs=2))
    assert result == [None] * 4
    assert func.__globals__["A"] == [0, 0, 0, 0]
    assert len(caught) == 1
    text = str(caught[0].message)
    for part in ("f changes the global A", "A[i] = i", "is lost", "A is unchanged",
                 "Return the value", "Every result is None"):
        assert part in text, part


def test_returning_the_value_gives_no_warning():
    func = define("def f(i):\n    return i\n")
    result, caught = _one_warning(lambda: pmap(func, range(4), n_jobs=2))
    assert result == [0, 1, 2, 3] and caught == []


def test_dynamic_check_catches_mutation_through_a_helper():
    source = "def helper(i):\n    A[i] = i\n\ndef f(i):\n    helper(i)\n    return i\n"
    func = define(source)
    assert static_findings(func) == []  # invisible to the static pass
    result, caught = _one_warning(lambda: pmap(func, range(4), n_jobs=2))
    assert result == [0, 1, 2, 3]
    assert len(caught) == 1 and "the global A" in str(caught[0].message)
    assert "Every result is None" not in str(caught[0].message)


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_backend_specific_text(backend):
    func = define("def f(i):\n    A.append(i)\n")
    _, caught = _one_warning(lambda: pmap(func, range(4), n_jobs=2, backend=backend))
    assert len(caught) == 1
    text = str(caught[0].message)
    if backend == "threading":
        assert "without synchronisation" in text and "is lost" not in text
    else:
        assert "is lost" in text


def test_sequential_and_single_job_runs_do_not_warn():
    func = define("def f(i):\n    A.append(i)\n")
    _, caught = _one_warning(lambda: pmap(func, range(3), backend="sequential"))
    assert caught == []
    _, caught = _one_warning(lambda: pmap(func, range(3), n_jobs=1))
    assert caught == []


def test_warn_mutation_false_and_filterwarnings_silence_it():
    func = define("def f(i):\n    A.append(i)\n")
    _, caught = _one_warning(lambda: pmap(func, range(3), n_jobs=2, warn_mutation=False))
    assert caught == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=GlobalMutationWarning)
        pmap(func, range(3), n_jobs=2)
    assert caught == []
    assert issubclass(GlobalMutationWarning, UserWarning)


def test_large_array_globals_are_watched_by_sample():
    # (worker processes get large arrays as read-only memmaps, so a write
    # fails there; threads share the real array)
    source = "BIG = np.zeros(2_000_000)\ndef helper(i):\n    BIG[:] = 1\n\ndef f(i):\n    helper(i)\n    return i\n"
    func = define(source)
    _, caught = _one_warning(lambda: pmap(func, range(2), n_jobs=2, backend="threading"))
    assert len(caught) == 1 and "the global BIG" in str(caught[0].message)


@pytest.mark.parametrize("change", [
    "BIG[:1000] = 1",  # a region at the start
    "BIG[1_000_000:1_010_000] += 1",  # one in the middle
    "BIG[::7] = 1",  # spread over the whole array
    "BIG.fill(3)",
], ids=["start", "middle", "spread", "all"])
def test_a_change_to_part_of_a_large_global_array_in_a_worker_is_found(change):
    source = (f"BIG = np.zeros(2_000_000)\ndef helper(i):\n    {change}\n\n"
              "def f(i):\n    helper(i)\n    return i\n")
    func = define(source)
    _, caught = _one_warning(lambda: pmap(func, range(2), n_jobs=2))
    assert len(caught) == 1 and "the global BIG" in str(caught[0].message)
    assert not func.__globals__["BIG"].any()  # the notebook's copy is untouched


# Notebook classes, as a cell defines them. In a worker their objects cannot
# be pickled by reference (cloudpickle shipped the class by value), which
# used to hide every change to them from the dynamic pass.
REGISTRY = """
class Registry:
    def __init__(self):
        self.items = []
    def register(self, item):
        self.items.append(item)
    def count(self):
        return len(self.items)
    def __call__(self, item):
        return item in self.items
class Config:
    scale = 1
registry = Registry()
cfg = Config()
cfg.x = 0
"""


@pytest.mark.parametrize("body, name", [
    ("    registry.register(i)\n    return i\n", "registry"),
    ("    set_x(i)\n    return i\n", "cfg"),
    ("    drop_x()\n    return i\n", "cfg"),
])
def test_dynamic_check_sees_state_changed_in_objects_of_notebook_classes(body, name):
    source = REGISTRY + ("def set_x(i):\n    setattr(cfg, 'x', i)\n"
                         "def drop_x():\n    if hasattr(cfg, 'x'):\n        delattr(cfg, 'x')\n"
                         "def f(i):\n" + body)
    func = define(source)
    assert static_findings(func) == []  # through a method or a helper: invisible
    result, caught = _one_warning(lambda: pmap(func, range(4), n_jobs=2))
    assert result == [0, 1, 2, 3]
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert f"f changes the global {name} (seen while it ran)" in str(caught[0].message)
    assert func.__globals__["registry"].items == [] and func.__globals__["cfg"].x == 0


def test_setattr_on_a_global_is_found_before_the_run():
    func = define(REGISTRY + "def f(i):\n    setattr(cfg, 'x', i)\n    return i\n")
    _, caught = _one_warning(lambda: pmap(func, range(4), n_jobs=2))
    assert len(caught) == 1
    assert "f changes the global cfg (line " in str(caught[0].message)
    assert "setattr(cfg, 'x', i)" in str(caught[0].message)


@pytest.mark.parametrize("body", [
    "    return registry.count() + i\n",  # a method that only reads
    "    return registry(i)\n",  # a callable object of a notebook class
    "    return Config.scale * cfg.x + i\n",  # class and instance attributes
    "    return Registry().count() + i\n",  # a new object, the global class untouched
    "    return helper(i) + np.sum(A) + math.sqrt(i)\n",  # functions and modules
])
@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_using_notebook_objects_without_changing_them_gives_no_warning(body, backend):
    func = define(REGISTRY + "def helper(i):\n    return i\ndef f(i):\n" + body)
    result, caught = _one_warning(lambda: pmap(func, range(4), n_jobs=2, backend=backend))
    assert len(result) == 4 and caught == []
