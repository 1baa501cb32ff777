"""The HTML report opens from disk in a headless Chromium with every network request refused, and draws its charts."""
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]
sync_api = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def shot(page, tmp_path, name):
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("OPLENS_SHOTS"):
        Path(os.environ["OPLENS_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", Path(os.environ["OPLENS_SHOTS"]) / f"{name}.png")


@pytest.mark.parametrize("pair", [False, True], ids=["one-run", "two-runs"])
def test_report_opens_offline(pair, tmp_path):
    from profiler.traces.importer import import_trace
    from profiler.viewers import html_report as report

    base = import_trace(DATA / "h100_bert_small.pt.trace.json.gz")
    new = import_trace(DATA / "mi300_bert_small.pt.trace.json.gz") if pair else None
    out = report.write(tmp_path / "report.html", base, new)
    requests = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.route("http*://**", lambda route: route.abort())  # no network: the file must stand alone
        page.goto(out.resolve().as_uri())
        page.get_by_text("Top operators").first.wait_for(timeout=10_000)
        assert page.locator("svg rect").count() >= 10  # charts drawn inline
        assert page.locator("td", has_text="aten::addmm").count() >= 1
        if pair:
            page.get_by_text("Kernels by operator, largest change first").wait_for(timeout=5_000)
            assert page.locator("tr.group td", has_text="aten::addmm").count() == 1
        shot(page, tmp_path, "report-two" if pair else "report-one")
        browser.close()
    assert all(u.startswith("file://") for u in requests), requests
