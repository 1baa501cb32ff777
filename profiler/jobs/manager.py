"""The machine's jobs, as one server process holds them: timed work waits in one fair queue (first come, first
served, at most OPLENS_MAX_QUEUED waiting per participant, one measuring at a time), each job runs in a worker
process watched by a thread, and every job's record is kept as <runs_dir>/jobs/<id>.json so a reloaded page, a new
session or a restarted server finds it. No Streamlit here: the dashboard holds one JobManager per runs dir."""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from profiler import policy, store
from profiler.jobs import executors, kinds
from profiler.jobs.protocol import Cancelled, Done, Failed, Message, Progress, Saved, decode
from profiler.models import sources
from profiler.schema import OpLensError, ProfileConfig

SLOTS = 1  # timed jobs running at once on this machine: one, or they disturb each other's timings
RECENT = 10  # finished jobs of a kind whose durations make its estimate
WRITE_EVERY_S = 2.0  # progress alone rewrites a job's record at most this often


class QueueFull(OpLensError):
    """A participant already has as many jobs waiting as the queue allows."""


class DuplicateJob(OpLensError):
    """The participant already has the same job queued or running: `job` is that one."""

    def __init__(self, message: str, job: "Job"):
        super().__init__(message)
        self.job = job


def _intent(payload: dict) -> str:
    """What a job is asked to do, to tell two submissions of the same intent apart from two different jobs."""
    return json.dumps(payload, sort_keys=True, default=str)


@dataclass
class Job:
    id: str
    kind: str  # a key of profiler.jobs.kinds.KINDS
    spec: str
    payload: dict
    participant: str = ""
    status: str = "queued"  # queued, running, done, failed, cancelled
    stage: str = "waiting in the queue"
    fraction: float = 0.0
    error: str = ""  # why it failed, and what it had saved
    message: str = ""  # the outcome in words once it ended, what was saved included
    result: Any = None  # what the job function returned: a run id, a list of rows, a saved record as a dict
    saved: list[list[str]] = field(default_factory=list)  # [what, id] in the order the worker saved them
    submitted: float = field(default_factory=time.time)
    started: float = 0.0
    finished: float = 0.0
    timeout_s: float = 0.0
    server: str = ""  # "host:pid" of the server process that runs it
    owner: str = ""  # who asked: the participant, or a browser session without a name (one job per intent each)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def timed(self) -> bool:
        return self.kind in kinds.KINDS and kinds.KINDS[self.kind].timed

    @property
    def run_id(self) -> str:
        return self.result if isinstance(self.result, str) else ""

    @property
    def elapsed_s(self) -> float:
        """Seconds it has run (or ran); 0 while queued."""
        if not self.started:
            return 0.0
        return (self.finished or time.time()) - self.started

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "cancel"}

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        names = {f.name for f in dataclasses.fields(cls)} - {"cancel"}
        return cls(**{k: v for k, v in data.items() if k in names})


def _max_queued() -> int:
    raw = os.environ.get("OPLENS_MAX_QUEUED") or "3"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise OpLensError(f"OPLENS_MAX_QUEUED must be a whole number of at least 1, not '{raw}'")
    return value


