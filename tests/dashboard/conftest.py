import pytest


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """A run store two participants used: ann profiled bert-tiny at batch 1 and 4 and applied bf16, dynamic-int8
    and torchscript-freeze to her batch-4 run; bob profiled it once and applied bf16. Real runs, measured small."""
    import torch

    import optimizers
    import profiler
    from optimizers import results

    root = tmp_path_factory.mktemp("classroom")
    cfg = profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0.0, profile_iters=1, graph=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {}
        for who, batch in (("ann", 1), ("bob", 2), ("ann", 4)):
            loaded = profiler.load_model("bert-tiny", batch_size=batch)
            run = profiler.profile(loaded, cfg)
            run.participant = who
            profiler.store.save(run, root)
            runs[(who, batch)] = (run, loaded)
        for who, batch, passes in (("ann", 4, ["bf16"]), ("ann", 4, ["dynamic-int8"]),
                                   ("ann", 4, ["torchscript-freeze"]), ("bob", 2, ["bf16"])):
            base, loaded = runs[(who, batch)]
            result = optimizers.optimize(loaded, passes, cfg, runs_dir=str(root), base_run=base)
            saved = results.from_apply(result, loaded, cfg, source_run_id=base.id)
            saved.participant = who
            results.keep(saved, root)
    finally:
        torch.set_num_threads(before)
    return root, {key: run for key, (run, _) in runs.items()}


@pytest.fixture
def in_classroom(classroom, monkeypatch):
    root, runs = classroom
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    return root, runs
