"""Driving a real ipykernel through jupyter_client, for the kernel tests."""

import contextlib
import glob
import os
import queue
import re
import shutil
import tempfile
import time

import psutil
from jupyter_client.manager import start_new_kernel
from processes import worker_processes

WIDGET = "application/vnd.jupyter.widget-view+json"
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
# A test sends each cell after the last one's reply, so no cell is queued
# behind a failing one for the kernel to abort. Asking it to abort anyway
# races in ipykernel (ipykernel#609): a cell sent at once after an error
# reply was sometimes answered "aborted", unrun.
STOP_ON_ERROR = False


def shown_traceback(content):
    """The traceback of an error reply or message (its ``content``), as the
    user reads it: lines joined, colours left out."""
    return ANSI_CODES.sub("", "\n".join(content["traceback"]))


class Kernel:
    """A live kernel and what it printed for each executed cell."""

    def __init__(self, manager, client):
        self.manager = manager
        self.client = client

    @property
    def process(self):
        return psutil.Process(self.manager.provisioner.process.pid)

    def execute(self, code, timeout=60, on_output=None):
        """Run ``code``; return (reply content, list of (kind, text) outputs).
        ``on_output`` is called with each (kind, text) as it comes.

        An error gives two outputs: "error" (``Name: value``) and
        "traceback" (the traceback as the user reads it, without colours).

        A displayed ipywidget (a progress bar) has the kind "widget"; the
        full data of every display is kept in ``self.displays``.
        """
        outputs = []
        self.displays = []

        def collect(message):
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                outputs.append((content["name"], content["text"]))
            elif kind in ("execute_result", "display_data"):
                data = content["data"]
                self.displays.append(data)
                if WIDGET in data:
                    kind = "widget"
                outputs.append((kind, data.get("text/plain", "")))
            elif kind == "error":
                outputs.append(("error", f"{content['ename']}: {content['evalue']}"))
                outputs.append(("traceback", shown_traceback(content)))
            if on_output is not None and outputs:
                on_output(*outputs[-1])

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect,
                                                stop_on_error=STOP_ON_ERROR)
        return reply["content"], outputs

    def interrupt_after(self, code, seconds, timeout=60):
        """Start ``code``, interrupt the kernel after ``seconds``; return the
        reply content and how long the kernel took to answer the interrupt."""
        drain(self.client.iopub_channel)
        message_id = self.client.execute(code, stop_on_error=STOP_ON_ERROR)
        time.sleep(seconds)
        interrupted_at = time.monotonic()
        self.manager.interrupt_kernel()
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == message_id:
                return reply["content"], time.monotonic() - interrupted_at

    def workers(self):
        """The kernel's live worker processes (loky's resource tracker aside)."""
        return worker_processes(self.process)

    def leftovers(self):
        """What parmagic made for this kernel and has not removed, by kind:
        its shared store's folders (``/dev/shm/parmagic_PID_*``, or in its
        temporary folder), with their files, and the folders it makes for
        workers to connect to (``parmagic-*``, removed once they have).
        The kernel has a temporary folder of its own (``running_kernel``),
        so another kernel on the machine cannot add to what is found."""
        pid = self.process.pid
        stores = glob.glob(f"/dev/shm/parmagic_{pid}_*") + glob.glob(
            os.path.join(self.tmpdir, f"parmagic_{pid}_*"))
        return {
            "store": {folder: sorted(os.listdir(folder)) for folder in stores},
            "sockets": glob.glob(os.path.join(self.tmpdir, "parmagic-*")),
        }

    def text(self, code, timeout=60):
        """Everything ``code`` showed, as one string; fails on a kernel error."""
        reply, outputs = self.execute(code, timeout)
        shown = "".join(text for _, text in outputs)
        assert reply["status"] == "ok", f"{reply['status']}: {shown}"
        return shown


@contextlib.contextmanager
def running_kernel(startup_timeout=60):
    """Start a kernel; on exit shut it down and check that every process it
    started (workers included) is gone."""
    tmpdir = tempfile.mkdtemp(prefix="parmagic-test-kernel-")
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=startup_timeout,
                                       env={**os.environ, "TMPDIR": tmpdir})
    kernel = Kernel(manager, client)
    kernel.tmpdir = tmpdir
    descendants = []
    try:
        yield kernel
        left = kernel.leftovers()  # while the kernel's pid is still its own
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            descendants = kernel.process.children(recursive=True)
        client.stop_channels()
        manager.shutdown_kernel(now=False)
        _, alive = psutil.wait_procs(descendants, timeout=20)
        for process in alive:
            process.kill()
    try:
        assert not alive, f"the kernel left processes running: {alive}"
        # and none it started after its children were listed (a worker the
        # warm-up was starting as the kernel exited): they carry its TMPDIR
        late = started_by(tmpdir)
        _, late = psutil.wait_procs(late, timeout=20)
        for process in late:
            process.kill()
        assert not late, f"the kernel left processes running after it exited: {late}"
        left_after = {"store": [path for path in left["store"] if os.path.exists(path)],
                      "sockets": [path for path in left["sockets"] if os.path.exists(path)]}
        assert left_after == {"store": [], "sockets": []}, (
            f"the kernel left parmagic's folders behind: {left_after}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def parmagic_kernel(*cells):
    """``running_kernel`` with parmagic loaded and ``cells`` run in it."""
    with running_kernel() as kernel:
        kernel.text("%load_ext parmagic")
        for cell in cells:
            kernel.text(cell)
        yield kernel


def started_by(tmpdir):
    """Live processes whose environment has TMPDIR=``tmpdir``."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get("TMPDIR") == tmpdir:
                found.append(process)
    return found


def drain(channel):
    with contextlib.suppress(queue.Empty):
        while True:
            channel.get_msg(timeout=0.1)
