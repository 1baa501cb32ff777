"""TensorBoard with the PyTorch profiler plugin (torch-tb-profiler) over the run store, bound to localhost.

Each saved run is a folder holding its `*.pt.trace.json.gz`, which is the layout the plugin reads: one plugin run per
OpLens run. start() returns the running process; the CLI waits on it, the dashboard leaves it in the background.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from profiler.schema import OpLensError
from profiler.store import runs_dir

HOST = "127.0.0.1"
DEFAULT_PORT = 6006


@dataclass
class TensorBoard:
    process: subprocess.Popen
    url: str
    logdir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def available() -> str:
    """Empty when TensorBoard and the plugin are installed, else what to install."""
    try:
        import tensorboard  # noqa: F401
        import torch_tb_profiler  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed: pip install tensorboard torch-tb-profiler"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def command(logdir: str | os.PathLike, port: int) -> list[str]:
    exe = shutil.which("tensorboard")
    base = [exe] if exe else [sys.executable, "-m", "tensorboard.main"]
    return base + ["--logdir", str(logdir), "--host", HOST, "--port", str(port)]


def start(root: str | os.PathLike | None = None, port: int = DEFAULT_PORT, wait_s: float = 60.0,
          log: str | os.PathLike | None = None) -> TensorBoard:
    """Start TensorBoard on the run store (default $OPLENS_RUNS_DIR or ./runs) at http://127.0.0.1:<port>/ and wait
    until it answers. Raises OpLensError when it is not installed, the store is missing, or it does not come up."""
    missing = available()
    if missing:
        raise OpLensError(missing)
    logdir = runs_dir(root).resolve()
    if not logdir.is_dir():
        raise OpLensError(f"no run store at {logdir}: save a run first (python -m profiler profile ...)")
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(command(logdir, port), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    tb = TensorBoard(process=proc, url=f"http://{HOST}:{port}/", logdir=logdir)
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise OpLensError(f"tensorboard exited with code {proc.returncode} (is port {port} in use? try --port)")
            try:
                with urllib.request.urlopen(tb.url + "data/plugins_listing", timeout=2):
                    return tb
            except OSError:
                time.sleep(0.5)
    except BaseException:  # a Ctrl-C or SIGTERM while it starts stops it too
        tb.stop()
        raise
    tb.stop()
    raise OpLensError(f"tensorboard did not answer on {tb.url} within {wait_s:.0f} s")
