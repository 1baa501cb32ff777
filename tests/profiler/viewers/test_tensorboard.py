"""Our saved runs open in torch-tb-profiler (the TensorBoard plugin): its own parser builds its views from our trace."""
import pytest

tb = pytest.importorskip("torch_tb_profiler", reason="torch-tb-profiler is a test dependency (requirements-test.txt)")


def test_plugin_parses_our_trace(tiny_bert_run, tmp_path):
    from pathlib import Path

    from torch_tb_profiler import consts
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.run_generator import RunGenerator

    run, _ = tiny_bert_run
    name = Path(run.trace_path).name
    match = consts.WORKER_PATTERN.match(name)
    assert match, f"{name} is not named as the plugin expects"
    worker = match.group(1)
    data = RunProfileData.parse(worker, "1", run.trace_path, str(tmp_path))
    profile = RunGenerator(worker, "1", data).generate_run_profile()
    views = {v.name for v in profile.views}
    assert {"overall", "operator", "trace"} <= views
    step_row = profile.overview["steps"]["rows"][0]
    assert step_row[0] == "1"  # one recorded step, named by torch.profiler's ProfilerStep#1
    op_names = {row["name"] for row in profile.operation_table_by_name["data"]}
    assert "aten::addmm" in op_names
