"""The one walker of what a mapped function depends on."""

import functools
import pickle

import numpy as np
from cells import notebook_cell

from parmagic.common.dependencies import notebook_code, state_bytes, walk


def notebook(source, name="f"):
    """Run ``source`` as a notebook cell would (in ``__main__``'s name, with
    findable source) and return the namespace's ``name``."""
    return notebook_cell(source, np=np)[name]


def found(func, *kinds):
    return [(item.kind, item.name) for item in walk(func) if item.kind in kinds]


HELPERS = """
SCALE = 3
UNUSED = 4
def helper(x):
    return x * SCALE
def f(x):
    return helper(x) + np.sum([x])
"""


def test_a_function_its_helpers_and_the_globals_they_read():
    f = notebook(HELPERS)
    assert found(f, "function") == [("function", "f"), ("function", "helper")]
    assert found(f, "global") == [("global", "helper"), ("global", "np"), ("global", "SCALE")]


def test_library_code_is_a_leaf_counted_by_name():
    f = notebook(HELPERS)
    numpy_items = [item for item in walk(f) if item.name == "np"]
    assert len(numpy_items) == 1 and numpy_items[0].value is np
    assert not [item for item in walk(f) if item.kind == "function"
                and item.value.__module__ != "__main__"]


def test_defaults_keyword_defaults_and_closure_cells():
    f = notebook(
        "def make(offset):\n"
        "    def f(x, scale=2, *, shift=offset):\n"
        "        return x * scale + shift + offset\n"
        "    return f\n"
        "f = make(5)\n"
    )
    values = {(item.kind, item.name): item.value for item in walk(f)}
    assert values[("default", "scale")] == 2
    assert values[("kwdefault", "shift")] == 5
    assert values[("closure", "offset")] == 5


CLASSES = """
RATE = 2.0
class Base:
    def describe(self):
        return type(self).__name__
class Shape(Base, dict):
    SIDES = 4
    def area(self, x):
        return x * x * RATE
    @staticmethod
    def unit():
        return 1
    @classmethod
    def make(cls):
        return cls()
    @property
    def sides(self):
        return self.SIDES
def f(x):
    return Shape().area(x)
"""


def test_a_class_its_methods_attributes_and_notebook_bases():
    f = notebook(CLASSES)
    assert found(f, "class") == [("class", "Shape"), ("class", "Base")]
    methods = {name for _, name in found(f, "function")}
    assert methods == {"f", "Shape.area", "Shape.unit", "Shape.make", "Shape.sides",
                       "Base.describe"}
    assert ("attribute", "Shape.SIDES") in found(f, "attribute")
    assert ("global", "RATE") in found(f, "global")  # read by a method
    assert "dict" not in {name for _, name in found(f, "class")}  # a library base


def test_an_object_of_a_notebook_class_leads_to_its_class():
    for source in ("shape = Shape()\ndef g(x):\n    return shape.area(x)\n",
                   "def g(x, shape=Shape()):\n    return shape.area(x)\n",
                   "def make(shape):\n    return lambda x: shape.area(x)\ng = make(Shape())\n"):
        g = notebook(CLASSES + source, "g")
        assert ("function", "Shape.area") in found(g, "function"), source


def test_bound_methods_and_partials_are_followed():
    shape_area = notebook(CLASSES + "shape = Shape()\n", "shape").area
    assert ("function", "Shape.area") in found(shape_area, "function")
    assert found(shape_area, "mapped") == [("mapped", "Shape.area")]
    partial = functools.partial(notebook(HELPERS), 1)
    assert ("function", "helper") in found(partial, "function")


def test_cycles_are_walked_once():
    f = notebook(
        "class Node:\n"
        "    def visit(self):\n"
        "        return f(self)\n"
        "node = Node()\n"
        "node.me = node\n"
        "def even(n):\n    return n == 0 or odd(n - 1)\n"
        "def odd(n):\n    return n != 0 and even(n - 1)\n"
        "def f(x):\n    return even(3) and node.visit()\n"
    )
    functions = [name for _, name in found(f, "function")]
    assert sorted(functions) == ["Node.visit", "even", "f", "odd"]


def test_the_functions_own_dependencies_come_first():
    f = notebook("LOCK = 1\ndef helper():\n    return LOCK\nOWN = 2\n"
                 "def f(x):\n    return helper() + OWN\n")
    names = [item.name for item in walk(f) if item.kind == "global"]
    assert names.index("OWN") < names.index("LOCK")


def test_notebook_code_covers_nested_functions_and_methods():
    f = notebook(CLASSES + "def outer(x):\n    inner = lambda y: Shape().area(y)\n"
                 "    return inner(x)\n", "outer")
    names = {code.co_name for code in notebook_code(f)}
    assert {"outer", "<lambda>", "area", "unit", "describe"} <= names


def test_a_library_callable_is_one_leaf():
    items = walk(np.add)
    assert [(item.kind, item.name) for item in items] == [("mapped", "add")]


def test_state_bytes_of_an_object_whose_class_pickle_cannot_find():
    # as in a worker: the class came by value, __main__ has no such name
    registry = notebook("class Registry:\n    def __init__(self):\n        self.items = []\n"
                        "registry = Registry()\n", "registry")
    try:
        pickle.dumps(registry)
        raise AssertionError("pickle found the class; the test shows nothing")
    except pickle.PicklingError:
        pass
    before = state_bytes(registry)
    assert state_bytes(registry) == before
    registry.items.append(1)
    assert state_bytes(registry) != before


def test_what_cannot_be_pickled_is_named_inside_helpers_and_classes():
    from parmagic.transport.pickling import function_error

    through_helper = notebook("import threading\nLOCK = threading.Lock()\n"
                              "def helper(x):\n    with LOCK:\n        return x\n"
                              "def f(x):\n    return helper(x)\n")
    assert "it uses the global 'LOCK', a lock" in str(function_error(through_helper, "f"))
    in_a_class = notebook("import threading\nclass Guarded:\n    GUARD = threading.Lock()\n"
                          "    def run(self, x):\n        return x\n"
                          "def f(x):\n    return Guarded().run(x)\n")
    assert "the class attribute 'Guarded.GUARD'" in str(function_error(in_a_class, "f"))
