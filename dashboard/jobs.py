"""Background profiling jobs. Each job runs `python -m profiler.worker` in a child process, watched by a thread of the
server: the UI stays responsive, jobs survive page switches, the server's reruns do not disturb the timing, and a
model that crashes or is killed for memory takes only its own process down. No Streamlit here."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from profiler import ProfileConfig

MEMORY_KILL = (-9, 137)


WORKERS = {"profile": "profiler.worker", "check": "optimizers.worker", "optimize": "optimizers.worker",
           "search": "optimizers.worker"}


@dataclass
class Job:
    id: str
    kind: str  # a key of WORKERS
    spec: str
    payload: dict
    status: str = "queued"  # queued, running, done, failed, cancelled
    stage: str = "starting"
    fraction: float = 0.0
    error: str = ""
    result: object = None  # what the worker returned: a run id (profile), a list of pass rows (check), a saved
    # comparison as a dict (optimize, search)
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def run_id(self) -> str:
        return self.result if isinstance(self.result, str) else ""


class JobManager:
    """Holds the jobs of one server process; one instance shared by every session (st.cache_resource)."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, spec: str, config: ProfileConfig, runs_dir: str | None = None, arch: str | None = None,
               kind: str = "profile", **extra) -> Job:
        """Start a job of `kind` on model `spec`; `extra` goes to the worker (passes, budget_s, ...)."""
        payload = {"kind": kind, "spec": spec, "config": config.to_dict(), "runs_dir": runs_dir, "arch": arch, **extra}
        job = Job(id=uuid.uuid4().hex[:10], kind=kind, spec=spec, payload=payload)
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"oplens-job-{job.id}").start()
        return job

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancel.set()

    def _watch(self, job: Job) -> None:
        job.status, job.stage = "running", "starting a worker process"
        proc = subprocess.Popen(
            [sys.executable, "-m", WORKERS[job.kind], json.dumps(job.payload)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        stderr: list[str] = []
        drain = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
        drain.start()
        stopper = threading.Thread(target=self._forward_cancel, args=(job, proc), daemon=True)
        stopper.start()
        final = None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue  # a model printing to stdout: not ours
            if "progress" in msg:
                job.stage, job.fraction = msg["progress"], max(job.fraction, float(msg.get("fraction", 0)))
            else:
                final = msg
        code = proc.wait()
        drain.join(timeout=5)
        if final and "done" in final:
            job.result, job.status, job.stage, job.fraction = final["done"], "done", "done", 1.0
        elif final and "cancelled" in final:
            job.status, job.stage = "cancelled", "cancelled; nothing was saved"
        elif final and "failed" in final:
            job.status, job.error = "failed", final["failed"]
        elif job.cancel.is_set():
            job.status, job.stage = "cancelled", "cancelled; nothing was saved"
        else:
            why = "it was killed, most likely for running out of memory" if code in MEMORY_KILL else f"exit code {code}"
            tail = "".join(stderr[-3:]).strip().splitlines()
            job.status = "failed"
            job.error = (f"the {job.kind} process died ({why}); nothing was saved"
                         + (f". Last words: {tail[-1]}" if tail else ""))
        job.finished = time.time()

    @staticmethod
    def _forward_cancel(job: Job, proc: subprocess.Popen) -> None:
        while proc.poll() is None:
            if job.cancel.wait(0.2):
                try:
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
                return
