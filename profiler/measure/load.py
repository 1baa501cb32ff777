"""How busy the machine was while we timed: CPU time other processes took (system-wide busy time minus this
process's own) and a VM's steal time, read with psutil around the timed region.

A timing taken while others keep a core busy is not this model's speed: on 2 shared cores one neighbour halves what
the model gets (a fp32 BERT-base measured 304 ms and 3,770 ms minutes apart on such a machine). BUSY_SHARE names
when that matters (profiler.stats).
"""
from __future__ import annotations

import time

from profiler.schema import MachineLoad
from profiler.stats import BUSY_SHARE, STEAL_SHARE, describe_load


def _busy_seconds(t) -> float:
    # guest time is already inside user time on Linux; idle and iowait are not busy
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _own_seconds(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)


class LoadMeter:
    """Started at construction; `result()` gives the load since then."""

    def __init__(self):
        try:
            import psutil
        except ImportError:  # psutil is a dependency; without it there is nothing to say
            self.psutil = None
            return
        self.psutil = psutil
        self.proc = psutil.Process()
        self.t0 = time.monotonic()
        self.sys0 = psutil.cpu_times()
        self.own0 = _own_seconds(self.proc)

    def result(self) -> MachineLoad | None:
        if self.psutil is None:
            return None
        wall = time.monotonic() - self.t0
        sys1 = self.psutil.cpu_times()
        cores = self.psutil.cpu_count() or 1
        busy = _busy_seconds(sys1) - _busy_seconds(self.sys0)
        own = _own_seconds(self.proc) - self.own0
        total = sum(sys1) - sum(self.sys0) - (getattr(sys1, "guest", 0.0) - getattr(self.sys0, "guest", 0.0))
        steal = getattr(sys1, "steal", 0.0) - getattr(self.sys0, "steal", 0.0)
        other = max(0.0, busy - own) / wall if wall > 0 else 0.0
        load = MachineLoad(seconds=wall, cores=cores, other_cores=other,
                           steal_share=steal / total if total > 0 else 0.0)
        load.busy = other >= BUSY_SHARE * cores or load.steal_share >= STEAL_SHARE
        load.text = describe_load(load)
        return load
