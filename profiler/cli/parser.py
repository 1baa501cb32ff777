"""The command line's parser: one function per group of commands, and the parsers of its list options."""
from __future__ import annotations

import argparse

from profiler import policy
from profiler.console import Parser, positive


def _int_list(text: str, maximum: int | None = None) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': give one or more numbers, each at least 1")
    if maximum is not None and max(values) > maximum:
        raise argparse.ArgumentTypeError(f"'{text}': each must be at most {maximum}")
    return values


def _choice_list(*choices: str):
    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"'{text}': choose from {', '.join(choices)}")
        return values
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m profiler", description="Profile PyTorch models: latency, per-op time, transfers, graph.")
    p.add_verbose()
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in (_measuring, _saved_runs, _viewing):
        add(sub)
    return p


def _measuring(sub) -> None:
    """The commands that measure: profile, sweep, peaks, generate, import."""
    m = sub.add_parser("models", help="list the sample models")
    m.add_argument("--json", action="store_true")

    pr = sub.add_parser("profile", help="profile a model and save the run")
    pr.add_argument("model", help="sample model name, file.py:factory, HF directory, hf:<hub id>, TorchScript, .pt2, "
                                  "or a state dict with --arch")
    pr.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA if present)")
    pr.add_argument("--batch-size", type=positive(), default=None)
    pr.add_argument("--seq-len", type=positive(maximum=policy.MAX_SEQ_LEN), default=None,
                    help="sequence length, or image size for vision models")
    pr.add_argument("--warmup", type=positive(minimum=0), default=3)
    pr.add_argument("--repeats", type=positive(), default=10, help="minimum timed iterations")
    pr.add_argument("--min-time", type=positive(float, 0), default=1.0, help="minimum timed seconds (default 1)")
    pr.add_argument("--profile-iters", type=positive(), default=3, help="iterations recorded by torch.profiler")
    pr.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    pr.add_argument("--no-graph", action="store_true", help="skip graph capture")
    pr.add_argument("--arch", help="architecture (sample model name) for a state-dict file")
    pr.add_argument("--inputs", help="example inputs for a model file: torch-saved tensor, tuple or dict")
    pr.add_argument("--runs-dir", help="where runs are saved (default $OPLENS_RUNS_DIR or ./runs)")
    pr.add_argument("--top", type=positive(), default=15, help="operators shown in the table")
    pr.add_argument("--json", action="store_true", help="print only the run, as JSON")

    _sweep_and_peaks(sub)
    _import_and_generate(sub)
    _train(sub)


def _train(sub) -> None:
    from profiler.measure.train import OPTIMIZERS  # noqa: PLC0415 - the optimizer names, one list

    t = sub.add_parser("train", help="profile training steps: step time by phase and category, input pipeline, memory")
    t.add_argument("model", help="sample model name (trained on its natural loss) or file.py:factory returning "
                                 "(module, (inputs, target) or a Dataset, loss)")
    t.add_argument("--steps", type=positive(), default=5, help="timed steps (default 5)")
    t.add_argument("--warmup", type=positive(minimum=0), default=2, help="untimed steps first (default 2)")
    t.add_argument("--batch-size", type=positive(), default=None)
    t.add_argument("--seq-len", type=positive(maximum=policy.MAX_SEQ_LEN), default=None)
    t.add_argument("--optimizer", default="adamw", choices=list(OPTIMIZERS))
    t.add_argument("--lr", type=positive(float, 0), default=1e-4)
    t.add_argument("--workers", type=positive(minimum=0), default=0, help="DataLoader num_workers (default 0)")
    t.add_argument("--pin-memory", action="store_true", help="DataLoader pin_memory=True")
    t.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="autocast dtype for forward and loss")
    t.add_argument("--device", default="auto")
    t.add_argument("--no-memory", action="store_true", help="skip the memory-profiled step")
    t.add_argument("--step-fn", action="store_true", help="MODEL is your own step function, file.py:function, "
                                                          "called once per step (it trains; it may return the loss)")
    t.add_argument("--memory-snapshot", metavar="FILE.pickle", help="CUDA: one more step's memory snapshot, for "
                                                                    "PyTorch's memory viewer (pytorch.org/memory_viz)")
    t.add_argument("--ranks", type=positive(), default=1, help="processes of a DDP job over gloo on this machine "
                                                               "(2 or more: each rank's trace, stragglers)")
    t.add_argument("--slow-rank", type=positive(minimum=0), default=None, help="slow this rank on purpose")
    t.add_argument("--slow-ms", type=positive(float, 0), default=0.0, help="... by this many ms per step")
    t.add_argument("--runs-dir")
    t.add_argument("--top", type=positive(), default=10)
    t.add_argument("--json", action="store_true", help="print only the run, as JSON")


def _saved_runs(sub) -> None:
    """The commands over saved runs: runs, show, rename, delete, report."""
    r = sub.add_parser("runs", help="list saved runs")
    r.add_argument("--runs-dir")
    r.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="print a saved run")
    s.add_argument("run_id")
    s.add_argument("--runs-dir")
    s.add_argument("--top", type=positive(), default=15)
    s.add_argument("--json", action="store_true")

    rn = sub.add_parser("rename", help="set a saved run's label")
    rn.add_argument("run_id")
    rn.add_argument("label")
    rn.add_argument("--runs-dir")

    d = sub.add_parser("delete", help="delete a saved run")
    d.add_argument("run_id")
    d.add_argument("--runs-dir")

    rp = sub.add_parser("report", help="one self-contained HTML report of a run, or of two runs compared")
    rp.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="one run, or two: base then new")
    rp.add_argument("--html", required=True, metavar="OUT.html", help="the file to write")
    rp.add_argument("--runs-dir")


