"""The local executor: a job's worker command as a child process of this server (`OPLENS_EXECUTOR=local`, the
default), and how a worker's death is worded. The Ray executor (ray_executor.py) has the same signature,
run(command, on_message, cancel, timeout_s, env) -> exit code, on_message getting each JSON line; the manager picks
one (manager.executor)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Callable

Executor = Callable[..., int]
TIMED_OUT = 124  # the exit code of a command stopped at its timeout, as timeout(1) reports it
GRACE_S = 5.0  # after SIGINT, how long a worker gets to stop at its next iteration before it is killed
MEMORY_KILL = (-9, 137)


def death(code: int | None) -> str:
    """Why a worker process ended without reporting an outcome, from its exit code."""
    if code in MEMORY_KILL:
        return "it was killed, most likely for running out of memory"
    if code is not None and code < 0:
        try:
            return f"it crashed with {signal.Signals(-code).name}"
        except ValueError:
            return f"it was ended by signal {-code}"
    return f"exit code {code}"


def died(process: str, code: int | None, last_words: str = "", why: str = "") -> str:
    """The failure of a worker that ended without a final message: '<process> died (<why>). Last words: ...',
    `why` defaulting to what its exit code says. Every executor's caller words it this one way."""
    return f"{process} died ({why or death(code)})" + (f". Last words: {last_words}" if last_words else "")


def run_local(command: list[str], on_message: Callable[[dict], None], cancel: threading.Event,
              timeout_s: float | None = None, env: dict | None = None, log_path: str | None = None) -> int:
    """Run `command` as a child process in its own process group; `cancel` (or the timeout) sends SIGINT, then kills
    the group after GRACE_S (a model stuck in native code never sees SIGINT). Stderr goes to `log_path`."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                start_new_session=True)  # so a kill reaches compile workers the job started
    finally:
        if log_path:
            log.close()
    timed_out = threading.Event()
    stopper = threading.Thread(target=_stop_when_asked, args=(proc, cancel, timeout_s, timed_out), daemon=True)
    stopper.start()
    for line in proc.stdout:
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue  # a model printing to stdout: not ours
        if isinstance(data, dict):
            on_message(data)
    code = proc.wait()
    stopper.join(timeout=GRACE_S + 1)
    return TIMED_OUT if timed_out.is_set() else code


def _stop_when_asked(proc: subprocess.Popen, cancel: threading.Event, timeout_s: float | None,
                     timed_out: threading.Event) -> None:
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while proc.poll() is None:
        if cancel.wait(0.2) or (deadline is not None and time.monotonic() > deadline):
            if not cancel.is_set():
                timed_out.set()
            _signal(proc, signal.SIGINT)
            try:
                proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
            return


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