def _alive(server: str) -> bool:
    """Whether the server process named "host:pid" still runs; a server on another host is assumed alive."""
    host, _, pid = server.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_env() -> dict:
    """This process's environment, with this OpLens first on the path: the worker runs the same code as the server,
    whatever its working directory."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def duration_text(seconds: float) -> str:
    """A duration as a person reads it: '45 s', '2 min 5 s', '1 h 3 min'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class JobManager:
    """The jobs of one server process, shared by every session (the dashboard keeps one per runs dir)."""

    def __init__(self, runs_dir: str | os.PathLike | None = None, max_queued: int | None = None,
                 executor: str | None = None):
        self.root = store.runs_dir(runs_dir)
        self.folder = self.root / store.JOBS
        self.max_queued = max_queued if max_queued is not None else _max_queued()
        self.executor = executor
        self.server = f"{socket.gethostname()}:{os.getpid()}"
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._written: dict[str, float] = {}
        self._load()
        with self._lock:
            self._pump()

    # -- submitting and cancelling -------------------------------------------------------------------------------

    def submit(self, spec: str, config: ProfileConfig | None = None, runs_dir: str | os.PathLike | None = None,
               arch: str | None = None, kind: str = "profile", participant: str = "", timeout_s: float | None = None,
               owner: str | None = None, **extra) -> Job:
        """Queue a job of `kind` on model `spec` (timed kinds wait their turn; others start at once); `extra` goes
        to the job function (passes, budget_s, ...). QueueFull when `participant` already has enough waiting;
        DuplicateJob when `owner` (default: the participant) has the same job queued or running."""
        owner = participant if owner is None else owner
        what = kinds.kind_of(kind)
        executor(self.executor)  # a wrong OPLENS_EXECUTOR is refused now, not after the wait
        if what.loads_model:  # a model the server may not load is refused now, in one line (the worker checks again)
            policy.check_server_model(spec, sources.catalogue_names())
        payload = {"kind": kind, "spec": spec, "config": config.to_dict() if config else None,
                   "runs_dir": str(runs_dir or self.root), "arch": arch, "participant": participant, **extra}
        timeout = float(timeout_s or what.timeout_s + float(extra.get("budget_s") or 0))
        with self._lock:
            same = next((j for j in self._all() if j.active and j.owner == owner and j.kind == kind
                         and _intent(j.payload) == _intent(payload)), None)
            if same is not None:  # a double click, Enter then the button, a reloaded page: one job per intent
                raise DuplicateJob(f"the same {kind} of {spec} is already {same.status} (job {same.id}): its result "
                                   "will show here; cancel it on the Queue page to start it again", same)
            if what.timed:
                mine = [j for j in self._all() if j.active and j.timed and j.participant == participant]
                if len(mine) >= self.max_queued:
                    who = f"{participant} has" if participant else "you have"
                    raise QueueFull(f"{who} {len(mine)} jobs queued or running already, the most allowed "
                                    f"(OPLENS_MAX_QUEUED={self.max_queued}); wait for one to finish or cancel one")
            job = Job(id=uuid.uuid4().hex[:10], kind=kind, spec=spec, payload=payload, participant=participant,
                      timeout_s=timeout, server=self.server, owner=owner)
            self._jobs[job.id] = job
            self._write(job)
            if what.timed:
                self._pump()
            else:
                self._start(job)
        return job

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job at once, or a running one at its next iteration; says what happened."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return f"no job '{job_id}'"
            if not job.active:
                return f"job {job_id} already ended ({job.status})"
            if job.server != self.server:
                return f"job {job_id} runs under another server process ({job.server})"
            job.cancel.set()
            if job.status == "queued":
                self._end(job, "cancelled", kinds.outcome(job.kind, "cancelled before it started", []))
                return job.message
            job.stage = "cancelling after the current iteration ..."
            return job.stage

    def clear_queue(self) -> int:
        """Cancel every job still waiting (running ones finish); how many were cancelled. For the instructor."""
        with self._lock:
            waiting = [j for j in self.queue() if j.status == "queued" and j.server == self.server]
            for job in waiting:
                self.cancel(job.id)
            return len(waiting)

    # -- reading ---------------------------------------------------------------------------------------------------

    def _all(self) -> list[Job]:
        with self._lock:  # sessions read while other sessions submit: never iterate the dict while it grows
            return list(self._jobs.values())

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id) if job_id else None

    def jobs(self, participant: str | None = None) -> list[Job]:
        """Every job known here, newest first; only `participant`'s when given."""
        out = [j for j in self._all() if participant is None or j.participant == participant]
        return sorted(out, key=lambda j: j.submitted, reverse=True)

    def latest(self, participant: str, kind: str) -> Job | None:
        """`participant`'s newest job of `kind`: what a reloaded page shows again."""
        return next((j for j in self.jobs(participant) if j.kind == kind), None)

    def queue(self) -> list[Job]:
        """Timed jobs not yet ended: the running ones, then the waiting ones in the order they are served."""
        active = [j for j in self._all() if j.active and j.timed]
        running = sorted((j for j in active if j.status == "running"), key=lambda j: j.started)
        return running + sorted((j for j in active if j.status == "queued"), key=lambda j: j.submitted)

    def position(self, job: Job) -> int | None:
        """0 while it runs, 1 for the next to run, ...; None when it is not in the queue."""
        waiting = [j.id for j in self.queue() if j.status == "queued"]
        if job.status == "running" and job.timed:
            return 0
        return waiting.index(job.id) + 1 if job.id in waiting else None

    def estimate_s(self, job: Job) -> float:
        """How long the job should take: its search budget, else the median of recent finished jobs of its kind
        here, else a typical figure for the kind."""
        if job.payload.get("budget_s"):
            return float(job.payload["budget_s"])
        recent = [j.finished - j.started for j in self.jobs() if j.kind == job.kind and j.status == "done"
                  and j.started and j.finished][:RECENT]
        return statistics.median(recent) if recent else kinds.KINDS[job.kind].typical_s

    def remaining_s(self, job: Job) -> float:
        """Estimated seconds until it ends once running (0 when past its estimate)."""
        return max(0.0, self.estimate_s(job) - job.elapsed_s)

    def wait_s(self, job: Job) -> float:
        """Estimated seconds until a queued job starts: what runs now, then every job ahead of it."""
        ahead = []
        for j in self.queue():
            if j.id == job.id:
                break
            ahead.append(self.remaining_s(j) if j.status == "running" else self.estimate_s(j))
        return sum(ahead) / SLOTS if job.status == "queued" else 0.0

    def waiting_text(self, job: Job) -> str:
        """Where the job stands, in words: its place in the queue and estimated wait, or how long it has run."""
        if job.status == "running":
            return (f"{job.stage} (running for {duration_text(job.elapsed_s)}, "
                    f"about {duration_text(self.remaining_s(job))} left)")
        place = self.position(job)
        if job.status == "queued" and place:
            return (f"waiting in the queue: number {place}, about {duration_text(self.wait_s(job))} before it starts "
                    "(one measurement runs at a time on this machine)")
        return job.message or job.stage

    def owns(self, job: Job, viewer: str, own_ids: Iterable[str] = ()) -> bool:
        """Whether `viewer` (a participant's name; "" before one is picked) started `job`; an unnamed session owns
        only the jobs it started (`own_ids`), not every unnamed participant's."""
        return bool(viewer) and job.participant == viewer or job.id in set(own_ids)

    # -- running ---------------------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start waiting timed jobs while a slot is free (the caller holds the lock)."""
        running = sum(1 for j in self._all() if j.status == "running" and j.timed and j.server == self.server)
        waiting = [j for j in self.queue() if j.status == "queued" and j.server == self.server]
        for job in waiting[:max(0, SLOTS - running)]:
            self._start(job)

    def _start(self, job: Job) -> None:
        job.status, job.stage, job.started = "running", "starting a worker process", time.time()
        self._write(job)
        threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"oplens-job-{job.id}").start()

    def _watch(self, job: Job) -> None:
        final: list[Message] = []
        code = None

        def on_message(data: dict) -> None:
            message = decode(data)
            if isinstance(message, Progress):
                job.stage, job.fraction = message.stage, max(job.fraction, float(message.fraction))
                self._write(job, throttle=True)
            elif isinstance(message, Saved):
                job.saved.append([message.what, message.id])
                self._write(job)
            elif message is not None:
                final.append(message)

        try:
            _, run = executor(self.executor)
            command = [sys.executable, "-m", "profiler.jobs", json.dumps(job.payload)]
            log = {"log_path": str(self._log(job))} if run is executors.run_local else {}
            code = run(command, on_message, job.cancel, job.timeout_s, _worker_env(), **log)
        except OpLensError as exc:
            final.append(Failed(str(exc)))
        except Exception as exc:  # noqa: BLE001 - the watcher must record an end whatever the executor did
            final.append(Failed(f"the job could not run: {type(exc).__name__}: {exc}"))
        self._conclude(job, final[-1] if final else None, code)

    def _conclude(self, job: Job, final: Message | None, code: int | None) -> None:
        saved = [(what, ident) for what, ident in job.saved]
        if code == executors.TIMED_OUT:
            status, text = "failed", f"timed out after {job.timeout_s:.0f} s"
        elif isinstance(final, Done):
            job.result, job.fraction = final.result, 1.0
            status, text = "done", "done"
        elif isinstance(final, Cancelled) or job.cancel.is_set():
            status, text = "cancelled", "cancelled"
        elif isinstance(final, Failed):
            status, text = "failed", final.reason
        else:
            status, text = "failed", executors.died(f"the {job.kind} process", code, self._last_words(job))
        with self._lock:
            self._end(job, status, text if status == "done" else kinds.outcome(job.kind, text, saved))
            self._pump()

    def _end(self, job: Job, status: str, message: str) -> None:
        job.message, job.finished = message, time.time()
        job.stage = "done" if status == "done" else message
        job.error = message if status == "failed" else ""
        self._write(job, status=status)  # the record first: whoever sees the job ended finds it on disk
        job.status = status

    # -- records on disk -------------------------------------------------------------------------------------------

    def _log(self, job: Job) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{job.id}.log"

    def _last_words(self, job: Job) -> str:
        try:
            lines = self._log(job).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def _write(self, job: Job, throttle: bool = False, status: str | None = None) -> None:
        now = time.monotonic()
        if throttle and now - self._written.get(job.id, 0.0) < WRITE_EVERY_S:
            return
        self._written[job.id] = now
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            store.write_json(self.folder / f"{job.id}.json", {**job.to_dict(), "status": status or job.status})
        except OSError:
            pass  # a full disk must not stop the job: the record in memory still serves this server

    def _load(self) -> None:
        """Read the records a previous server left: its running jobs lost their worker (failed, saying so), its
        waiting jobs join this server's queue in their original order."""
        for f in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                job = Job.from_dict(json.loads(f.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a damaged record is not a job; the runs it saved are in the store regardless
            self._jobs[job.id] = job
            if not job.active or job.server == self.server or _alive(job.server):
                continue
            if job.status == "running":
                saved = [(what, ident) for what, ident in job.saved]
                self._end(job, "failed", kinds.outcome(
                    job.kind, "the server stopped while this job was running, so it was lost", saved))
            else:
                job.server = self.server
                self._write(job)


def executor(name: str | None = None) -> tuple[str, executors.Executor]:
    """The executor (a local child process, or Ray on another machine) named by `name` or OPLENS_EXECUTOR, imported
    only when chosen; one clear error otherwise."""
    name = (name or os.environ.get("OPLENS_EXECUTOR") or "local").strip().lower()
    if name == "local":
        return name, executors.run_local
    if name == "ray":
        try:
            ray_executor = importlib.import_module("profiler.jobs.ray_executor")
        except ModuleNotFoundError as exc:
            if exc.name == "ray" or (exc.name or "").startswith("ray."):
                raise OpLensError("OPLENS_EXECUTOR=ray needs Ray: pip install 'ray[default]'") from None
            raise OpLensError("OPLENS_EXECUTOR=ray, but this OpLens has no profiler.jobs.ray_executor") from None
        return name, ray_executor.run
    raise OpLensError(f"OPLENS_EXECUTOR='{name}' is not an executor; use local or ray")
