"""Splitting what the user typed after the magic into options, FUNC and ITERABLEs."""

import pytest

from parmagic import ParmagicInputError
from parmagic.ipython.parsing import (
    find_cell_function,
    split_chunks,
    split_func_and_iterables,
    split_iterables,
    split_options,
)


@pytest.mark.parametrize(
    "text, chunks",
    [
        ("square range(10)", ["square", "range(10)"]),
        ("pow range(10) [2] * 10", ["pow", "range(10)", "[2]", "*", "10"]),
        ("f {'a b': [1, 2]}  g( x , y )", ["f", "{'a b': [1, 2]}", "g( x , y )"]),
        ('f "two words" x', ["f", '"two words"', "x"]),
        ("-n 4 --backend=threading f", ["-n", "4", "--backend=threading", "f"]),
        ("", []),
    ],
)
def test_chunks_keep_brackets_and_strings_whole(text, chunks):
    assert [chunk.text for chunk in split_chunks(text)] == chunks


@pytest.mark.parametrize(
    "text, func, iterables",
    [
        ("square range(10)", "square", ["range(10)"]),
        ("(lambda x: x ** 2) range(10)", "(lambda x: x ** 2)", ["range(10)"]),
        ("lambda x: x ** 2, range(10)", "lambda x: x ** 2", ["range(10)"]),
        ("pow range(10) [2]*10", "pow", ["range(10)", "[2]*10"]),
        ("pow, range(10), [2] * 10", "pow", ["range(10)", "[2] * 10"]),
        ("f (1, 2, 3)", "f", ["(1, 2, 3)"]),
        ("f data", "f", ["data"]),
        ("obj.method ['a b', 'c']", "obj.method", ["['a b', 'c']"]),
        ("f x y z", "f", ["x", "y", "z"]),
    ],
)
def test_func_and_iterables_forms(text, func, iterables):
    assert split_func_and_iterables(text) == (func, iterables)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "missing ITERABLE"),
        ("square", "missing ITERABLE"),
        ("pow range(10) [2] * 10", "comma form"),
        ("lambda x: , y", "cannot parse"),
    ],
)
def test_unusable_text_is_a_clear_error_with_the_usage(text, problem):
    with pytest.raises(ParmagicInputError, match=problem) as info:
        split_func_and_iterables(text)
    assert "Usage: %pmap [options] FUNC ITERABLE" in str(info.value)


def test_unbalanced_brackets_are_reported_with_the_text():
    # Python 3.12's tokenizer says "unexpected EOF in multi-line statement"
    with pytest.raises(ParmagicInputError,
                       match=r"cannot read 'f range\(': (unexpected )?EOF in multi-line statement"):
        split_func_and_iterables("f range(")


def test_cell_magic_takes_iterables_only():
    assert split_iterables("range(10)") == ["range(10)"]
    assert split_iterables("xs ys") == ["xs", "ys"]
    with pytest.raises(ParmagicInputError, match="missing ITERABLE"):
        split_iterables("  ")


VALUE_OPTIONS = {"-n", "--n-jobs", "-b", "--backend", "-o", "--out", "--batch-size"}


@pytest.mark.parametrize(
    "line, words, rest",
    [
        ("square range(3)", [], "square range(3)"),
        ("-n 4 -b threading fetch urls", ["-n", "4", "-b", "threading"], "fetch urls"),
        ("-n -1 f xs", ["-n", "-1"], "f xs"),
        ("-n4 --star f xs", ["-n4", "--star"], "f xs"),
        ("--n-jobs=2 f  'a  b'", ["--n-jobs=2"], "f  'a  b'"),
        ("-o out -- -f xs", ["-o", "out"], "-f xs"),
        ("-x f xs", ["-x"], "f xs"),
        ("-n 2", ["-n", "2"], ""),
    ],
)
def test_options_come_first_and_the_rest_is_kept_verbatim(line, words, rest):
    assert split_options(line, VALUE_OPTIONS.__contains__) == (words, rest)


@pytest.mark.parametrize(
    "cell, name",
    [
        ("def f(x):\n    return x\n", "f"),
        ("def f(x): return x\ndef g(x): return -x\nprint(1)\n", "g"),
        ("h = lambda x: x + 1\n", "h"),
        ("def f(x): return x\nk = lambda x: x\n", "k"),
        ("import math\nx = 1\n", None),
        ("def outer():\n    def inner(x): return x\n    return inner\n", "outer"),
        ("class C:\n    def m(self): pass\n", None),
        ("a = b = lambda x: x\n", None),
        ("def broken(:\n", None),
    ],
)
def test_cell_function_is_the_last_top_level_def_or_lambda(cell, name):
    assert find_cell_function(cell) == name
