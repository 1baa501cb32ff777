"""A workshop's load on one server, measured in one run: N participants at once in one headless Chromium (N browser
contexts), each picking a name, profiling bert-tiny from Lesson 1, following the Next links to Lesson 3, applying
the first precision it offers (one this CPU runs natively) and reading the result, while a probe loads a page again
and again to see how the server answers when it is busy.

Prints completed jobs, failures with their reasons, the median and p95 wait (click to result on screen, so queueing
for the measurement lock included), the page response time while jobs were running, and the server's peak RSS
(alone, and with its worker processes). Loopback only; bounded by --sessions and --timeout-s.

    python benchmarks/workshop_load.py [--sessions 20] [--timeout-s 1200]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dashboard.lessons import precision_tries  # noqa: E402
from profiler import devices  # noqa: E402
from profiler.console import format_table  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
DONE_PROFILE = "Check your understanding"  # Lesson 1 draws its question once the run is there
DONE_APPLY = re.compile(r"Applying and measuring: done|Speedup is the fp32 median")
FAILED = re.compile(r"failed:")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, OPLENS_RUNS_DIR=str(runs), OPLENS_LOCK_FILE=str(runs / "measure.lock"))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise SystemExit("the streamlit server did not start within 90 s")


def stop_server(proc: subprocess.Popen) -> None:
    """The server and the job processes it started."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


class PeakRss(threading.Thread):
    """Samples the server's RSS, and with its children, every half second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.server, self.total = psutil.Process(pid), 0, 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(0.5):
            try:
                own = self.process.memory_info().rss
                kids = sum(c.memory_info().rss for c in self.process.children(recursive=True))
            except psutil.Error:
                continue
            self.server, self.total = max(self.server, own), max(self.total, own + kids)


async def wait_for(page, pattern, seconds: float) -> None:
    """Until `pattern` shows; a job's failure message ends the wait with its text."""
    done = page.get_by_text(pattern).first
    failed = page.get_by_text(FAILED).first
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await done.count() and await done.is_visible():
            return
        if await failed.count():
            raise RuntimeError((await failed.inner_text()).splitlines()[0][:200])
        await asyncio.sleep(0.5)
    raise TimeoutError(f"'{pattern}' not shown within {seconds:.0f} s")


