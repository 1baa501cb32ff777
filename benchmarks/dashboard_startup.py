"""Dashboard cold start and page-switch times, measured in one run in a real headless Chromium.

Cold start: from launching `streamlit run dashboard/app.py` until the Profile page is visible in the browser.
Page switch: from clicking a page in the sidebar until that page's main content (its chart or metrics) is drawn,
with a saved run selected; median of --repeats switches. Uses a BERT-base run so the Graph page draws a big graph.

    python benchmarks/dashboard_startup.py [--model bert-base] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import profiler
from profiler.console import format_table

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
# page -> what marks it as drawn
PAGES = {"Overview": ".js-plotly-plot", "Operators": ".js-plotly-plot", "Graph": ".js-plotly-plot .scatterlayer",
         "Timeline": ".js-plotly-plot", "Why slow?": "text=Usually fixed by", "Runs": "[data-testid='stDataFrame']",
         "System": "[data-testid='stMetric']"}


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bert-base")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="oplens-bench-runs-"))
    print(f"profiling {a.model} for the page-switch part ...", file=sys.stderr)
    run = profiler.profile(profiler.load_model(a.model), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0,
                                                                                profile_iters=1))
    profiler.store.save(run, runs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OPLENS_RUNS_DIR=str(runs))
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True,
                                    args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port",
                                   str(port), "--server.headless", "true"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            t_health = time.perf_counter() - t0
            page.goto(url)
            page.get_by_text("Profile a model").first.wait_for(timeout=60_000)
            cold = time.perf_counter() - t0
            rows = [["cold start: server up", f"{t_health:.2f}"], ["cold start: Profile page visible", f"{cold:.2f}"]]
            for name, marker in PAGES.items():
                times = []
                for _ in range(a.repeats):
                    page.get_by_role("link", name="Profile", exact=True).click()
                    page.get_by_text("Profile a model").first.wait_for()
                    start = time.perf_counter()
                    page.get_by_role("link", name=name, exact=True).click()
                    page.locator(marker).first.wait_for(timeout=60_000)
                    times.append(time.perf_counter() - start)
                rows.append([f"switch to {name}", f"{statistics.median(times):.2f}"])
        finally:
            server.terminate()
            server.wait()
            browser.close()
    print(f"{a.model}: {len(run.graph.nodes)} graph nodes, {len(run.ops)} operators; CPU {run.device.name}, "
          f"{run.device.threads} threads")
    print(format_table(rows, ["step", "seconds"]))
    shutil.rmtree(runs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
