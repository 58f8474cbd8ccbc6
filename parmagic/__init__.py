"""parmagic: map a function over an iterable on worker processes from IPython.

In IPython or Jupyter::

    %load_ext parmagic
    squares = %pmap square range(10)

See ``%pmap?`` and ``%%parmap?`` for every option. Without IPython, use
:func:`parmagic.pmap`.

The public names are imported on first use: worker processes import
``parmagic.worker.calls`` only, which keeps a fresh pool's first call quick.
"""

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "pmap": "engine.core",
    "run": "engine.core",
    "start": "engine.core",
    "BackgroundRun": "runs.background",
    "ParmapRecord": "runs.report",
    "NOT_COMPUTED": "common.not_computed",
    "ParmagicInputError": "common.errors",
    "ItemTimeoutError": "common.errors",
    "WorkerCrashError": "common.errors",
    "MemoryLimitError": "common.errors",
    "ItemExitError": "common.errors",
    "NotPicklableError": "common.errors",
    "UnpicklableExceptionError": "common.errors",
    "GlobalMutationWarning": "guard.mutation",
    "OversubscriptionWarning": "engine.pool_size",
    "SharedMemoryFullWarning": "data.shared_data",
    "MemoryFitWarning": "engine.memory_fit",
    "shutdown_workers": "engine.shutdown",
    "rng": "worker.seeding",
    "switches": "common.switches",
}

__all__ = [*_EXPORTS, "load_ipython_extension", "unload_ipython_extension"]
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'parmagic' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython):
    """Register ``%pmap`` and ``%%parmap`` (called by ``%load_ext parmagic``),
    and start the worker pool in the background (``ParMagic.warm_pool``)."""
    from parmagic.ipython.magics import ParMagic

    ipython.register_magics(ParMagic)
    ipython.magics_manager.registry[ParMagic.__name__].warm_up()


def unload_ipython_extension(ipython):
    """Remove the magics again (called by ``%unload_ext parmagic``)."""
    from parmagic.ipython.magics import unregister

    unregister(ipython)
