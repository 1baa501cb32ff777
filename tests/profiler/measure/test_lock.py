import subprocess
import sys
import time

import pytest

from profiler.measure.lock import measurement_lock
from profiler.schema import ProfileCancelled

HOLD = ("import sys, time; from profiler.measure.lock import measurement_lock\nwith measurement_lock():\n"
        "    print('held', flush=True); time.sleep(float(sys.argv[1]))")


def _holder(seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_process_waits_for_the_lock():
    p = _holder(1.0)
    waited = []
    t0 = time.monotonic()
    with measurement_lock(waiting=waited.append, poll_s=0.05):
        elapsed = time.monotonic() - t0
    p.wait()
    assert waited and elapsed >= 0.5


def test_waiting_can_be_cancelled():
    p = _holder(5.0)
    try:
        def give_up(seconds):
            raise ProfileCancelled("cancelled while waiting")
        with pytest.raises(ProfileCancelled):
            with measurement_lock(waiting=give_up):
                pass
    finally:
        p.kill()
        p.wait()
