"""Background profiling jobs: a job runs in its own thread, outside any page's script run, so the UI stays responsive
and a job survives page switches. Progress and cancellation go through the profiler's own hooks. No Streamlit here."""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

import profiler
from profiler import OpLensError, ProfileCancelled, ProfileConfig


@dataclass
class Job:
    id: str
    spec: str
    config: ProfileConfig
    runs_dir: str | None
    arch: str | None = None
    status: str = "queued"  # queued, running, done, failed, cancelled
    stage: str = "queued"
    fraction: float = 0.0
    error: str = ""
    run_id: str = ""
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class JobManager:
    """Holds the jobs of one server process; one instance shared by every session (st.cache_resource)."""

    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, spec: str, config: ProfileConfig, runs_dir: str | None = None, arch: str | None = None) -> Job:
        job = Job(id=uuid.uuid4().hex[:10], spec=spec, config=config, runs_dir=runs_dir, arch=arch)
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"oplens-job-{job.id}").start()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancel.set()

    def _progress(self, job: Job):
        def update(stage: str, fraction: float):
            job.stage, job.fraction = stage, max(job.fraction, fraction) if stage != "done" else 1.0
        return update

    def _run(self, job: Job) -> None:
        job.status, job.stage = "running", "loading the model"
        try:
            loaded = profiler.load_model(job.spec, batch_size=job.config.batch_size or None,
                                         seq_len=job.config.seq_len or None, arch=job.arch)
            if job.cancel.is_set():
                raise ProfileCancelled("profiling cancelled")
            run = profiler.profile(loaded, job.config, progress=self._progress(job), cancel=job.cancel)
            profiler.store.save(run, job.runs_dir)
            job.run_id, job.status, job.stage, job.fraction = run.id, "done", "done", 1.0
        except ProfileCancelled:
            job.status, job.stage = "cancelled", "cancelled; nothing was saved"
        except OpLensError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must still reach the page as a message, not kill the thread
            job.status = "failed"
            job.error = f"unexpected {type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            job.finished = time.time()