def _sweep_and_peaks(sub) -> None:
    sw = sub.add_parser("sweep", help="latency, throughput and memory across batch sizes, lengths, threads, dtypes")
    sw.add_argument("model")
    sw.add_argument("--batch-sizes", type=_int_list, required=True, help="comma-separated, e.g. 1,2,4,8")
    sw.add_argument("--seq-lens", type=lambda t: _int_list(t, policy.MAX_SEQ_LEN),
                    help="sequence lengths or image sizes, e.g. 64,128,256")
    sw.add_argument("--threads", type=_int_list, help="CPU thread counts, e.g. 1,2")
    sw.add_argument("--dtypes", type=_choice_list("float32", "bfloat16", "float16"), help="e.g. float32,bfloat16")
    sw.add_argument("--devices", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], help="e.g. cpu,cuda")
    sw.add_argument("--warmup", type=positive(minimum=0), default=2)
    sw.add_argument("--repeats", type=positive(), default=5)
    sw.add_argument("--min-time", type=positive(float, 0), default=0.5)
    sw.add_argument("--arch")
    sw.add_argument("--runs-dir")
    sw.add_argument("--json", action="store_true")

    pk = sub.add_parser("peaks", help="this machine's measured limits: GEMM GFLOP/s per dtype, memory bandwidth")
    pk.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    pk.add_argument("--refresh", action="store_true", help="measure again instead of reading the cache")
    pk.add_argument("--gpu", help="published spec of a GPU by name (e.g. 'H100', 'MI300X') instead of measuring")
    pk.add_argument("--json", action="store_true")



def _import_and_generate(sub) -> None:
    im = sub.add_parser("import", help="import PyTorch profiler traces as a run (several files: the ranks of one job)")
    im.add_argument(
        "traces", nargs="+", metavar="TRACE", help=".pt.trace.json or .json.gz from torch.profiler / Kineto"
    )
    im.add_argument("--runs-dir", help="where the run is saved (default $OPLENS_RUNS_DIR or ./runs)")
    im.add_argument("--top", type=positive(), default=15, help="operators and kernels shown")
    im.add_argument("--json", action="store_true", help="print only the run, as JSON")

    g = sub.add_parser("generate", help="greedy generation of a causal LM: TTFT, per-token latency, KV cache, roofs")
    g.add_argument("model", help="a decoder: gpt2, llama, qwen2 (or -tiny), file.py:factory, HF directory, hf:<hub id>")
    g.add_argument("--prompt-len", type=positive(maximum=policy.MAX_SEQ_LEN), default=32,
                   help="prompt tokens per sequence")
    g.add_argument("--new-tokens", type=positive(), default=32, help="tokens generated per sequence")
    g.add_argument("--batch-size", type=positive(), default=1)
    g.add_argument("--cache", default="dynamic", choices=["dynamic", "static"], help="KV cache kind (default dynamic)")
    g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--warmup", type=positive(minimum=0), default=2, help="untimed generations first")
    g.add_argument("--repeats", type=positive(), default=5, help="minimum timed generations")
    g.add_argument("--min-time", type=positive(float, 0), default=1.0, help="minimum timed seconds (default 1)")
    g.add_argument("--runs-dir")
    g.add_argument("--top", type=positive(), default=8, help="operators shown per phase")
    g.add_argument("--json", action="store_true", help="print only the run, as JSON")



def _viewing(sub) -> None:
    """The commands that explain or show a run elsewhere: recommend, tensorboard, explore."""
    tbp = sub.add_parser(
        "tensorboard", help="TensorBoard with the PyTorch profiler plugin on the run store (localhost)"
    )
    tbp.add_argument("--runs-dir")
    tbp.add_argument("--port", type=positive(), default=6006)

    ex = sub.add_parser("explore", help="the run's graph in Model Explorer on localhost: per-node exec/transfer ms, "
                                        "GFLOP and roofline bound as overlays")
    ex.add_argument("run_id")
    ex.add_argument("--export", metavar="DIR", help="only write the graph and overlay JSON files to DIR")
    ex.add_argument("--port", type=positive(), help="default: a free port")
    ex.add_argument("--runs-dir")

    rc = sub.add_parser(
        "recommend", help="why is it slow: rules over a run and its roofline, each with an estimated speedup"
    )
    rc.add_argument("run_id")
    rc.add_argument("--apply", action="store_true", help="apply each recommendation's passes with proof and measure")
    rc.add_argument("--warmup", type=positive(minimum=0), help="warm-up iterations when applying (default: the run's)")
    rc.add_argument("--repeats", type=positive(), help="timed iterations when applying (default: the run's)")
    rc.add_argument("--peaks", metavar="FILE", help="measured ceilings instead of the published spec or this "
                                                    "machine's: OpLens's `peaks --json` or a TraceLens arch JSON")
    rc.add_argument("--runs-dir")
    rc.add_argument("--json", action="store_true", help="print [{title, evidence, passes, estimated_speedup, "
                                                        "measured_speedup}]")
