"""Random numbers: ``--seed S`` gives each item its own stream; without it no
two items or workers share one.

With a seed, before each item is called, its stream is made from
``numpy.random.SeedSequence(S, spawn_key=(index,))`` (the index-th child
of ``SeedSequence(S).spawn``), and numpy's legacy global generator
(``np.random.rand()``...) and the ``random`` module are seeded from it;
``parmagic.rng()`` gives the item a ``numpy.random.Generator`` on it. The
numbers an item draws depend on S and its index only: not on n_jobs, the
backend, the batch size, a retry or the cache. Other libraries (torch,
tensorflow, cupy) are not seeded.

Without a seed, a forked worker reseeds numpy's global generator from the
operating system once (``random`` does that itself after a fork), since a
fork copies the notebook's state and every worker would draw the same
numbers; so does a worker whose last run was seeded (two workers may have
ended on the same item's stream). ``rng()`` is a generator per process and
thread, also seeded from the operating system.

Imported in the workers: numpy only when a seed is given or asked for.
"""

import contextlib
import os
import random
import sys
import threading

_item = threading.local()  # .sequence, .generator: those of the item running here


def start_item(seed, index):
    """Seed the generators for item ``index`` of a run with ``seed``."""
    import numpy

    global _seeded
    sequence = numpy.random.SeedSequence(seed, spawn_key=(index,))
    _item.sequence, _item.generator = sequence, None
    _seeded = True
    numpy.random.seed(sequence.generate_state(4))
    random.seed(int.from_bytes(sequence.generate_state(4).tobytes(), "little"))


def end_item():
    _item.sequence = _item.generator = None


def rng():
    """The ``numpy.random.Generator`` of the item being run.

    With ``--seed S`` (``seed=S``) it is the item's own stream, the same
    whichever worker runs the item and however often; several calls within
    one item return the same generator. Otherwise (or outside a run) it is
    a generator of this process and thread, seeded from the operating
    system: different in every worker.
    """
    import numpy

    generator = getattr(_item, "generator", None)
    if generator is not None:
        return generator
    sequence = getattr(_item, "sequence", None)
    if sequence is not None:
        generator = _item.generator = numpy.random.Generator(numpy.random.PCG64(sequence))
        return generator
    own = getattr(_item, "own", None)
    if own is None or own[0] != os.getpid():
        own = _item.own = (os.getpid(), numpy.random.default_rng())
    return own[1]


_reseeded_in = None  # the process whose numpy generator was reseeded
_seeded = False  # whether an item was seeded since


def fresh_streams():
    """In a worker process, as a run begins: reseed the global generators
    from the operating system if they came with the process (a fork copies
    numpy's; an exec'd worker imports numpy afresh, seeded anew) or if a
    seeded run left them where another worker may have left its own."""
    global _reseeded_in, _seeded
    if _reseeded_in == os.getpid() and not _seeded:
        return
    if _seeded:
        random.seed()
    _reseeded_in, _seeded = os.getpid(), False
    numpy = sys.modules.get("numpy")
    if numpy is not None and hasattr(numpy, "random"):
        numpy.random.seed()


@contextlib.contextmanager
def generators_kept():
    """Put the notebook's ``random`` and numpy global generators back as they
    were after a seeded run in this process (threads, sequential)."""
    state = random.getstate()
    numpy = sys.modules.get("numpy")
    numpy_state = numpy.random.get_state() if numpy is not None else None
    try:
        yield
    finally:
        random.setstate(state)
        if numpy_state is not None:
            numpy.random.set_state(numpy_state)
