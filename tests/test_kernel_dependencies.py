"""What a function depends on, as a live kernel shows it: classes redefined
in a later cell reach the cache, changes to objects of notebook classes
reach the mutation warning, and their methods' lines reach tracebacks."""


import pytest
from kernel import parmagic_kernel, shown_traceback


SCALER = '''
class Scaler:
    FACTOR = {factor}
    def scale(self, x):
        return x * self.FACTOR{method}
'''

WORK = '''
def work(x):
    return Scaler().scale(x)
'''


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel() as live:
        yield live


def cached_results(kernel, cache):
    shown = kernel.text(f"values = %pmap -n 2 --no-progress --cache {cache} work range(4)\n"
                        "print(values, _parmap.n_cached)")
    values, n_cached = shown.rsplit(" ", 1)
    return values, int(n_cached)


@pytest.mark.parametrize("edit, expected", [
    (dict(method=" + 1"), "[1, 3, 5, 7]"),  # a method edited
    (dict(factor=3), "[0, 3, 6, 9]"),  # a class attribute changed
])
def test_a_class_redefined_in_another_cell_is_computed_again(kernel, tmp_path, edit, expected):
    cache = tmp_path / "cache"
    kernel.text(SCALER.format(factor=2, method=""))
    kernel.text(WORK)
    assert cached_results(kernel, cache) == ("[0, 2, 4, 6]", 0)
    assert cached_results(kernel, cache) == ("[0, 2, 4, 6]", 4)  # unchanged: from disk
    kernel.text(SCALER.format(**{"factor": 2, "method": "", **edit}))  # only the class cell
    assert cached_results(kernel, cache) == (expected, 0)


NOTEBOOK_STATE = '''class Registry:
    def __init__(self):
        self.items = []
    def register(self, item):
        self.items.append(item)

class Config:
    pass

registry = Registry()
cfg = Config()
cfg.x = -1

def keep(x):
    registry.register(x)
    return x

def configure(i):
    setattr(cfg, 'x', i)
    return i
'''


SETATTR_LINE = NOTEBOOK_STATE.splitlines().index("    setattr(cfg, 'x', i)") + 1


@pytest.mark.parametrize("func, name, where", [
    ("keep", "registry", "(seen while it ran)"),  # inside a method: only the workers see it
    ("configure", "cfg", f"(line {SETATTR_LINE}: setattr(cfg, 'x', i))"),
])
def test_changes_to_objects_of_notebook_classes_are_warned_about(kernel, func, name, where):
    kernel.text(NOTEBOOK_STATE)
    shown = kernel.text(f"values = %pmap -n 2 --no-progress {func} range(4)")
    shown = " ".join(shown.split())  # the warning is wrapped to the notebook's width
    assert shown.count("GlobalMutationWarning") == 1, shown
    assert f"{func} changes the global {name} {where}" in shown
    assert f"the notebook's {name} is unchanged" in shown
    assert kernel.text("print(values, registry.items, cfg.x)") == "[0, 1, 2, 3] [] -1\n"


def test_a_failure_in_a_method_shows_the_line_of_its_cell(kernel):
    kernel.text("class Checker:\n"
                "    def check(self, x):\n"
                "        if x == 2:\n"
                "            raise ValueError('two is not allowed')\n"
                "        return x\n")
    kernel.text("def checked(x):\n    return Checker().check(x)\n")
    reply, _ = kernel.execute("%pmap -n 2 --no-progress checked range(4)")
    assert reply["status"] == "error" and reply["ename"] == "ValueError"
    text = shown_traceback(reply)
    assert "raise ValueError('two is not allowed')" in text
    assert "return Checker().check(x)" in text
