"""The run store: runs/<run_id>/run.json plus the raw Kineto trace (the runs dir is a TensorBoard logdir: one run per
folder), and saved comparisons and sweeps beside them in runs/comparisons/ and runs/sweeps/, which have no run.json."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from profiler.schema import SCHEMA_VERSION, ProfileRun, RunStoreError, SavedComparison, Sweep

# Set by `saving_as` around one job: runs and comparisons are saved deep inside optimize() and search(), so the job
# layer learns what a job kept (and tags it with its participant) here rather than through every orchestrator.
_saving: ContextVar[tuple[str, Callable[[str, str], None] | None] | None] = ContextVar("oplens_saving", default=None)


def cache_root() -> Path:
    """Where OpLens keeps what it can make again (measured peaks, converted sample weights): $OPLENS_CACHE_DIR, else
    ~/.cache/oplens. Not the runs directory: nothing here is a result."""
    return Path(os.environ.get("OPLENS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "oplens"))


@contextmanager
def saving_as(participant: str = "", on_saved: Callable[[str, str], None] | None = None) -> Iterator[None]:
    """Within the block, every run and comparison saved is tagged with `participant` (where it has none) and every
    save is reported as `on_saved(what, id)`, what being "run", "comparison" or "sweep"."""
    token = _saving.set((participant, on_saved))
    try:
        yield
    finally:
        _saving.reset(token)


TRACE_PREFIX = "oplens-trace-"  # a run's trace waits in such a temporary folder until the run is saved
_temp_traces: ContextVar[list[str] | None] = ContextVar("oplens_temp_traces", default=None)


def temp_trace_dir() -> str:
    """A temporary folder for a run's trace, which saving the run moves into the run's folder (removing this one)."""
    d = tempfile.mkdtemp(prefix=TRACE_PREFIX)
    if (scope := _temp_traces.get()) is not None:
        scope.append(d)
    return d


@contextmanager
def temporary_traces() -> Iterator[None]:
    """Within it, the trace folders of runs never saved are removed on exit, however it exits: a search profiles
    dozens of candidates and keeps two runs."""
    token = _temp_traces.set(scope := [])
    try:
        yield
    finally:
        _temp_traces.reset(token)
        for d in scope:
            shutil.rmtree(d, ignore_errors=True)


def _tag(record) -> None:
    current = _saving.get()
    if current and current[0] and hasattr(record, "participant") and not record.participant:
        record.participant = current[0]


def _report(what: str, ident: str) -> None:
    current = _saving.get()
    if current and current[1]:
        current[1](what, ident)

RUN_FILE = "run.json"
COMPARISONS = "comparisons"  # folders of the runs dir that are not runs
SWEEPS = "sweeps"
JOBS = "jobs"  # the job layer's records (profiler/jobs/manager.py)
PARTIAL = ".saving-"  # a new run is written in runs/.saving-<id>-xxxx/ and renamed into place when whole
VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
MAX_LABEL = 200


def runs_dir(path: str | os.PathLike | None = None) -> Path:
    """--runs-dir, else $OPLENS_RUNS_DIR, else ./runs."""
    return Path(path or os.environ.get("OPLENS_RUNS_DIR") or "runs")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write `data` as JSON to `path` atomically (a reader sees the old file or the new one, never half of one)."""
    _atomic_write(Path(path), json.dumps(data, indent=1))


def _run_dir(run_id: str, root: str | os.PathLike | None) -> Path:
    """runs/<run_id>; RunStoreError for an id that could name anything else (a path, a hidden or reserved folder)."""
    if not isinstance(run_id, str) or not VALID_ID.fullmatch(run_id) or run_id in (COMPARISONS, SWEEPS):
        raise RunStoreError(f"invalid run id {str(run_id)[:80]!r}: letters, digits, '.', '_' and '-' only")
    return runs_dir(root) / run_id


def save(run: ProfileRun, root: str | os.PathLike | None = None) -> Path:
    """Write run.json (atomically) with its trace beside it; returns the run directory.

    A trace fresh from the runner (in its temp dir) is moved and `run.trace_path` updated; a trace already saved
    elsewhere is copied, leaving that store and the caller's run as they were.
    """
    d = _run_dir(run.id, root)
    _tag(run)
    try:
        if d.exists():
            _save(run, d, d)  # a saved run again (a new label): run.json is replaced atomically
        else:
            _save_new(run, d)
    except OSError as exc:
        raise RunStoreError(f"could not save run {run.id} in {runs_dir(root)}: {_os_reason(exc)}; "
                            "runs saved before are unchanged") from None
    _report("run", run.id)
    return d


