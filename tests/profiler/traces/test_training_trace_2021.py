"""The TensorBoard plugin's ResNet-50 training sample (2021 Kineto: steps, the DataLoader's and the optimizer's marks
recorded as operators; autograd nodes named CudnnConvolutionBackward, without the engine's evaluate_function events)
imports as a training run, and its advice is what to change in the user's own loop."""
import pytest
from testdata import DATA

from profiler.analysis.training_rules import advice, how_to_apply, retrainable
from profiler.cli.render import render_training
from profiler.traces.importer import import_trace


@pytest.fixture(scope="module")
def run():
    return import_trace(DATA / "resnet50_train_gpu.pt.trace.json.gz")


def test_a_2021_training_trace_is_a_training_run(run):
    t = run.training
    assert t is not None and t.source == "trace" and len(t.steps) == 6
    for s in t.steps:
        assert sum(s.phases.values()) == pytest.approx(s.wall_ms, rel=0.02)
        assert sum(s.categories.values()) == pytest.approx(s.wall_ms, rel=0.02)
        assert s.phases["data"] > 0 and s.phases["backward"] > 0 and s.phases["forward"] > 0
    # the sample the plugin's tutorial opens with: a single-process DataLoader makes the step wait for its batch
    assert t.input_bound and 0.3 < t.data_share < 0.5 and "input-bound" in t.verdict


def test_its_advice_says_what_to_change_in_the_loop_not_a_command_on_a_trace_file(run):
    assert not retrainable(run)
    (rec,) = [r for r in advice(run) if r.rule == "input-bound"]
    assert how_to_apply(run, rec).startswith("in your loop: DataLoader(..., num_workers=")
    text = render_training(run)
    assert "optimizers train" not in text and "in your loop: DataLoader(" in text


def test_the_import_command_shows_the_training_breakdown(tmp_path):
    from testdata import in_process

    from profiler.cli.commands import main

    r = in_process(main, "import", str(DATA / "resnet50_train_gpu.pt.trace.json.gz"), "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "phases     data" in r.stdout and "input-bound" in r.stdout and "in your loop: DataLoader(" in r.stdout


@pytest.mark.parametrize("name", ["control_a100", "test_v100"])
def test_a_gpu_jobs_loop_thread_is_the_one_with_the_phase_marks(name):
    """HTA's A100 / V100 training job: its autograd thread holds more operator time than the loop's own thread; the
    forward is read on the thread with the DataLoader's and the optimizer's marks (it read 0 ms on the A100)."""
    t = import_trace(DATA / f"{name}.pt.trace.json.gz").training
    assert t is not None and len(t.steps) == 6
    assert t.phases["forward"] > 0.2 * t.wall.median and t.phases["backward"] > 0.2 * t.wall.median
    assert t.phases["optimizer"] > 0
