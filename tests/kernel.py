"""Driving a real ipykernel through jupyter_client, for the kernel tests."""

import contextlib
import glob
import os
import queue
import re
import time

import psutil
from jupyter_client.manager import start_new_kernel
from processes import worker_processes

WIDGET = "application/vnd.jupyter.widget-view+json"
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")


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

    def execute(self, code, timeout=60):
        """Run ``code``; return (reply content, list of (kind, text) outputs).

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

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect)
        return reply["content"], outputs

    def interrupt_after(self, code, seconds, timeout=60):
        """Start ``code``, interrupt the kernel after ``seconds``; return the
        reply content and how long the kernel took to answer the interrupt."""
        drain(self.client.iopub_channel)
        message_id = self.client.execute(code)
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

    def temp_folders(self):
        """joblib's memmapping folders of the kernel process, with the files
        in each. The pool keeps one empty folder of its own while it lives."""
        pattern = f"joblib_memmapping_folder_{self.process.pid}_*"
        folders = glob.glob(f"/dev/shm/{pattern}") + glob.glob(f"/tmp/{pattern}")
        return {folder: os.listdir(folder) for folder in folders}

    def text(self, code, timeout=60):
        """Everything ``code`` showed, as one string; fails on a kernel error."""
        reply, outputs = self.execute(code, timeout)
        shown = "".join(text for _, text in outputs)
        assert reply["status"] == "ok", shown
        return shown


@contextlib.contextmanager
def running_kernel(startup_timeout=60):
    """Start a kernel; on exit shut it down and check that every process it
    started (workers included) is gone."""
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=startup_timeout)
    kernel = Kernel(manager, client)
    try:
        yield kernel
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            descendants = kernel.process.children(recursive=True)
        client.stop_channels()
        manager.shutdown_kernel(now=False)
        _, alive = psutil.wait_procs(descendants, timeout=20)
        for process in alive:
            process.kill()
        assert not alive, f"the kernel left processes running: {alive}"


@contextlib.contextmanager
def parmagic_kernel(*cells):
    """``running_kernel`` with parmagic loaded and ``cells`` run in it."""
    with running_kernel() as kernel:
        kernel.text("%load_ext parmagic")
        for cell in cells:
            kernel.text(cell)
        yield kernel


def drain(channel):
    with contextlib.suppress(queue.Empty):
        while True:
            channel.get_msg(timeout=0.1)