def _save_new(run: ProfileRun, d: Path) -> None:
    """Write the whole run in a temporary folder beside the others, then rename it into place: a save killed halfway
    (kill -9, power loss) leaves a `.saving-` folder that listings report, never a run that looks whole."""
    check_writable(d.parent)
    tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f"{PARTIAL}{run.id}-"))
    try:
        _save(run, tmp, d)
        os.rename(tmp, d)
        _fsync(d.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _save(run: ProfileRun, d: Path, final: Path) -> None:
    """Write the trace, then run.json, into `d`, which becomes the run's folder `final`."""
    check_writable(d.parent)
    d.mkdir(exist_ok=True)
    src = Path(run.trace_path) if run.trace_path else None
    if src is not None and src.is_file() and src.parent.resolve() != final.resolve():
        target = d / src.name
        if src.parent.name.startswith(TRACE_PREFIX):
            shutil.move(src, target)
            shutil.rmtree(src.parent, ignore_errors=True)
            run.trace_path = str(final.resolve() / src.name)
        else:
            shutil.copy2(src, target)
        _fsync(target)
    data = run.to_dict()
    if data.get("trace_path"):
        data["trace_path"] = Path(data["trace_path"]).name  # relative: the run dir may move
    _atomic_write(d / RUN_FILE, json.dumps(data, indent=1))


def _os_reason(exc: OSError) -> str:
    return {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
            errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only"}.get(
        exc.errno, exc.strerror or str(exc))


MIN_FREE_BYTES = 64 * 2**20  # a run with its trace takes a few MiB; below this, saving would likely fail halfway


def check_writable(root: str | os.PathLike | None = None) -> Path:
    """The runs directory, created if missing; RunStoreError (one line) when it is a file, cannot be written, or its
    disk is nearly full. Called before a measurement, so a bad --runs-dir fails in a second, not after a profile."""
    base = runs_dir(root)
    if base.exists() and not base.is_dir():
        raise RunStoreError(f"runs directory {base} is a file, not a directory: choose another --runs-dir")
    try:
        base.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=base).close()
    except OSError as exc:
        raise RunStoreError(
            f"cannot write to runs directory {base}: {_os_reason(exc)}; choose another --runs-dir"
        ) from None
    free = shutil.disk_usage(base).free
    if free < MIN_FREE_BYTES:
        raise RunStoreError(f"runs directory {base}: only {free / 2**20:.0f} MiB free on its disk; free some space "
                            "or choose another --runs-dir")
    return base


def from_json(data: dict, where: str = "run") -> ProfileRun:
    if not isinstance(data, dict) or "id" not in data or "latency" not in data:
        raise RunStoreError(f"{where}: not an OpLens run")
    version = data.get("schema_version", 0)
    if version > SCHEMA_VERSION:
        raise RunStoreError(f"{where} was written by a newer OpLens (schema {version}, this one reads up to "
                            f"{SCHEMA_VERSION}); upgrade OpLens to open it")
    if version < 1:
        raise RunStoreError(f"{where}: schema version {version} predates OpLens 1 and cannot be read")
    try:
        return ProfileRun.from_dict(data)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise RunStoreError(f"{where}: run.json is damaged ({exc})") from None


def _read(d: Path) -> ProfileRun:
    """The run in folder `d`, checked; RunStoreError naming what is wrong (a save killed halfway, a newer schema, a
    trace path that leads out of the folder)."""
    f = d / RUN_FILE
    if not f.is_file():
        raise RunStoreError(f"run '{d.name}': no {RUN_FILE} (a save that was interrupted?)")
    try:
        data = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunStoreError(f"run '{d.name}': run.json is unreadable, truncated by an interrupted save? ({exc})") \
            from None
    run = from_json(data, f"run '{d.name}'")
    if run.trace_path:
        trace = (d / run.trace_path).resolve()
        if trace.parent != d.resolve():
            raise RunStoreError(f"run '{d.name}': its trace path {run.trace_path[:80]!r} leads out of the run's folder")
        run.trace_path = str(trace)
    return run


def load(run_id: str, root: str | os.PathLike | None = None) -> ProfileRun:
    d = _run_dir(run_id, root)
    if not d.is_dir():
        raise RunStoreError(f"no saved run '{run_id}' in {runs_dir(root)}")
    return _read(d)


@dataclass
class RunSummary:
    id: str
    label: str
    model: str
    device: str
    created: str
    median_ms: float
    batch_size: int
    seq_len: int
    participant: str = ""


@dataclass
class RunListing:
    runs: list[RunSummary]  # the readable runs, newest first
    skipped: list[str] = field(default_factory=list)  # one line per folder that is not a readable run, and why

    @property
    def note(self) -> str:
        """'1 damaged run skipped: ...' for the page or the terminal; empty when nothing was skipped."""
        n = len(self.skipped)
        return f"{n} damaged run{'s' if n != 1 else ''} skipped: " + "; ".join(self.skipped) if n else ""


