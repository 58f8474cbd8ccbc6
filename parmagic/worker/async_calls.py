"""Mapping an ``async def`` function: the items' coroutines run side by
side on an event loop, each still an item of its own: what it prints is
captured apart (``capture.item_outputs``), it has its own time limit, and
its failure is its own.

A worker runs the calls of a chunk this way (``run_chunk``); in the
notebook's process, ``engine.async_run`` runs a whole map on one loop.
"""

import asyncio
import inspect
import threading

from parmagic.common.errors import ItemTimeoutError
from parmagic.worker import capture
from parmagic.worker.failures import item_failure
from parmagic.worker.setup import Setup
from parmagic.worker.tracebacks import frames_of


def is_async(func):
    """Whether calling ``func`` gives a coroutine to await (an ``async def``
    function, also behind ``functools.partial`` or ``--init``'s Setup)."""
    return inspect.iscoroutinefunction(func.func if isinstance(func, Setup) else func)


async def call_item(func, index, args, options, outputs):
    """``(value, failure)`` of item ``index``: ``await func(*args)`` within
    its time limit, its output going to ``outputs[index]`` (if captured)."""
    # (each item is a task of its own, with a context of its own to set)
    if options.capture:
        capture.item_outputs.set((outputs, index))
    try:
        async with asyncio.timeout(options.timeout) as limit:
            return await func(*args), None
    except TimeoutError as exc:
        if not limit.expired():  # the item's own TimeoutError
            return None, item_failure(exc, options)
        return None, (ItemTimeoutError(
            f"the item ran longer than its {options.timeout:g} s time limit"),
            frames_of(exc))
    except (Exception, SystemExit) as exc:
        return None, item_failure(exc, options)


def run_chunk(func, calls, options, batch):
    """Run the ``(index, args)`` calls at once on a new event loop, putting
    what happened in ``batch``."""
    calls = list(calls)

    async def all_calls():
        return await asyncio.gather(*(call_item(func, index, args, options, batch.outputs)
                                      for index, args in calls))

    for (index, _), (value, failure) in zip(calls, run_to_end(all_calls)):
        batch.indices.append(index)
        batch.values.append(value)
        if failure is not None:
            batch.failures[index] = failure


def run_to_end(make_coroutine):
    """``asyncio.run(make_coroutine())`` here, or in a thread of its own when
    this thread runs an event loop already (a Jupyter kernel's main thread
    does, and a loop cannot run inside another)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    outcome = {}

    def run():
        try:
            outcome["value"] = asyncio.run(make_coroutine())
        except BaseException as exc:  # noqa: B036 - handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="parmagic-async-chunk", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
