"""Limits on each loky worker process of a run: how much memory of its own
it may have (``max_memory``, see ``memory_limit``) and how many items it
runs before a fresh process takes its place (``max_tasks_per_worker``, see
``channels``). Both act on worker processes parmagic starts and watches,
so a run without them (another backend, or one worker) refuses them
rather than ignore them."""

from typing import NamedTuple

from parmagic.common.errors import ParmagicInputError
from parmagic.common.switches import switches
from parmagic.engine import memory_limit


class WorkerLimits(NamedTuple):
    max_memory: int | None = None  # bytes
    max_tasks: int | None = None  # items

    def refuse(self, backend, n_jobs):
        """Raise for a run whose items do not run on loky's workers."""
        names = [name for name, value in zip(("max_memory", "max_tasks_per_worker"), self)
                 if value is not None]
        if names:
            raise ParmagicInputError(
                f"{' and '.join(names)} limit{'s' if len(names) == 1 else ''} loky's "
                f"worker processes, and this run has none (backend {backend!r}, "
                f"{n_jobs} worker(s)): drop the limit, or run on the default "
                "backend with n_jobs > 1")


def checked(max_memory=None, max_tasks_per_worker=None):
    """The limits as given to ``pmap``, checked: a size (see
    ``memory_limit.parse_size``) and a whole number of items, at least 1."""
    max_tasks = max_tasks_per_worker
    if max_tasks is not None and (
        isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1
    ):
        raise ParmagicInputError(
            f"max_tasks_per_worker must be a whole number of items, at least 1 "
            f"(or None: workers are never replaced), got {max_tasks!r}")
    if max_tasks is not None and not switches.direct_channels:
        raise ParmagicInputError(
            "max_tasks_per_worker replaces workers through parmagic's direct "
            "channels, which are switched off (switches.direct_channels, "
            "%config ParMagic.direct_channels): switch them on, or drop the limit")
    return WorkerLimits(memory_limit.parse_size(max_memory), max_tasks)
