"""A map of an ``async def`` function in the notebook's process: its items
run side by side on one event loop, in a thread of its own (a Jupyter
kernel's main thread runs a loop already), at most ``limit`` at a time.

The notebook's thread reads the input, hands each call to the loop and
takes each item's ``Batch`` as it ends, in the order they end; it reads no
further ahead than the items in flight.
"""

import asyncio
import collections
import os
import queue
import threading
import time

from parmagic.common.errors import RunCancelled
from parmagic.worker import async_calls
from parmagic.worker.batch import Batch
from parmagic.worker.setup import Setup

# In flight at once when the user sets no -n (aiohttp's connection limit).
DEFAULT_LIMIT = 100
# How often a background run, while waiting, checks whether it was cancelled.
_CANCEL_CHECK_EVERY = 0.1


class AsyncRun:
    """One map of a coroutine function (see the module docstring): a stream
    whose ``outcomes`` yields a ``Batch`` of one item as each ends."""

    def __init__(self, func, options, limit):
        self.func = func  # a coroutine function, or a Setup around one
        self.options = options
        self.limit = limit
        self.cancel = None  # a threading.Event: stop when set (background runs)
        self.retry = collections.deque()  # calls to run again (--retries)
        self._loop = None
        self._thread = None
        self._futures = set()
        self._done = queue.Queue()

    def outcomes(self, calls):
        __tracebackhide__ = True
        self._start_loop()
        calls = iter(calls)
        while True:
            while len(self._futures) < self.limit:
                call = self.retry.popleft() if self.retry else next(calls, None)
                if call is None:
                    break
                self._submit(*call)
            if not self._futures:
                return
            future = self._next_done()
            self._futures.discard(future)
            yield future.result()

    def resubmit(self, calls):
        """Run these ``(index, args)`` calls again (``--retries``)."""
        self.retry.extend(calls)

    def stop(self, grace):
        """Cancel the items still running (after ``grace`` seconds for them
        to end) and stop the loop; returns the batches that ended meanwhile."""
        ended = []
        deadline = time.monotonic() + grace
        while self._futures and time.monotonic() < deadline:
            try:
                future = self._done.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self._futures.discard(future)
            if not future.cancelled() and future.exception() is None:
                ended.append(future.result())
        self._futures.clear()
        if self._loop is not None:
            # the items still running end cancelled (their finally blocks run)
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._loop = None
        return ended

    # -- the loop --------------------------------------------------------------
    def _start_loop(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="parmagic-async")
        self._thread.start()

    def _submit(self, index, args):
        future = asyncio.run_coroutine_threadsafe(self._item(index, args), self._loop)
        future.add_done_callback(self._done.put)
        self._futures.add(future)

    def _next_done(self):
        if self.cancel is None:
            return self._done.get()
        while True:
            try:
                return self._done.get(timeout=_CANCEL_CHECK_EVERY)
            except queue.Empty:
                if self.cancel.is_set():
                    raise RunCancelled() from None

    async def _item(self, index, args):
        """The item's ``Batch``, made in the loop's thread."""
        outputs = {}
        started = time.time()
        func, failure = self._function(outputs, index)
        if failure is None:
            value, failure = await async_calls.call_item(func, index, args, self.options,
                                                         outputs)
        else:
            value = None
        seconds = time.time() - started
        worker = (os.getpid(), threading.get_ident())
        # no CPU time of its own: the items share the loop's thread
        return Batch([index], [value], {} if failure is None else {index: failure}, outputs,
                     span=(worker, started, seconds, 0.0))

    def _function(self, outputs, index):
        """(the coroutine function, None), or (None, SETUP's failure): with
        ``--init``, SETUP runs once on the loop's thread, before the first item."""
        if not isinstance(self.func, Setup):
            return self.func, None
        return self.func.prepared(outputs if self.options.capture else None, index)


async def _cancel_tasks():
    """Cancel every other task of the running loop and wait until they end."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
