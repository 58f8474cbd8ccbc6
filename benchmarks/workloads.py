"""The functions the benchmark maps. They live in a module of their own so
every pool (fork, spawn or loky) can import them by name."""

import numpy as np

def identity(x):
    return x


def cpu_task(loops):
    """Pure-Python work; ``loops`` is calibrated to about 0.2 s."""
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


def array_sum(array):
    return float(array.sum())


def arrays(n=8, megabytes=8):
    return [np.full(megabytes * (1 << 20) // 8, float(i)) for i in range(n)]
