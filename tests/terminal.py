"""Running an .ipy script through the ``ipython`` command, as a terminal
user would, for the terminal tests."""

import os
import subprocess
import sys
from pathlib import Path


def run_ipython(tmp_path, script, timeout=180):
    """Run ``script`` with the ipython command in ``tmp_path``; return
    (stdout, stderr). No display, so matplotlib cannot open windows."""
    path = tmp_path / "session.ipy"
    path.write_text(script)
    ipython = Path(sys.executable).with_name("ipython")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    done = subprocess.run(
        [str(ipython), "--no-banner", "--colors=nocolor", str(path)],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env,
    )
    return done.stdout, done.stderr