async def participant(browser, url: str, i: int, deadline: float, waits: list, failures: list, busy: list) -> int:
    """One person's workshop: name, profile, apply the first precision Lesson 3 offers (one this CPU runs natively),
    read the result. Returns the jobs it completed."""
    # no animations: twenty browsers share the server's two cores here, and spinners repainting cost them
    context = await browser.new_context(viewport={"width": 1300, "height": 900}, reduced_motion="reduce")
    page = await context.new_page()
    completed, step = 0, "open Lesson 1"
    try:
        await page.goto(f"{url}/learn_time?name=p{i:02d}")
        step = "click Profile"
        await page.get_by_role("button", name=re.compile("Profile bert-tiny now")).click(timeout=120_000)
        start, step = time.monotonic(), "wait for the profile"
        await wait_for(page, DONE_PROFILE, deadline - time.monotonic())
        waits.append(time.monotonic() - start)
        completed += 1
        for lesson in ("2 · Compute", "3 · Precision"):  # the lessons' Next links, in the same browser session
            step = f"open {lesson}"
            await page.get_by_role("link", name=re.compile(f"Next: {lesson}")).click(timeout=120_000)
        label = FIRST_TRY  # the precision this CPU runs natively (lessons.precision_tries puts it first)
        step = f"click Try {label}"
        await page.get_by_role("button", name=f"Try {label}", exact=True).click(timeout=120_000)
        start, step = time.monotonic(), f"wait for {label}"
        await wait_for(page, DONE_APPLY, deadline - time.monotonic())
        waits.append(time.monotonic() - start)
        completed += 1
    except Exception as exc:  # noqa: BLE001 - a failed session is a result of the benchmark, counted with its reason
        failures.append(f"p{i:02d} at '{step}': {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        busy[0] -= 1
        await context.close()
    return completed


FIRST_TRY = precision_tries(devices.emulated_precisions())[0][0]
PAGE_LIMIT_S = 120  # a probe page load slower than this counts as not served


async def probe(browser, url: str, busy: list, times: list, slow: list) -> None:
    """Load a page from scratch, again and again, while any participant is still working."""
    context = await browser.new_context(reduced_motion="reduce")
    page = await context.new_page()
    try:
        while busy[0] > 0:
            start = time.monotonic()
            try:
                await page.goto(f"{url}/runs?name=probe", timeout=PAGE_LIMIT_S * 1000)
                await page.get_by_role("heading", name="Runs").first.wait_for(timeout=PAGE_LIMIT_S * 1000)
            except Exception:  # noqa: BLE001 - a page that did not come is a measurement (counted at the limit)
                slow[0] += 1
            if busy[0] > 0:
                times.append(time.monotonic() - start)
            await asyncio.sleep(2)
    finally:
        await context.close()


async def drive(url: str, sessions: int, timeout_s: float) -> dict:
    from playwright.async_api import async_playwright

    waits, failures, response, busy, slow = [], [], [], [0], [0]
    deadline = time.monotonic() + timeout_s
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            busy[0] = sessions  # each participant counts itself out when it ends
            tasks = asyncio.gather(*[participant(browser, url, i, deadline, waits, failures, busy)
                                     for i in range(sessions)])
            probing = asyncio.create_task(probe(browser, url, busy, response, slow))
            done = await asyncio.wait_for(tasks, timeout=timeout_s + 60)
            await probing
        finally:
            await browser.close()
    return {"completed": sum(done), "waits": waits, "failures": failures, "response": response, "slow": slow[0]}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20, help="participants at once (default 20)")
    ap.add_argument("--timeout-s", type=float, default=1200, help="the whole run's limit (default 1200)")
    a = ap.parse_args()
    if not 1 <= a.sessions <= 50:
        raise SystemExit("--sessions: between 1 and 50")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM}")
    runs = Path(tempfile.mkdtemp(prefix="oplens-workshop-load-"))
    server, url = start_server(runs)
    rss = PeakRss(server.pid)
    rss.start()
    began = time.monotonic()
    try:
        result = asyncio.run(drive(url, a.sessions, a.timeout_s))
    finally:
        rss.stopped.set()
        stop_server(server)
        shutil.rmtree(runs, ignore_errors=True)
    elapsed = time.monotonic() - began
    waits, response = result["waits"], result["response"]
    rows = [["participants", str(a.sessions)],
            ["jobs completed", f"{result['completed']} of {2 * a.sessions}"],
            ["failures", str(len(result["failures"]))],
            ["wait, click to result: median (s)", f"{statistics.median(waits):.1f}" if waits else "-"],
            ["wait, click to result: p95 (s)", f"{p95(waits):.1f}" if waits else "-"],
            ["page load while busy: median (s)", f"{statistics.median(response):.2f}" if response else "-"],
            ["page load while busy: p95 (s)", f"{p95(response):.2f}" if response else "-"],
            ["page loads measured while busy", str(len(response))],
            [f"page loads not served within {PAGE_LIMIT_S} s", str(result["slow"])],
            ["server peak RSS (MiB)", f"{rss.server / 2**20:,.0f}"],
            ["server + job processes peak RSS (MiB)", f"{rss.total / 2**20:,.0f}"],
            ["wall time (s)", f"{elapsed:.0f}"]]
    print(f"CPU: {psutil.cpu_count()} logical cores; load average at the end {os.getloadavg()[0]:.1f}")
    print(format_table(rows, ["measure", "value"]))
    for line in result["failures"]:
        print(f"failure: {line}")
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
