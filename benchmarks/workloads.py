"""A function defined in a module rather than in the notebook: pickled by
reference (workers import it) instead of by value. The benchmark's extra
"module function" row maps it; everything else maps notebook functions
(benchmarks/notebook.py)."""


def identity(x):
    return x
