"""A notebook function's pickle is reused between runs only while nothing
it carries can have changed (parmagic/function_pickles.py): every change a
later run must see is seen."""

import textwrap

import pytest
from cells import notebook_cell

from parmagic import pmap
from parmagic.worker import function_pickles

CHANGES = {
    "a global number rebound": ("""
        SCALE = 2
        def f(x):
            return x * SCALE
    """, "SCALE = 3"),
    "a global that did not exist yet": ("""
        def f(x):
            return x + (LATER if "LATER" in globals() else 0)
    """, "LATER = 100"),
    "a default replaced": ("""
        def f(x, k=1):
            return x + k
    """, "f.__defaults__ = (50,)"),
    "a keyword-only default changed in place": ("""
        def f(x, *, k=1):
            return x + k
    """, "f.__kwdefaults__['k'] = 50"),
    "an attribute set on the function": ("""
        def f(x):
            return x + getattr(f, "extra", 0)
    """, "f.extra = 7"),
    "the code replaced": ("""
        def f(x):
            return x
    """, "f.__code__ = (lambda x: -x).__code__"),
    "a module global rebound": ("""
        import math as m
        def f(x):
            return m.__name__
    """, "import cmath as m"),
    "a list global changed in place": ("""
        FACTORS = [2]
        def f(x):
            return x * FACTORS[0]
    """, "FACTORS[0] = 5"),
    "a helper function redefined": ("""
        def helper(x):
            return x
        def f(x):
            return helper(x)
    """, "def helper(x):\n    return x * 10"),
}


@pytest.mark.parametrize("case", CHANGES)
def test_a_change_after_a_run_is_seen_by_the_next_run(case):
    source, change = CHANGES[case]
    namespace = notebook_cell(source)
    func = namespace["f"]
    serial_before = [func(x) for x in range(4)]
    for _ in range(2):  # the second run may reuse the first's pickle
        assert pmap(func, range(4), n_jobs=2) == serial_before
    exec(textwrap.dedent(change), namespace)  # noqa: S102 - the test's own cell
    serial_after = [func(x) for x in range(4)]
    assert serial_after != serial_before
    assert pmap(func, range(4), n_jobs=2) == serial_after


def test_an_unchanged_function_is_pickled_once():
    namespace = notebook_cell("""
        import math
        SCALE = 2
        def f(x, k=1, *, m=3):
            return math.floor(x) * SCALE + k + m
    """)
    made = []

    def dumps(func):
        made.append(func)
        return b"pickle %d" % len(made)

    first = function_pickles.pickled(namespace["f"], dumps)
    assert function_pickles.pickled(namespace["f"], dumps) == first
    assert len(made) == 1
    namespace["SCALE"] = 3
    assert function_pickles.pickled(namespace["f"], dumps) != first


def test_a_function_reading_mutable_data_is_pickled_every_time():
    namespace = notebook_cell("""
        TABLE = {"a": 1}
        def f(x):
            return TABLE
    """)
    made = []
    for _ in range(2):
        function_pickles.pickled(namespace["f"], lambda func: made.append(func) or b"")
    assert len(made) == 2
