"""The command line as a person sees it: one `error:` line for what goes wrong, nothing saved is lost, and
library log noise only with --verbose."""
import errno
import json

import pytest

from profiler import cli, store


@pytest.fixture
def one_run(tmp_path, fast_config):
    import profiler

    root = tmp_path / "runs"
    run = profiler.profile(profiler.load_model("mlp-tiny"), fast_config)
    store.save(run, root)
    return run, root


def test_batch_too_large_to_allocate(tmp_path, cli, one_error):
    r = cli("profiler", "profile", "mlp", "--batch-size", "100000000", "--runs-dir", str(tmp_path))
    one_error(r, "out of memory", "190.7 GiB", "available", "Lower --batch-size")


def test_runs_dir_that_is_a_file(tmp_path, cli, one_error):
    f = tmp_path / "runs"
    f.write_text("my notes")
    r = cli("profiler", "profile", "mlp-tiny", "--runs-dir", str(f))
    one_error(r, "is a file")
    assert f.read_text() == "my notes"


def test_unwritable_runs_dir_fails_before_measuring(one_run, monkeypatch, capsys):
    run, root = one_run

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(store.tempfile, "TemporaryFile", refuse)
    measured = lambda *a, **k: pytest.fail("measured although the run could not be saved")  # noqa: E731
    monkeypatch.setattr(cli.commands, "profile", measured)
    assert cli.main(["profile", "mlp-tiny", "--runs-dir", str(root)]) == 2
    assert "cannot write to runs directory" in capsys.readouterr().err
    assert store.load(run.id, root).latency.median_ms == run.latency.median_ms


def test_full_disk_keeps_what_was_saved(one_run, monkeypatch, capsys, fast_config):
    run, root = one_run

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store, "_atomic_write", full)
    assert (
        cli.main(["profile", "mlp-tiny", "--runs-dir", str(root), "--repeats", "3", "--min-time", "0", "--no-graph"])
        == 2
    )
    err = capsys.readouterr().err
    assert "the disk is full" in err and "unchanged" in err and "Traceback" not in err
    assert [r.id for r in store.list_runs(root)] == [run.id]  # no half-written run left behind
    assert sorted(p.name for p in root.iterdir()) == [run.id]
    assert store.load(run.id, root).id == run.id


def test_nearly_full_disk_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 * 2**20})())
    with pytest.raises(store.RunStoreError, match="only 10 MiB free"):
        store.check_writable(tmp_path)


NOISE = ("profiler_start", "USDT", "Failed to load", "Warning", "warn(")


def test_profile_stderr_holds_only_oplens_lines(tmp_path, cli):
    r = cli("profiler", "profile", "bert-tiny", "--batch-size", "2", "--seq-len", "16", "--repeats", "3",
                "--min-time", "0", "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    json.loads(r.stdout)
    r = cli("profiler", "profile", "bert-tiny", "--batch-size", "2", "--seq-len", "16", "--repeats", "3",
                "--min-time", "0", "--no-graph", "--runs-dir", str(tmp_path), "--verbose")
    assert r.returncode == 0 and "profiler_start" in r.stderr  # the library lines are still there when asked for


def test_optimizers_stderr_holds_only_oplens_lines(tmp_path, cli):
    r = cli("optimizers", "apply", "bert-tiny", "--passes", "dynamic-int8", "--batch-size", "2", "--seq-len", "16",
                "--json")
    assert r.returncode == 0, r.stderr
    assert not any(n in r.stderr for n in NOISE), r.stderr
    json.loads(r.stdout)
