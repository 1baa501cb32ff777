"""OpLens's job layer: every profile, optimize, search, sweep, generate and import a front end starts runs as a
job in its own worker process (`python -m profiler.jobs '<payload>'`), timed ones through one fair queue.

    protocol.py   the messages a worker writes (JSON lines) and the server reads, defined once
    kinds.py      what each kind is (timeout, timed or not, what it saves) and the @job registry
    worker.py     the worker's entry point and the profiler's own job functions
    executors.py  where the worker runs: a local child process, or Ray (OPLENS_EXECUTOR)
    manager.py    the queue, the watchers and the job records under <runs_dir>/jobs/
"""
from profiler.jobs.kinds import KINDS, Kind, job
from profiler.jobs.manager import Job, JobManager, QueueFull

__all__ = ["KINDS", "Kind", "job", "Job", "JobManager", "QueueFull"]
