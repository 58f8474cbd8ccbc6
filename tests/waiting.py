"""Waiting in a test for something to happen, never longer than a deadline:
a wait that runs out fails, saying what it waited for."""

import time


def until(condition, what, seconds=30, every=0.02):
    """Return once ``condition()`` holds; fail after ``seconds`` if it never does."""
    ends = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < ends, f"after {seconds} s, still waiting for {what}"
        time.sleep(every)
