"""parmagic: map a function over an iterable on worker processes from IPython.

In IPython or Jupyter::

    %load_ext parmagic
    squares = %pmap square range(10)

See ``%pmap?`` and ``%%parmap?`` for every option. Without IPython, use
:func:`parmagic.pmap`.
"""

from .engine import pmap, run
from .errors import (
    ItemExitError,
    ItemTimeoutError,
    NotPicklableError,
    ParmagicInputError,
    WorkerCrashError,
)
from .mutation import GlobalMutationWarning
from .report import NOT_COMPUTED, ParmapRecord
from .shutdown import shutdown_workers

__all__ = [
    "pmap",
    "run",
    "ParmapRecord",
    "NOT_COMPUTED",
    "ParmagicInputError",
    "ItemTimeoutError",
    "WorkerCrashError",
    "ItemExitError",
    "NotPicklableError",
    "GlobalMutationWarning",
    "shutdown_workers",
    "load_ipython_extension",
    "unload_ipython_extension",
]
__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """Register ``%pmap`` and ``%%parmap`` (called by ``%load_ext parmagic``)."""
    from .magics import ParMagic

    ipython.register_magics(ParMagic)


def unload_ipython_extension(ipython):
    """Remove the magics again (called by ``%unload_ext parmagic``)."""
    from .magics import unregister

    unregister(ipython)
