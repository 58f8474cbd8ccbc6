"""The mutation check's watch in the workers: fingerprints of the globals
a function reads, taken before and after a chunk's calls, name the globals
the calls changed (``guard.mutation`` warns about them in the notebook).
It sees changes made through helpers and methods
(``registry.register(x)``) that the static pass cannot.
"""

import types
import zlib

from parmagic.common.dependencies import (
    is_notebook_instance,
    notebook_homes,
    sampled,
    state_bytes,
    walk,
)


class GlobalWatch:
    """Fingerprints of the globals a function reads, directly or through the
    notebook functions and classes it uses (``dependencies.walk``)."""

    def __init__(self, func):
        homes = notebook_homes(func)
        self.watched = {
            (id(item.holder), item.name): item.holder
            for item in walk(func)
            if item.kind == "global" and _is_state(item.value, homes)
        }

    def snapshot(self):
        return {key: _fingerprint(holder[key[1]]) for key, holder in self.watched.items()
                if key[1] in holder}

    @staticmethod
    def changed(before, after):
        """Names whose fingerprint differs between two snapshots."""
        return sorted({key[1] for key, fingerprint in before.items()
                       if after.get(key) != fingerprint})


def _is_state(value, homes):
    """Data that a call could change in place. Code (modules, classes,
    functions, library callables) is not; an object of a notebook class is,
    even when it is callable."""
    if isinstance(value, (types.ModuleType, type)):
        return False
    return is_notebook_instance(value, homes) or not callable(value)


_LARGE_ARRAY_BYTES = 1 << 20


def _fingerprint(value):
    """Cheap content fingerprint; identity when the value cannot be pickled.

    Arrays over 1 MB are sampled (``dependencies.sampled``) so a large
    global costs about what a small one does; a change that misses every
    sampled element goes unseen, which the static pass partly covers.
    """
    try:
        nbytes = getattr(value, "nbytes", 0)
        if isinstance(nbytes, int) and nbytes > _LARGE_ARRAY_BYTES:
            return (id(value), zlib.crc32(sampled(value.reshape(-1))))
        return (id(value), zlib.crc32(state_bytes(value, sample=True)))
    except Exception:
        return (id(value), None)
