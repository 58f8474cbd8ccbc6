"""Exceptions as a notebook user meets them in a live ipykernel: a class
defined in the notebook is caught by its own ``except`` (and ``except*``)
in the same cell, and a ``%%parmap`` cell with a syntax error shows it as
running the cell would."""


import pytest
from kernel import STOP_ON_ERROR, parmagic_kernel, shown_traceback


NOTEBOOK = '''
class MyError(Exception):
    pass

def odd(x):
    if x % 2:
        raise MyError(f"odd {x}")
    return x
'''


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel(NOTEBOOK) as live:
        yield live


def test_notebook_exception_class_is_caught_in_the_same_cell(kernel):
    shown = kernel.text(
        "try:\n"
        "    %pmap -n 2 --no-progress odd [0, 1, 2]\n"
        "except MyError as exc:\n"
        "    print('caught', type(exc) is MyError, exc)\n"
    )
    assert shown == "caught True odd 1\n"


def test_collected_notebook_exceptions_are_caught_with_except_star(kernel):
    shown = kernel.text(
        "try:\n"
        "    %pmap -n 2 --no-progress --on-error collect odd range(5)\n"
        "except* MyError as group:\n"
        "    print('caught', [(type(e) is MyError, str(e)) for e in group.exceptions])\n"
    )
    assert shown == "caught [(True, 'odd 1'), (True, 'odd 3')]\n"


def test_parmap_cell_with_a_syntax_error_shows_it_and_its_line(kernel):
    errors, streams = [], []

    def collect(message):
        content = message["content"]
        if message["msg_type"] == "error":
            errors.append((content["ename"], shown_traceback(content)))
        elif message["msg_type"] == "stream":
            streams.append(content["text"])

    code = "%%parmap -n 2 --no-progress range(3)\nlimit = 3\ndef capped(x):\n    return min(x, limit +\n"
    reply = kernel.client.execute_interactive(code, timeout=60, output_hook=collect, stop_on_error=STOP_ON_ERROR)
    assert reply["content"]["status"] == "error"
    assert [name for name, _ in errors] == ["SyntaxError"]  # shown as the cell shows it
    assert "line 3" in errors[0][1] and "return min(x, limit +" in errors[0][1]
    assert "defines no function" not in "".join(streams)
    assert "UsageError: the cell has an error (shown above), so nothing was mapped" in "".join(streams)
    assert kernel.text("print('limit' in globals(), 'capped' in globals())") == "False False\n"
