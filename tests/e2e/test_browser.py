"""A person's first visit, in a real headless Chromium: start the server, profile the tiny BERT from the Profile page,
then read Overview, Operators and Graph. Screenshots land in the test's temp dir (and $OPLENS_SHOTS if set)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]
sync_api = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = dict(os.environ, OPLENS_RUNS_DIR=str(tmp_path / "runs"), OPLENS_LOCK_FILE=str(tmp_path / "lock"))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + (proc.stdout.read() if proc.stdout else ""))
    yield url, tmp_path / "runs"
    proc.terminate()
    proc.wait(timeout=20)


def shot(page, tmp_path, name):
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("OPLENS_SHOTS"):
        Path(os.environ["OPLENS_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", Path(os.environ["OPLENS_SHOTS"]) / f"{name}.png")


def no_exception_box(page):
    assert page.locator('[data-testid="stException"]').count() == 0


def test_profile_tiny_bert_and_explore(server, tmp_path):
    url, runs = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("Profile a model").first.wait_for(timeout=30_000)
        shot(page, tmp_path, "1-profile")
        page.get_by_role("button", name="Profile").click()
        page.get_by_text("profiled and saved as run").wait_for(timeout=180_000)
        no_exception_box(page)
        shot(page, tmp_path, "2-done")
        [run_dir] = [d for d in runs.iterdir() if (d / "run.json").is_file()]
        run = json.loads((run_dir / "run.json").read_text())
        assert run["model"]["name"] == "bert-tiny"

        # the sidebar shows every page, the lessons included, with nothing folded away
        assert page.get_by_role("link", name="1 · Where does the time go?").is_visible()
        assert page.get_by_text("View", exact=False).filter(has_text="more").count() == 0

        page.get_by_role("link", name="Open Overview").click()
        page.get_by_test_id("stMetricLabel").filter(has_text="Median latency").wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        coverage = f"{100 * run['totals']['coverage']:.1f}%"
        assert page.get_by_text(coverage, exact=True).count() >= 1
        assert page.get_by_text("bert-tiny (registry)").count() >= 1
        # one story: the breakdown is of the median, and the line says what operator times are
        median = f"{run['latency']['median_ms']:.3g} ms"
        assert page.locator(".js-plotly-plot text", has_text=f"Where the {median} median inference went").count() == 1
        assert page.get_by_text(f"{median} median", exact=False).count() >= 1
        no_exception_box(page)
        shot(page, tmp_path, "3-overview")

        page.get_by_role("link", name="Operators").click()
        page.get_by_text("Filter by name", exact=True).wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        assert page.get_by_text(f"of {len(run['ops'])} operators").count() == 1
        assert page.get_by_text(f"of the {median} median", exact=False).count() >= 1
        assert page.locator(".js-plotly-plot text", has_text="aten::addmm").count() >= 1  # the top-k bar chart
        no_exception_box(page)
        shot(page, tmp_path, "4-operators")

        page.get_by_role("link", name="Graph").click()
        page.get_by_test_id("stCaptionContainer").filter(has_text="Captured with").wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        assert page.get_by_text(f"{len(run['graph']['nodes'])} nodes").count() >= 1
        assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 5  # node markers are drawn
        no_exception_box(page)
        shot(page, tmp_path, "5-graph")

        page.get_by_role("link", name="Why slow?").click()
        measure = page.get_by_role("button", name="Measure this machine's peaks")
        headroom = page.get_by_test_id("stMetricLabel").filter(has_text="Headroom")
        measure.or_(headroom).first.wait_for(timeout=60_000)
        if measure.count():  # a fresh machine: the peaks are measured once, as a job
            measure.click()
        headroom.wait_for(timeout=180_000)
        value = page.get_by_test_id("stMetricValue").nth(2).inner_text()
        assert float(value.split()[0]) <= run["latency"]["median_ms"]  # a part of the median, never more
        assert page.get_by_text("Mostly bound by").count() == 1
        no_exception_box(page)
        shot(page, tmp_path, "5b-why-slow")

        page.get_by_role("link", name="1 · Where does the time go?").click()
        page.get_by_text("The headline: Overview").wait_for(timeout=30_000)
        assert page.get_by_text("of the median", exact=False).count() >= 1
        no_exception_box(page)
        shot(page, tmp_path, "5c-lesson-1")

        # an engineer's trace recorded elsewhere: a truncated one is named, a real one is drawn
        data = ROOT / "tests" / "data"
        cut = tmp_path / "cut.pt.trace.json.gz"
        cut.write_bytes((data / "alexnet_a100.pt.trace.json.gz").read_bytes()[:2000])
        page.get_by_role("link", name="Timeline").click()
        page.get_by_text("A trace file").click()
        page.locator("input[type=file]").set_input_files(str(cut))
        page.get_by_text("The trace could not be read").wait_for(timeout=30_000)
        no_exception_box(page)
        page.locator("input[type=file]").set_input_files(str(data / "alexnet_a100.pt.trace.json.gz"))
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        assert page.locator(".js-plotly-plot .legendtext", has_text="kernel").count() >= 1
        no_exception_box(page)
        shot(page, tmp_path, "6-foreign-trace")

        # apply one pass on the Optimize page and read its proof
        page.get_by_role("link", name="Optimize").click()
        page.get_by_text("Passes, in the order they run").wait_for(timeout=60_000)
        page.get_by_test_id("stMultiSelect").locator("input").fill("dynamic-int8")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        shot(page, tmp_path, "7a-optimize-chosen")
        page.get_by_role("button", name="Apply and measure").click()
        page.get_by_test_id("stMetricLabel").filter(has_text="Speedup").wait_for(timeout=180_000)
        assert page.get_by_text("PASS", exact=True).count() >= 1  # bert-tiny's logits survive dynamic int8
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=30_000)
        no_exception_box(page)
        shot(page, tmp_path, "7-optimize")

        # a generation, profiled from the page (it was CLI only), with a decoder that works here by default
        page.get_by_role("link", name="Generate").click()
        page.get_by_text("Profile a generation").first.wait_for(timeout=30_000)
        page.get_by_label("Decoder (a causal LM", exact=False).fill("llama-tiny")
        page.get_by_label("New tokens").first.fill("4")
        page.get_by_role("button", name="Profile the generation").click()
        page.get_by_test_id("stMetricLabel").filter(has_text="TPOT").wait_for(timeout=240_000)
        assert page.locator(".js-plotly-plot .xtitle", has_text="decode step").count() >= 1  # axes with units
        no_exception_box(page)
        shot(page, tmp_path, "8-generate")

        # training steps, profiled from the Train page: the step by phase, categories and memory over a step
        page.get_by_role("link", name="Train", exact=True).click()
        page.get_by_text("Profile training steps").first.wait_for(timeout=30_000)
        page.get_by_label("Model (sample name or file.py:factory)").fill("mlp-tiny")
        page.get_by_label("Steps").first.fill("2")
        page.get_by_role("button", name="Profile training").click()
        page.get_by_test_id("stMetricLabel").filter(has_text="Step (median)").wait_for(timeout=240_000)
        page.locator(".js-plotly-plot .gtitle", has_text="Memory over one step").wait_for(timeout=30_000)
        no_exception_box(page)
        shot(page, tmp_path, "8b-train")
        # a training pass applied from the same page: its speedup per sample, the loss agreement and the curves
        page.get_by_role("button", name="Apply and prove").click()
        page.locator(".js-plotly-plot .gtitle", has_text="Loss curves").wait_for(timeout=240_000)
        page.get_by_text("per sample (").first.wait_for(timeout=30_000)
        no_exception_box(page)
        shot(page, tmp_path, "8c-train-pass")

        # every other page opens from the sidebar and draws without an exception
        for link, heading in (("Runs", "Runs"), ("Queue", "Queue"), ("System", "System"),
                              ("2 · Compute vs data movement", "Lesson 2 · Compute vs data movement"),
                              ("3 · Precision", "Lesson 3 · Precision: fp32, bf16 or int8?"),
                              ("4 · Compilation and fusion", "Lesson 4 · Compilation and fusion"),
                              ("5 · Batch size", "Lesson 5 · Batch size, throughput and latency"),
                              ("6 · Training: where does a step go?", "Lesson 6 · Training: where does a step go?"),
                              ("Class leaderboard", "Class leaderboard")):
            page.get_by_role("link", name=link, exact=True).click()
            page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)
            page.wait_for_timeout(400)
            no_exception_box(page)
            shot(page, tmp_path, f"9-{link.split(' · ')[-1].lower().replace(' ', '-')}")
        browser.close()
