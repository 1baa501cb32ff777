"""The HTML report opens without a server or network; the CLI writes it; bad ids fail with one error line."""
import re

import pytest
from testdata import DATA

from profiler import store
from profiler.cli import main
from profiler.traces.importer import import_trace
from profiler.viewers import html_report as report

REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.I)


@pytest.fixture(scope="module")
def gpu_pair():
    return (import_trace(DATA / "h100_bert_small.pt.trace.json.gz"),
            import_trace(DATA / "mi300_bert_small.pt.trace.json.gz"))


def self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not REMOTE.search(text), "a remote script, stylesheet or image"
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower()


def test_one_run(tiny_bert_run):
    run, _ = tiny_bert_run
    text = report.build(run)
    self_contained(text)
    assert "aten::addmm" in text and "Top operators" in text and "bert-tiny" in text


def test_two_runs_compare(gpu_pair):
    base, new = gpu_pair
    text = report.build(base, new)
    self_contained(text)
    for part in ("OpLens comparison", "Kernels by operator", "GPU timeline per step", "aten::addmm", "attn_fwd",
                 "NVIDIA H100", "MI300X"):
        assert part in text
    # kernel names carry C++ templates: escaped, never raw markup
    assert "Kernel2&lt;cutlass" in text and "Kernel2<cutlass" not in text


def test_names_are_escaped(gpu_pair):
    base, _ = gpu_pair
    run = base.from_dict(base.to_dict())
    run.label = "<script>alert(1)</script>"
    run.ops[0].name = "<img src=x onerror=alert(1)>"
    text = report.build(run)
    assert "<script>" not in text and "<img" not in text and "&lt;img src=x" in text


def test_cli_report(gpu_pair, tmp_path, capsys):
    base, new = gpu_pair
    store.save(base)
    store.save(new)
    out = tmp_path / "cmp.html"
    assert main(["report", base.id, new.id, "--html", str(out)]) == 0
    self_contained(out.read_text())
    one = tmp_path / "one.html"
    assert main(["report", base.id, "--html", str(one)]) == 0
    assert "Top kernels" in one.read_text()
    capsys.readouterr()
    assert main(["report", "no-such-run", "--html", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no-such-run" in err[0]
    assert not (tmp_path / "x.html").exists()
