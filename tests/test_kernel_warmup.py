"""The pool starts in the background when the extension loads, in a live
kernel: the first call finds warm workers, and a kernel that exits at once
(mid start-up) leaves no process behind."""


from kernel import running_kernel
from waiting import until


def wait_for_workers(kernel, count, seconds=60):
    until(lambda: len(kernel.workers()) >= count, f"{count} warm workers", seconds, every=0.05)
    return {worker.pid for worker in kernel.workers()}


def test_loading_the_extension_starts_the_workers_the_first_call_uses():
    with running_kernel() as kernel:
        assert kernel.workers() == []
        kernel.text("%load_ext parmagic")
        warm = wait_for_workers(kernel, 2)
        shown = kernel.text("import os\n"
                            "pids = %pmap -n 2 --no-progress (lambda x: os.getpid()) range(8)\n"
                            f"print(set(pids) <= {warm!r})")
        assert shown == "True\n"


def test_a_kernel_that_exits_while_the_pool_starts_leaves_nothing():
    # on exit running_kernel checks that no process it started is left,
    # also those started after the exit began (they carry its TMPDIR)
    with running_kernel() as kernel:
        kernel.text("%load_ext parmagic")


def test_warm_pool_can_be_turned_off():
    with running_kernel() as kernel:
        kernel.text("%config ParMagic.warm_pool = False\n%load_ext parmagic")
        # the warm-up would run in this thread, started by %load_ext: none is
        assert kernel.text("import threading\n"
                           "print(any(t.name == 'parmagic-warm-pool'"
                           " for t in threading.enumerate()))") == "False\n"
        assert kernel.workers() == []
        assert kernel.text("r = %pmap -n 2 --no-progress abs [-1]\nprint(r)") == "[1]\n"
