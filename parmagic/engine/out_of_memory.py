"""Telling a worker the system killed for memory from one that crashed.

A process the out-of-memory killer stops dies of SIGKILL, as one killed by
hand does. Linux counts the processes it killed for memory (``oom_kill``
in ``/proc/vmstat``, for the whole machine and every memory cgroup in it),
so a run notes the count as it starts, and a worker dead of SIGKILL while
the count went up was most likely killed for memory.
"""


def kills():
    """How many processes Linux has killed for memory since it started, or
    None where that is not known (not Linux, an old kernel)."""
    try:
        with open("/proc/vmstat", "rb") as file:
            for line in file:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def killed_since(count):
    """Whether a process was killed for memory since ``kills()`` gave
    ``count``."""
    now = kills()
    return count is not None and now is not None and now > count
