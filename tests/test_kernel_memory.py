"""When memory runs out, a worker dies, not the kernel: a live kernel in a
memory cgroup of its own (Linux, as root: skipped elsewhere) holds a large
array, an item eats memory until the system's out-of-memory killer acts,
and the kernel, its data and its next run survive, the item is named and
the cause is said."""

import contextlib
import glob
import os
import re
import uuid

import pytest
from kernel import running_kernel

LIMIT_MB = 700
HELD_MB = 300  # the notebook's data: larger than a worker when it is killed


def _cgroup_root():
    """(memory cgroup folder, whether it is cgroup v2), or None."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "/sys/fs/cgroup", True
    if os.path.isdir("/sys/fs/cgroup/memory"):
        return "/sys/fs/cgroup/memory", False
    return None


@pytest.fixture
def small_memory():
    """A new memory cgroup limited to LIMIT_MB (removed after), as its
    ``cgroup.procs`` path."""
    root = _cgroup_root()
    if root is None or os.geteuid() != 0:
        pytest.skip("needs Linux memory cgroups and root")
    folder, v2 = os.path.join(root[0], f"parmagic-test-{uuid.uuid4().hex[:8]}"), root[1]
    try:
        os.mkdir(folder)
        limit = str(LIMIT_MB * 2**20)
        if v2:
            _write(os.path.join(folder, "memory.max"), limit)
            _write(os.path.join(folder, "memory.swap.max"), "0")
        else:
            _write(os.path.join(folder, "memory.limit_in_bytes"), limit)
            with contextlib.suppress(OSError):  # gone from newer kernels: then new
                # allocations alone count, which is what the test makes
                _write(os.path.join(folder, "memory.move_charge_at_immigrate"), "3")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.rmdir(folder)
        pytest.skip(f"cannot make a memory cgroup here: {exc}")
    try:
        yield os.path.join(folder, "cgroup.procs")
    finally:
        # running_kernel has waited for every process of the kernel to end
        os.rmdir(folder)


def _write(path, text):
    with open(path, "w") as file:
        file.write(text)


def _memory_eater():
    return (
        "def eat(x):\n"
        "    if x == 2:\n"
        "        blocks = []\n"
        "        while True:  # until the system stops this process\n"
        "            blocks.append(bytearray(b'x' * (16 * 2**20)))\n"
        "    return x\n"
    )


def test_out_of_memory_kills_the_worker_and_the_kernel_keeps_its_data(small_memory):
    with running_kernel() as kernel:
        _write(small_memory, str(kernel.process.pid))  # its workers start in it too
        kernel.text("%load_ext parmagic")
        kernel.text(f"import numpy\nheld = numpy.ones({HELD_MB} * 2**20 // 8)\n"
                    + _memory_eater())
        reply, outputs = kernel.execute("results = %pmap -n 2 --no-progress eat range(4)",
                                        timeout=120)
        shown = "".join(text for _, text in outputs)
        assert reply["status"] == "error", shown
        assert reply["ename"] == "WorkerCrashError"
        # item 2, and the item the other worker ran: loky loses both
        assert re.search(r"ran out of memory .* while it ran items? (\d, )?2\b", shown), shown
        assert "The notebook is fine" in shown
        # the kernel lived through it, with its data, and maps again
        assert kernel.text("print(held.sum() == held.size)").strip() == "True"
        assert kernel.text("print(2 in _parmap.errors)").strip() == "True"
        assert kernel.text("%pmap -n 2 --no-progress abs [-1, -2, -3]").strip() == "[1, 2, 3]"
        assert not glob.glob(f"/dev/shm/parmagic_{kernel.process.pid}_*/*")
        workers = kernel.workers()
        assert workers and all(_oom_score_adj(worker) == 1000 for worker in workers)
        assert _oom_score_adj(kernel.process) == 0


def _oom_score_adj(process):
    with open(f"/proc/{process.pid}/oom_score_adj") as file:
        return int(file.read())
