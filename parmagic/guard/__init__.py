"""The global-mutation check: what the notebook side reads of a function
before a run, and the warning it gives after.
"""
