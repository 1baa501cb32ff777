"""The Queue page's tables: the machine's queue and a participant's recent jobs, as rows a person reads (other
participants' model names hidden unless the viewer is the instructor). Built from what the job layer knows."""
from __future__ import annotations

import time
from typing import Iterable

from profiler.jobs.manager import SLOTS, JobManager, duration_text


def queue_rows(jobs: JobManager, viewer: str = "", instructor: bool = False, own_ids: Iterable[str] = ()) -> list[dict]:
    """The queue as table rows for `viewer`: other participants' model names hidden unless `instructor`."""
    # position, wait_s and estimate_s per row, in one pass: the Queue page redraws this every second in every
    # session, and each of those rebuilds the queue and reads the whole job history again
    rows, own_ids, estimates = [], set(own_ids), {}
    ahead_s, waiting = 0.0, 0
    for job in jobs.queue():
        key = (job.kind, job.payload.get("budget_s"))
        if key not in estimates:
            estimates[key] = jobs.estimate_s(job)
        own = jobs.owns(job, viewer, own_ids)
        queued = job.status == "queued"
        waiting += queued
        wait = ahead_s / SLOTS if queued else 0.0
        ahead_s += estimates[key] if queued else jobs.remaining_s(job)
        rows.append({"position": waiting if queued else 0, "kind": job.kind,
                     "model": job.spec if own or instructor else "(hidden)",
                     "participant": (job.participant or "-") + (" (you)" if own else ""),
                     "state": job.status, "elapsed": duration_text(job.elapsed_s),
                     "starts in": duration_text(wait) if queued else "running",
                     "ends in": duration_text(wait + estimates[key] if queued else jobs.remaining_s(job)),
                     "id": job.id})
    return rows

def history_rows(jobs: JobManager, viewer: str, own_ids: Iterable[str] = (), limit: int = 10) -> list[dict]:
    """`viewer`'s ended jobs, newest first, as table rows: what each did and what it saved."""
    rows = []
    own_ids = set(own_ids)
    for job in [j for j in jobs.jobs() if not j.active and jobs.owns(j, viewer, own_ids)][:limit]:
        rows.append({"when": time.strftime("%H:%M:%S", time.localtime(job.submitted)), "kind": job.kind,
                     "model": job.spec, "state": job.status, "took": duration_text(job.elapsed_s),
                     "outcome": job.message, "saved": ", ".join(ident for _, ident in job.saved)})
    return rows
