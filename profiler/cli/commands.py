"""python -m profiler: list sample models, profile a model, manage saved runs.

Bad input exits 2 with one `error:` line on stderr and no traceback; Ctrl-C cancels a measurement and saves nothing.
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
from typing import Callable

from profiler import store
from profiler.cli.parser import build_parser
from profiler.cli import render
from profiler.cli.render import _bytes, _ms, render_generation, render_import, render_run
from profiler.console import err, fail_unexpected, format_table, progress_bar, strip_verbose
from profiler.measure.session import profile
from profiler.models import sources
from profiler.models.loading import load_model
from profiler.schema import OpLensError, ProfileCancelled, ProfileConfig

# ---------------------------------------------------------------- commands

def _cmd_models(a) -> int:
    if a.json:
        print(
            json.dumps(
                [
                    {
                        "name": m.name,
                        "description": m.description,
                        "input": m.input_kind,
                        "batch_size": m.batch_size,
                        "seq_len": m.seq_len,
                    }
                    for m in sources.catalogue()
                ],
                indent=1,
            )
        )
        return 0
    rows = [[m.name, m.input_kind, str(m.batch_size), str(m.seq_len or ""), m.description] for m in sources.catalogue()]
    print(format_table(rows, ["name", "input", "batch", "seq/img", "description"], left=(0, 1, 4)))
    return 0


def _measure_and_save(a, load: Callable, measure: Callable, render: Callable) -> int:
    """What profile and generate share: check the runs dir first, load with progress, measure, save, print."""
    store.check_writable(a.runs_dir)  # before a minute of measuring, not after
    progress, close = progress_bar()
    try:
        if progress:
            progress(f"loading {a.model}", 0.0)
        run = measure(load(), progress)
    finally:
        close()
    store.save(run, a.runs_dir)
    print(json.dumps(run.to_dict(), indent=1) if a.json else render(run))
    return 0


def _cmd_profile(a) -> int:
    config = ProfileConfig(device=a.device, warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time,
                           profile_iters=a.profile_iters, dtype=a.dtype, graph=not a.no_graph)
    return _measure_and_save(
        a, lambda: load_model(a.model, batch_size=a.batch_size, seq_len=a.seq_len, arch=a.arch, inputs=a.inputs),
        lambda loaded, progress: profile(loaded, config, progress=progress), lambda run: render_run(run, a.top))


def _cmd_import(a) -> int:
    from profiler.traces.importer import import_trace

    store.check_writable(a.runs_dir)
    progress, close = progress_bar(False if a.json else None)
    try:
        run = import_trace(a.traces, progress=progress)  # the command line reads any file its user names
    finally:
        close()
    saved = store.save(run, a.runs_dir)
    if a.json:
        print(json.dumps(run.to_dict(), indent=1))
    else:
        print(render_run(run, a.top))
        print(render_import(run, a.top))
        if run.training:  # a trace of training steps: where each step went, as `profiler train` shows it
            print(render.render_training(run, a.top))
        print(f"saved      {saved}")
    return 0


def _cmd_train(a) -> int:
    from profiler.measure.train import train
    from profiler.schema import TrainConfig

    config = TrainConfig(batch_size=a.batch_size or 0, steps=a.steps, warmup=a.warmup, optimizer=a.optimizer,
                         lr=a.lr, workers=a.workers, pin_memory=a.pin_memory, dtype=a.dtype, device=a.device,
                         memory=not a.no_memory)
    if a.step_fn:
        from profiler.measure.recorder import train_step_function

        store.check_writable(a.runs_dir)
        progress, close = progress_bar(False if a.json else None)
        try:
            run = train_step_function(a.model, a.steps, a.warmup, progress=progress)
        finally:
            close()
        store.save(run, a.runs_dir)
        print(json.dumps(run.to_dict(), indent=1) if a.json else render.render_training(run, a.top))
        return 0
    if a.ranks > 1:
        from profiler.measure.distributed import train_ranks

        store.check_writable(a.runs_dir)
        run = train_ranks(a.model, config, a.ranks, -1 if a.slow_rank is None else a.slow_rank, a.slow_ms)
        store.save(run, a.runs_dir)
        print(json.dumps(run.to_dict(), indent=1) if a.json else render.render_training(run, a.top) + "\n"
              + render_import(run, a.top))
        return 0
    return _measure_and_save(
        a, lambda: load_model(a.model, batch_size=a.batch_size, seq_len=a.seq_len),
        lambda loaded, progress: train(loaded, config, progress=progress, snapshot_path=a.memory_snapshot),
        lambda run: render.render_training(run, a.top))


def _cmd_generate(a) -> int:
    from profiler.measure.generate import generate
    from profiler.schema import GenerateConfig

    config = GenerateConfig(batch_size=a.batch_size, prompt_len=a.prompt_len, new_tokens=a.new_tokens, cache=a.cache,
                            dtype=a.dtype, device=a.device, warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time)
    return _measure_and_save(
        a, lambda: load_model(a.model, batch_size=a.batch_size, seq_len=a.prompt_len),
        lambda loaded, progress: generate(loaded, config, progress=progress),
        lambda run: render_generation(run, a.top))


def _cmd_runs(a) -> int:
    listing = store.scan_runs(a.runs_dir)
    runs = listing.runs
    if listing.note:
        print(f"note: {listing.note}", file=err())
    if a.json:
        print(json.dumps([vars(r) for r in runs], indent=1))
        return 0
    if not runs:
        print(f"no saved runs in {store.runs_dir(a.runs_dir)}")
        return 0
    rows = [[r.id, r.label, r.model, r.device[:40], r.created, _ms(r.median_ms)] for r in runs]
    print(format_table(rows, ["id", "label", "model", "device", "created", "median ms"], left=(0, 1, 2, 3, 4)))
    return 0


def _cmd_show(a) -> int:
    run = store.load(a.run_id, a.runs_dir)
    if a.json:
        print(json.dumps(run.to_dict(), indent=1))
    elif run.generation:
        print(render_generation(run, a.top))
    elif run.training and run.model.source != "trace":
        print(render.render_training(run, a.top))
        if run.ranks:
            print(render_import(run, a.top))
    else:
        print(render_run(run, a.top))
        if run.model.source == "trace":
            print(render_import(run, a.top))
            if run.training:
                print(render.render_training(run, a.top))
    return 0


def _cmd_rename(a) -> int:
    store.rename(a.run_id, a.label, a.runs_dir)
    print(f"renamed {a.run_id} to '{a.label}'")
    return 0


def _cmd_delete(a) -> int:
    store.delete(a.run_id, a.runs_dir)
    print(f"deleted {a.run_id}")
    return 0


def _cmd_sweep(a) -> int:
    from profiler.measure.sweep import sweep_and_save

    config = ProfileConfig(warmup=a.warmup, repeats=a.repeats, min_time_s=a.min_time)
    progress, close = progress_bar()
    try:
        result = sweep_and_save(a.model, a.batch_sizes, a.seq_lens, a.threads, a.dtypes, a.devices, config,
                                arch=a.arch, runs_dir=a.runs_dir, progress=progress)
    finally:
        close()
    if a.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    rows = [[str(p.batch_size), str(p.seq_len or ""), str(p.threads), p.dtype, p.device,
             _ms(p.median_ms) if not p.error else "", f"{_ms(p.p10_ms)}-{_ms(p.p90_ms)}" if not p.error else "",
             f"{p.throughput_per_s:,.1f}" if not p.error else "", _bytes(p.peak_memory_bytes) if not p.error else "",
             p.error[:60]] for p in result.points]
    print(f"sweep of {result.model} on {result.device_name}")
    print(format_table(rows, ["batch", "length", "threads", "dtype", "device", "median ms", "p10-p90 ms", "samples/s",
                              "peak memory", "problem"], left=(3, 4, 9)))
    for finding in result.findings:
        print(f"finding  {finding}")
    print(f"saved    sweep {result.id}")
    return 0


def _cmd_peaks(a) -> int:
    from profiler import devices
    from profiler.measure import peaks as peaks_mod

    if a.gpu:
        p = devices.spec_peaks(a.gpu)
        if p is None:
            raise OpLensError(f"no published spec for a GPU named '{a.gpu}'; known: {', '.join(devices.gpu_specs())}")
    else:
        progress, close = progress_bar()
        try:
            p = peaks_mod.get(a.device, refresh=a.refresh, progress=progress)
        finally:
            close()
    if a.json:
        out = p.to_dict()
        if not p.device.startswith("cuda"):  # GPU keys only with a GPU
            for k in ("h2d_pinned_gbs", "h2d_pageable_gbs", "d2h_pinned_gbs", "d2h_pageable_gbs"):
                out.pop(k)
        print(json.dumps(out, indent=1))
        return 0
    rows = [[label, f"{value:,.1f}", unit] for label, value, unit in (
        ("fp32 GEMM", p.fp32_gflops, "GFLOP/s"), ("bf16 GEMM", p.bf16_gflops, "GFLOP/s"),
        ("fp16 GEMM", p.fp16_gflops, "GFLOP/s"), ("int8 GEMM", p.int8_gops, "GOP/s"),
        ("memory bandwidth (triad)", p.mem_bw_gbs, "GB/s"), ("memory copy", p.copy_bw_gbs, "GB/s"),
        ("host->device, pinned", p.h2d_pinned_gbs, "GB/s"), ("host->device, pageable", p.h2d_pageable_gbs, "GB/s"),
        ("device->host, pinned", p.d2h_pinned_gbs, "GB/s"), ("device->host, pageable", p.d2h_pageable_gbs, "GB/s"))
        if value]
    what = "published spec, not measured" if p.source == "spec" else \
        f"measured {p.measured_at}, {p.threads} threads, torch {p.torch}"
    print(f"peaks of {p.name} ({p.device}; {what})")
    print(format_table(rows, ["limit", "value", "unit"], left=(0, 2)))
    for note in p.notes:
        print(f"note  {note}")
    return 0


def _cmd_report(a) -> int:
    from profiler.viewers import html_report as report

    if len(a.run_ids) > 2:
        raise OpLensError(f"report takes one run or two (base, new), not {len(a.run_ids)}")
    runs = [store.load(i, a.runs_dir) for i in a.run_ids]
    try:
        path = report.write(a.html, *runs)
    except OSError as exc:
        raise OpLensError(f"could not write {a.html}: {exc.strerror or exc}") from exc
    print(f"wrote {path}")
    return 0


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (a service manager, a workshop script) stops a viewer command the way Ctrl-C does: the server it
    started in a session of its own is stopped with it, its port freed, its files removed."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_until_stopped(start: Callable, announce: Callable, name: str) -> int | None:
    """Start a viewer server (`start()`), `announce(viewer)` it, and wait on it until it exits (its exit code) or Ctrl-C
    or SIGTERM stops it (None: not an error, and nothing was being saved). Every way out after the start stops the
    server, which runs in a session of its own, and removes what it wrote."""
    with _sigterm_as_ctrl_c():
        try:
            viewer = start()
        except KeyboardInterrupt:
            return None
        try:
            announce(viewer)
            return viewer.process.wait()
        except KeyboardInterrupt:
            print(f"{name} stopped")
            return None
        finally:
            viewer.stop()


def _cmd_tensorboard(a) -> int:
    from profiler.viewers import tensorboard

    code = _serve_until_stopped(
        lambda: tensorboard.start(a.runs_dir, a.port),
        lambda tb: print(f"TensorBoard on {tb.logdir}: open {tb.url}#pytorch_profiler (Ctrl-C stops it)", flush=True),
        "TensorBoard")
    if code:
        print(f"error: TensorBoard exited with code {code}", file=err())
        return 1
    return 0


def _cmd_explore(a) -> int:
    from profiler.measure import peaks as peaks_mod
    from profiler.viewers import model_explorer as graph_viewer

    run = store.load(a.run_id, a.runs_dir)
    if a.export:
        files = graph_viewer.export(run, a.export, peaks_mod.for_run(run))
        print(f"wrote {files.graph} and {len(files.overlays)} node-data overlays "
              f"({', '.join(p.name for p in files.overlays)}) to {a.export}")
        return 0
    peaks = peaks_mod.for_run(run, measure_missing=False)  # opening a viewer never waits on a measurement

    def announce(viewer) -> None:
        if peaks is None:
            print("no roofline overlay: this machine's peaks are not measured yet (python -m profiler peaks)")
        print(f"Model Explorer: open {viewer.url}\n(overlays: {', '.join(p.stem for p in viewer.files.overlays)}"
              "; Ctrl-C stops it)", flush=True)

    _serve_until_stopped(lambda: graph_viewer.serve_run(run, peaks, port=a.port), announce, "Model Explorer")
    return 0


def _accuracy_cell(rec) -> str:
    acc = rec.measured_accuracy
    if not acc:
        return "-"
    cosine = f"cosine {acc['cosine']:.4f}" if acc.get("cosine") is not None else ""
    return f"{'passed' if acc.get('passed', True) else 'FAILED'} {cosine}".strip()


def _cmd_recommend(a) -> int:
    from optimizers import recommend as advice  # the CLI may reach the optimizers: apply runs their passes
    from profiler.analysis import recommend as rec_mod

    from profiler import devices

    run = store.load(a.run_id, a.runs_dir)
    trace = run.model.source == "trace"
    if a.apply and trace:
        raise OpLensError("an imported trace has no model to apply passes to: profile the model with "
                          "`python -m profiler profile`, then recommend --apply on that run")
    peaks = devices.peaks_file(a.peaks, run.device.name) if a.peaks else None
    diagnosis = advice.why_slow(run, a.runs_dir, peaks=peaks)
    if diagnosis is None:
        raise OpLensError(f"no published peaks for '{run.device.name}' (known: {', '.join(devices.gpu_specs())}): "
                          "give measured ones with --peaks FILE")
    recs = diagnosis.recommendations
    if a.apply:
        progress, close = progress_bar(False if a.json else None)
        try:
            for r in recs:
                if r.passes:
                    advice.apply(r, run, a.runs_dir, a.warmup, a.repeats, progress=progress)
        finally:
            close()
        recs = rec_mod.rank_measured(recs)  # measured, accurate and fastest first
    if a.json:
        print(json.dumps([rec_mod.as_row(r) for r in recs], indent=1))
        return 0
    roof = diagnosis.roofline
    dtype = roof.dtype if trace else run.config.dtype
    print(f"why {run.model.name} is slow (run {run.id}, {run.device.name}, {dtype})")
    print(f"{roof.measured_what} {_ms(roof.measured_ms)} ms; floor at peak {_ms(roof.floor_ms)} ms; mostly "
          f"{roof.verdict or '-'}-bound "
          f"({roof.dtype} ceilings, {roof.peaks_source})")
    for note in roof.notes:
        print(f"note    {note}")
    if trace:
        print(render.trace_work(run, roof))
    for i, f in enumerate(diagnosis.findings, 1):
        print(f"finding {i}. {f.title}: {f.evidence}")
    if not recs:
        print("no rule fired: nothing stands out on the roofline")
    rows = [[str(i), r.title, "+".join(r.passes) or "-", f"{r.estimated_speedup:.2f}x",
             "-" if r.measured_speedup is None else f"{r.measured_speedup:.2f}x", _accuracy_cell(r)]
            for i, r in enumerate(recs, 1)]
    if rows:
        print(format_table(rows, ["#", "recommendation", "passes", "estimated", "measured", "accuracy"], left=(1, 2)))
    for i, r in enumerate(recs, 1):
        print(f"{i}. evidence: {r.evidence}")
    missed = [f"{i}" for i, r in enumerate(recs, 1) if rec_mod.held(r) is False]
    if missed:
        print(f"estimate off by more than {rec_mod.ESTIMATE_FACTOR:g}x for #{', #'.join(missed)}: later estimates "
              "for those passes on this machine are scaled by what was measured")
    return 0


COMMANDS = {"models": _cmd_models, "profile": _cmd_profile, "import": _cmd_import, "runs": _cmd_runs, "show": _cmd_show,
            "rename": _cmd_rename, "delete": _cmd_delete, "peaks": _cmd_peaks,
            "sweep": _cmd_sweep, "generate": _cmd_generate, "report": _cmd_report,
            "tensorboard": _cmd_tensorboard, "recommend": _cmd_recommend, "explore": _cmd_explore,
            "train": _cmd_train}


def main(argv: list[str] | None = None) -> int:
    argv, _ = strip_verbose(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ProfileCancelled:
        print("error: cancelled; nothing was saved", file=err())
        return 130
    except KeyboardInterrupt:
        print("\nerror: interrupted; nothing was saved", file=err())
        return 130
    except OpLensError as exc:
        print(f"error: {exc}", file=err())
        return 2
    except Exception as exc:  # noqa: BLE001 - never a bare traceback on the terminal
        return fail_unexpected(exc)