def scan_runs(root: str | os.PathLike | None = None) -> RunListing:
    """Every readable run, and a note for each folder that is not one: a save killed halfway (a leftover `.saving-`
    folder, a run folder without run.json or with a truncated one), a run from a newer OpLens."""
    base = runs_dir(root)
    listing = RunListing(runs=[])
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if not d.is_dir() or d.name in (COMPARISONS, SWEEPS, JOBS):
            continue
        if d.name.startswith(PARTIAL):
            listing.skipped.append(f"{d.name} is what an interrupted save left behind")
            continue
        if d.name.startswith("."):
            continue
        summary = _summary(d)
        if isinstance(summary, str):
            listing.skipped.append(summary)
        else:
            listing.runs.append(summary)
    listing.runs.sort(key=lambda r: (r.created, r.id), reverse=True)
    return listing


# folder -> (run.json's mtime and size, its summary or why it cannot be read): a dashboard lists the store on every
# rerun of every session (twenty in a workshop), and reading each whole run.json again each time was the server's
# main cost; a saved or renamed run writes a new run.json, so its mtime and size tell when to read it again
_SUMMARIES: dict[Path, tuple[tuple[int, int], RunSummary | str]] = {}


def _stamp(f: Path) -> tuple[int, int] | None:
    """A file's (mtime, size), what tells a cached reading of it from a stale one; None when it is gone."""
    try:
        st = f.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _cached(table: dict, key: Path, stamp: tuple[int, int], read: Callable[[], object]):
    """table[key]'s value while its stamp is `stamp`; otherwise read() again and keep it under the new stamp."""
    hit = table.get(key)
    if hit is None or hit[0] != stamp:
        hit = table[key] = (stamp, read())
    return hit[1]


def _summary(d: Path) -> RunSummary | str:
    return _cached(_SUMMARIES, d, _stamp(d / RUN_FILE) or (0, -1), lambda: _summarize(d))


def _summarize(d: Path) -> RunSummary | str:
    try:
        run = _read(d)
    except RunStoreError as exc:
        return str(exc)
    return RunSummary(id=d.name, label=run.label, model=run.model.name, device=f"{run.device.kind}: {run.device.name}",
                      created=run.created, median_ms=run.latency.median_ms, batch_size=run.config.batch_size,
                      seq_len=run.config.seq_len, participant=run.participant)


def list_runs(root: str | os.PathLike | None = None) -> list[RunSummary]:
    """Saved runs that can be read, newest first (scan_runs also says which folders were skipped and why)."""
    return scan_runs(root).runs


def rename(run_id: str, label: str, root: str | os.PathLike | None = None) -> ProfileRun:
    """Set a run's display label (its id and directory stay, so links and traces keep working)."""
    label = label.strip()
    if len(label) > MAX_LABEL or any(not c.isprintable() for c in label):
        raise RunStoreError(f"a label is one line of at most {MAX_LABEL} printable characters")
    run = load(run_id, root)
    run.label = label
    save(run, root)
    return run


def delete(run_id: str, root: str | os.PathLike | None = None) -> None:
    """Remove a run's folder, a damaged one included."""
    d = _run_dir(run_id, root)
    if not d.is_dir():
        raise RunStoreError(f"no saved run '{run_id}' in {runs_dir(root)}")
    shutil.rmtree(d)


# ---------------------------------------------------------------- sweeps: runs/sweeps/<id>.json

def _result_file(folder: str, what: str, result_id: str, root: str | os.PathLike | None) -> Path:
    """runs/<folder>/<id>.json for a result that is not a run (a sweep, a saved comparison); ids cannot escape it."""
    if not result_id or "/" in result_id or result_id.startswith("."):
        raise RunStoreError(f"invalid {what} id '{result_id}'")
    return runs_dir(root) / folder / f"{result_id}.json"


def _write_result(f: Path, data: dict, what: str, root: str | os.PathLike | None) -> Path:
    """Write one result file atomically after the same checks a run gets; one line when the disk refuses."""
    try:
        check_writable(root)
        f.parent.mkdir(exist_ok=True)
        _atomic_write(f, json.dumps(data, indent=1))
    except OSError as exc:
        raise RunStoreError(f"could not save {what} {f.stem}: {_os_reason(exc)}") from None
    return f


def _sweep_file(sweep_id: str, root: str | os.PathLike | None) -> Path:
    return _result_file(SWEEPS, "sweep", sweep_id, root)


def save_sweep(sweep: Sweep, root: str | os.PathLike | None = None) -> Path:
    f = _write_result(_sweep_file(sweep.id, root), sweep.to_dict(), "sweep", root)
    _report("sweep", sweep.id)
    return f


