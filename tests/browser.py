"""A real JupyterLab server and a headless Chromium reading it, for
tests/test_browser.py: what a notebook user sees, taken from the page.

    with jupyter_lab(root, home) as lab, chromium() as driver:
        notebook = Notebook.open(driver, lab, "browser.ipynb")
        notebook.run(1)
        notebook.shown(1, lambda outputs: outputs != [], "cell 1 to show something")

Both context managers check on exit that every process they started is gone
(the server's kernels and their workers, Chromium's renderers) and that none
of them left anything in /dev/shm.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import psutil
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait
from waiting import until

# Debian's chromium and chromedriver, as root, on a machine without network
# access: without the networking flags its connections are refused.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
DEBIAN_PACKAGES = "chromium chromium-driver"

# JupyterLab settings for a quiet, predictable page: every cell attached to
# the DOM, no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false", "checkForUpdates": False},
}


def missing_browser():
    """Why Chromium cannot be driven here, or None."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if not missing:
        return None
    return (f"{' and '.join(missing)} not found on PATH: install Debian's packages "
            f"{DEBIAN_PACKAGES} (apt-get install {DEBIAN_PACKAGES})")


class Lab:
    """A running JupyterLab server: its base URL and token."""

    def __init__(self, url, token):
        self.url = url
        self.token = token

    def page(self, path):
        return f"{self.url}{path}?token={self.token}"

    def post(self, path):
        request = urllib.request.Request(
            self.url + path, method="POST", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    def answers(self):
        request = urllib.request.Request(
            self.url + "api/status", headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


@contextlib.contextmanager
def jupyter_lab(root, home, startup_timeout=60):
    """Serve the folder ``root`` with JupyterLab on 127.0.0.1; yield a Lab.

    Jupyter's and IPython's own folders are made under ``home``, so no
    setting of the user's is read and nothing of theirs is written. On exit
    the server is shut down (kernels included) and every process it started
    must be gone, leaving nothing in /dev/shm.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"))
    settings = home / "config" / "lab" / "user-settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token = secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={free_port()}", f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}", "--ServerApp.terminals_enabled=False",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    lab = None
    try:
        lab = wait_for_server(server, home / "runtime", token, log_path, startup_timeout)
        yield lab
    finally:
        stop_server(server, lab)


def free_port():
    """A port free now. Should it be taken before the server binds it, the
    server tries the next ones, and its runtime file says which it got."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(server, runtime, token, log_path, seconds):
    """The Lab once its server answers; fail with its log if it exits."""
    found = {}

    def answers():
        if server.poll() is not None:
            raise AssertionError(f"JupyterLab exited ({server.returncode}):\n"
                                 + log_path.read_text()[-3000:])
        for info in runtime.glob("jpserver-*.json"):
            with contextlib.suppress(ValueError):  # still being written
                found["lab"] = Lab(json.loads(info.read_text())["url"], token)
        return "lab" in found and found["lab"].answers()

    until(answers, "JupyterLab to answer", seconds, every=0.1)
    return found["lab"]


def stop_server(server, lab):
    """Shut the server down through its API (it shuts its kernels down),
    then check that it and everything it started have ended."""
    started = descendants(server.pid)
    if lab is None:  # it never answered
        server.terminate()
    else:
        with contextlib.suppress(OSError):
            lab.post("api/shutdown")
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
    ended_or_killed(started, "the JupyterLab server (its kernels and their workers)")
    pids = {process.pid for process in started} | {server.pid}
    try:  # loky's resource tracker, among them, removes what the kernel left
        until(lambda: not shm_entries_of(pids), "the kernels' files in /dev/shm to go",
              seconds=10)
    except AssertionError as error:
        error.add_note(f"left in /dev/shm: {shm_entries_of(pids)}")
        raise


def descendants(pid):
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children(recursive=True)
    return []


def ended_or_killed(processes, owner, timeout=20):
    """Wait for ``processes`` to end; kill and report any still alive."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    assert not alive, f"{owner} left processes running: {alive}"


def shm_entries_of(pids):
    """Entries of /dev/shm whose names carry one of ``pids`` (loky's
    semaphores, joblib's and parmagic's folders)."""
    pattern = re.compile(r"(?<!\d)(" + "|".join(map(str, pids)) + r")(?!\d)")
    with contextlib.suppress(FileNotFoundError):
        return sorted(name for name in os.listdir("/dev/shm") if pattern.search(name))
    return []


def chromium_shm_entries():
    with contextlib.suppress(FileNotFoundError):
        return {name for name in os.listdir("/dev/shm") if "chromium" in name.lower()}
    return set()


@contextlib.contextmanager
def chromium(width=900, height=1000):
    """A headless Chromium driven by chromedriver, with a fresh profile;
    on exit it is quit, its processes have ended and its profile is gone."""
    shm_before = chromium_shm_entries()
    with tempfile.TemporaryDirectory(prefix="parmagic-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",
                                      f"--window-size={width},{height}"):
            options.add_argument(flag)
        service = Service(shutil.which("chromedriver"))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            yield driver
        finally:
            started = [psutil.Process(service.process.pid)] + descendants(service.process.pid)
            try:
                driver.quit()
            finally:
                ended_or_killed(started, "Chromium")
    left = chromium_shm_entries() - shm_before
    assert not left, f"Chromium left files in /dev/shm: {left}"


# What the page shows for one cell, read in one go (the page cannot change
# half way): its prompt, and each output with its MIME type, text and
# whether a widget progress bar in it is visible.
CELL_STATE = """
const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[arguments[0]];
const visible = (element) => {
    const box = element.getBoundingClientRect();
    const style = getComputedStyle(element);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden'
        && style.display !== 'none';
};
return {
    prompt: cell.querySelector('.jp-InputPrompt').textContent.trim(),
    outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(output => ({
        mime: output.dataset.mimeType || null,
        text: output.innerText,
        result: !!output.closest('.jp-OutputArea-executeResult'),
        progress: [...output.querySelectorAll('.widget-hprogress .progress')].some(visible),
    })),
};
"""

KERNEL_IDLE = """
const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
const kernel = panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel;
return !!(panel && panel.context && panel.context.isReady && kernel && kernel.status === 'idle');
"""

RUN_CELL = """
const notebook = window.jupyterapp.shell.currentWidget.content;
notebook.activeCellIndex = arguments[0];
notebook.deselectAll();
window.jupyterapp.commands.execute('notebook:run-cell');
"""

# A screenshot shows the cell, not JupyterLab's selection marks (the active
# cell's blue bar and toolbar); the cell is scrolled to the top so that all
# of it is in the window.
SCREENSHOT_LOOK = """
if (!document.getElementById('parmagic-screenshot-look')) {
    const style = document.createElement('style');
    style.id = 'parmagic-screenshot-look';
    style.textContent = '.jp-cell-toolbar { display: none !important; }'
        + ' .jp-Collapser, .jp-Collapser-child { background: none !important; }';
    document.head.appendChild(style);
}
arguments[0].scrollIntoView({block: 'start'});
"""


class Notebook:
    """A notebook open in JupyterLab, read the way its user reads it."""

    def __init__(self, driver, screenshots=None):
        self.driver = driver
        self.screenshots = screenshots  # a folder, or None: no screenshots

    @classmethod
    def open(cls, driver, lab, name, screenshots=None, seconds=60):
        """Open ``name`` (relative to the server's root), wait for its kernel
        to be idle and fold the side panels away."""
        driver.get(lab.page(f"lab/tree/{name}"))
        notebook = cls(driver, screenshots)
        notebook.wait(lambda: driver.execute_script(
            "return !!document.querySelector('.jp-Notebook .jp-CodeCell')"
            " && !!window.jupyterapp"), f"{name} to be shown", seconds)
        notebook.wait(lambda: driver.execute_script(KERNEL_IDLE), "its kernel to start", seconds)
        driver.execute_script("window.jupyterapp.shell.collapseLeft();"
                              "window.jupyterapp.shell.collapseRight();")
        return notebook

    def wait(self, condition, what, seconds=30):
        """Return ``condition()``'s first true value; fail after ``seconds``."""
        try:
            return WebDriverWait(self.driver, seconds, poll_frequency=0.05).until(
                lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"after {seconds} s, still waiting for {what}") from None

    def run(self, index):
        """Run cell ``index``, as Shift+Enter would, without waiting."""
        before = self.state(index)["prompt"]
        self.driver.execute_script(RUN_CELL, index)
        # "[*]:" while it runs, a new number once it has (a quick cell may
        # go from one to the other between two looks)
        self.wait(lambda: self.state(index)["prompt"] != before, f"cell {index} to start", 10)

    def state(self, index):
        return self.driver.execute_script(CELL_STATE, index)

    def finished(self, index):
        """Whether cell ``index`` has run: its prompt shows a number."""
        return re.fullmatch(r"\[\d+\]:", self.state(index)["prompt"]) is not None

    def outputs(self, index, seconds=60):
        """Cell ``index``'s outputs once it has finished (see CELL_STATE)."""
        self.wait(lambda: self.finished(index), f"cell {index} to finish", seconds)
        return self.state(index)["outputs"]

    def shown(self, index, condition, what, seconds=10):
        """Cell ``index``'s outputs once it has finished and they satisfy
        ``condition`` (a widget is drawn a little after its output arrives);
        fail after ``seconds``, with the outputs last seen."""
        outputs = self.outputs(index)

        def satisfied():
            nonlocal outputs
            outputs = self.state(index)["outputs"]
            return condition(outputs)

        try:
            self.wait(satisfied, what, seconds)
        except AssertionError as error:
            error.add_note(f"cell {index} shows: {outputs}")
            raise
        return outputs

    def cell(self, index):
        return self.driver.find_elements("css selector", ".jp-Notebook .jp-CodeCell")[index]

    def screenshot(self, index, name):
        """Save cell ``index`` as it looks now to ``screenshots/name``, when
        screenshots were asked for."""
        if self.screenshots is None:
            return
        cell = self.cell(index)
        self.driver.execute_script(SCREENSHOT_LOOK, cell)
        cell.screenshot(str(Path(self.screenshots) / name))
