"""OpLens's job layer: every profile, optimize, search, sweep, generate, import and peaks measurement a front end
starts runs as a job in its own worker process (`python -m profiler.jobs '<payload>'`), timed ones through one fair
queue.

    protocol.py   the messages a worker writes (JSON lines) and the server reads, defined once
    kinds.py      what each kind is (timeout, timed or not, what it saves) and the @job registry
    worker.py     the worker's entry point and the profiler's own job functions
    executors.py  the local executor (a child process) and how a worker's death is worded
    ray_executor.py  the same on a Ray cluster (OPLENS_EXECUTOR=ray)
    manager.py    the queue, the watchers, the job records under <runs_dir>/jobs/, and the executor's choice
"""
from profiler.jobs.kinds import KINDS, Kind, job
from profiler.jobs.manager import DuplicateJob, Job, JobManager, QueueFull

__all__ = ["KINDS", "Kind", "job", "DuplicateJob", "Job", "JobManager", "QueueFull"]
