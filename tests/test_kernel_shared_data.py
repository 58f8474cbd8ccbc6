"""A large notebook global read by every item, in a live kernel: sent once
through shared memory, never stale (also once it is watched for writes
instead of hashed), and nothing left in /dev/shm once the
kernel exits, also after a worker was killed."""

import os

from kernel import parmagic_kernel
from platforms import needs_posix

CELL = '''
import os, signal
import numpy as np
BIG = np.arange(4_000_000, dtype=float)  # 32 MB

def part(i):
    if i == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return float(BIG[i::4].sum())

KILL_AT = -1
expected = lambda: [float(BIG[i::4].sum()) for i in range(4)]
'''


@needs_posix("SIGKILL")
def test_a_global_array_goes_once_is_never_stale_and_is_removed_at_exit():
    with parmagic_kernel(CELL) as kernel:
        shown = kernel.text("r = %pmap -t -n 2 --no-progress part range(4)\nprint(r == expected())")
        assert "32.0 MB into shared memory, 0 B already there" in shown
        assert shown.endswith("True\n")
        shown = kernel.text("r = %pmap -t -n 2 --no-progress part range(4)\nprint(r == expected())")
        assert "0 B into shared memory, 32.0 MB already there" in shown
        # unchanged runs in a row: the kernel watches BIG for writes instead
        # of hashing it (write_watch); one element written must still count
        shown = kernel.text("r = %pmap -n 2 --no-progress part range(4)\n"
                            "r = %pmap -n 2 --no-progress part range(4)\n"
                            "BIG[2_000_000] = -1.0\n"
                            "r = %pmap -n 2 --no-progress part range(4)\n"
                            "print(r == expected())")
        assert shown == "True\n"
        shown = kernel.text("BIG += 1\nr = %pmap -n 2 --no-progress part range(4)\n"
                            "print(r == expected())")
        assert shown == "True\n"  # the in-place change is seen
        reply, _ = kernel.execute("KILL_AT = 2\n%pmap -n 2 --no-progress part range(4)")
        assert reply["ename"] == "WorkerCrashError"
        shown = kernel.text("KILL_AT = -1\nr = %pmap -n 2 --no-progress part range(4)\n"
                            "print(r == expected())\n"
                            "from parmagic.data.shared_data import store\nprint(store().folder)")
        ok, folder = shown.split()
        assert ok == "True" and os.path.isdir(folder)
    assert not os.path.exists(folder)  # the kernel has exited
