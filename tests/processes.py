"""Finding the worker processes a test started, and waiting for them to stop."""

import psutil

import parmagic


def worker_processes(root=None):
    """Live descendants of ``root`` (default: this process) other than
    loky's resource tracker, which joblib keeps for the life of its parent."""
    root = root or psutil.Process()
    workers = []
    for child in root.children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.NoSuchProcess:
            pass
    return workers


def stop_workers_and_wait(timeout=20):
    """Shut the pool down; return any process still alive after ``timeout``."""
    parmagic.shutdown_workers()
    _, alive = psutil.wait_procs(worker_processes(), timeout=timeout)
    return alive