def load_sweep(sweep_id: str, root: str | os.PathLike | None = None) -> Sweep:
    f = _sweep_file(sweep_id, root)
    if not f.is_file():
        raise RunStoreError(f"no saved sweep '{sweep_id}' in {runs_dir(root)}")
    try:
        return Sweep.from_dict(json.loads(f.read_text()))
    except (OSError, json.JSONDecodeError, TypeError, KeyError) as exc:
        raise RunStoreError(f"sweep '{sweep_id}' is unreadable ({exc})") from None


def list_sweeps(root: str | os.PathLike | None = None) -> list[Sweep]:
    """Saved sweeps, newest first; unreadable files are skipped (a sweep is a convenience, not a record)."""
    folder = runs_dir(root) / SWEEPS
    out = []
    for f in folder.glob("*.json") if folder.is_dir() else []:
        try:
            out.append(Sweep.from_dict(json.loads(f.read_text())))
        except (OSError, json.JSONDecodeError, TypeError, KeyError):
            continue
    return sorted(out, key=lambda s: (s.created, s.id), reverse=True)


# ---------------------------------------------------------------- saved comparisons


def _comparison_file(comparison_id: str, root: str | os.PathLike | None) -> Path:
    return _result_file(COMPARISONS, "comparison", comparison_id, root)


def save_comparison(comparison: SavedComparison, root: str | os.PathLike | None = None) -> Path:
    """Write runs/comparisons/<id>.json atomically; returns its path."""
    _tag(comparison)
    data = comparison.to_dict()
    data.pop("error", None)
    f = _write_result(_comparison_file(comparison.id, root), data, "comparison", root)
    _report("comparison", comparison.id)
    return f


def _read_comparison(f: Path) -> SavedComparison:
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunStoreError(f"comparison '{f.stem}' is unreadable ({exc})") from None
    if not isinstance(data, dict) or "kind" not in data or "config" not in data:
        raise RunStoreError(f"comparison '{f.stem}': not an OpLens comparison")
    if data.get("schema_version", 0) > SCHEMA_VERSION:
        raise RunStoreError(f"comparison '{f.stem}' was written by a newer OpLens; upgrade OpLens to open it")
    try:
        return SavedComparison.from_dict(data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise RunStoreError(f"comparison '{f.stem}' is damaged ({exc})") from None


def load_comparison(comparison_id: str, root: str | os.PathLike | None = None) -> SavedComparison:
    f = _comparison_file(comparison_id, root)
    if not f.is_file():
        raise RunStoreError(f"no saved comparison '{comparison_id}' in {runs_dir(root)}")
    return _read_comparison(f)


def list_comparisons(root: str | os.PathLike | None = None) -> list[SavedComparison]:
    """Saved comparisons, newest first; an unreadable one is listed with its `error` rather than hidden."""
    folder = runs_dir(root) / COMPARISONS
    if not folder.is_dir():
        return []
    out = []
    for f in folder.glob("*.json"):
        stamp = _stamp(f)
        if stamp is not None:  # else deleted meanwhile; read again only what changed (see _SUMMARIES)
            out.append(_cached(_COMPARISONS, f, stamp, lambda f=f: _comparison_or_error(f)))
    out.sort(key=lambda c: (c.created, c.id), reverse=True)
    return out


def _comparison_or_error(f: Path) -> SavedComparison:
    try:
        return _read_comparison(f)
    except RunStoreError as exc:
        return SavedComparison(id=f.stem, created="", kind="?", model="?", spec="", config=None, passes=[],
                               error=str(exc))


_COMPARISONS: dict[Path, tuple[tuple[int, int], SavedComparison]] = {}  # read-only for callers, as load's results


def delete_comparison(comparison_id: str, root: str | os.PathLike | None = None) -> None:
    f = _comparison_file(comparison_id, root)
    if not f.is_file():
        raise RunStoreError(f"no saved comparison '{comparison_id}' in {runs_dir(root)}")
    f.unlink()


# ---------------------------------------------------------------- recommendation pairs (estimated vs measured)

PAIRS_FILE = "recommendations.json"


def recommendation_pairs(root: str | os.PathLike | None = None) -> list[dict]:
    """The kept estimate/measured pairs of applied recommendations: [{machine, rule, passes, estimated, measured,
    run_id, model, comparison_id, created}]; a damaged file only loses the learning."""
    path = runs_dir(root) / PAIRS_FILE
    try:
        return json.loads(path.read_text()).get("pairs", []) if path.is_file() else []
    except (OSError, json.JSONDecodeError, AttributeError):
        return []


def keep_recommendation_pair(pair: dict, root: str | os.PathLike | None = None) -> None:
    """Append one pair to the kept ones (written whole, then renamed into place)."""
    path = runs_dir(root) / PAIRS_FILE
    pairs = recommendation_pairs(root) + [pair]
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps({"pairs": pairs}, indent=1))
