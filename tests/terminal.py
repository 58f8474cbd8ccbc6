"""Running an .ipy script through the ``ipython`` command, as a terminal
user would, for the terminal tests."""

import os
import subprocess
import sys
from pathlib import Path


def run_ipython(tmp_path, script, timeout=180, tmpdir=None):
    """Run ``script`` with the ipython command in ``tmp_path`` (and with
    ``tmpdir`` as its TMPDIR, if given); return (stdout, stderr). No
    display, so matplotlib cannot open windows."""
    env = _environment()
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    done = subprocess.run(_command(tmp_path, script), capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)
    return done.stdout, done.stderr


def run_ipython_answering(tmp_path, script, awaited, answer, timeout=180):
    """``run_ipython``, reading stdout as it comes: ``answer()`` is called
    once a line containing ``awaited`` has been printed. Returns (stdout
    lines, stderr)."""
    process = subprocess.Popen(_command(tmp_path, script), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env=_environment())
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if awaited in line:
                answer()
        stderr = process.stderr.read()
        process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    return lines, stderr


def _command(tmp_path, script):
    path = tmp_path / "session.ipy"
    path.write_text(script)
    ipython = Path(sys.executable).with_name("ipython")
    return [str(ipython), "--no-banner", "--colors=nocolor", str(path)]


def _environment():
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
