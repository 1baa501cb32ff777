"""The viewer commands clean up on every exit path: stopped with SIGTERM (a service manager, a workshop script) as
with Ctrl-C, `python -m profiler tensorboard` and `explore` stop the server they started in a session of their own,
free its port and remove their temporary files."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profiler.viewers import tensorboard as tb_mod

ROOT = Path(__file__).resolve().parents[3]


def _start(args, tmp_path, ready: str, timeout=120):
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "profiler", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if ready in line:
            return proc, lines
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"no '{ready}' line: {''.join(lines)} {proc.stderr.read()}")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _children_gone(pid: int) -> bool:
    """No process left whose parent was `pid` (the server ran in its own session, so a group kill misses it)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{pid}\n" in status.read_text():
                return False
        except OSError:
            pass
    return True


def _stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_sigterm_stops_tensorboard_and_frees_its_port(tiny_bert_run, tmp_path):
    if tb_mod.available():
        pytest.skip(tb_mod.available())
    _, root = tiny_bert_run
    port = tb_mod.free_port()
    proc, _ = _start(["tensorboard", "--runs-dir", str(root), "--port", str(port)], tmp_path, "open http")
    assert not _port_free(port)
    assert _stop(proc) == 0
    deadline = time.monotonic() + 10
    while not _port_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _port_free(port), "TensorBoard still holds its port after SIGTERM"
    assert _children_gone(proc.pid)


def test_sigterm_stops_model_explorer_and_removes_its_files(tiny_bert_run, tmp_path):
    pytest.importorskip("model_explorer")
    run, root = tiny_bert_run
    proc, lines = _start(["explore", run.id, "--runs-dir", str(root)], tmp_path, "Model Explorer: open")
    port = int(lines[-1].split("127.0.0.1:", 1)[1].split("/", 1)[0])
    assert list((tmp_path / "tmp").glob("oplens-explorer-*"))  # its files, while it serves
    assert _stop(proc) == 0
    assert list((tmp_path / "tmp").glob("oplens-explorer-*")) == []
    assert _port_free(port) and _children_gone(proc.pid)
