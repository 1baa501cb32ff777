"""Run one OpLens job on a Ray cluster instead of a local child process (OPLENS_EXECUTOR=ray).

The job is the same command the local executor runs, `python -m profiler.jobs '<payload json>'`, started by a
`NodeJob` actor on a Ray node. The actor holds one unit of the custom resource `oplens_measure` for its whole life;
each measuring node offers exactly one (`ray start ... --resources '{"oplens_measure": 1}'`), so two jobs never time
on top of each other on one node, and jobs beyond the free nodes wait in Ray's queue. A job asking for CUDA (or
"auto" on a cluster that has GPU nodes) also takes one GPU. The head polls the actor: the worker's Progress and
Saved messages (profiler.jobs.protocol) reach `on_message` while the job runs, cancel and the timeout become SIGINT
to the child on the node. The worker saves into a fresh runs dir on the node; when the child has exited, the runs,
comparisons and sweeps it saved travel back as one tar archive and land in the head's runs dir before the final
Done, Failed or Cancelled is passed on, so a caller that loads the result on "done" finds it. A model given as a
local path on the head is shipped to the node the same way.
See docs/scale-out.md.
"""
from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import ray

from profiler import store
from profiler.jobs.executors import TIMED_OUT, died
from profiler.jobs.protocol import FINAL, Cancelled, Done, Failed, Message, Progress, as_dict, decode
from profiler.schema import OpLensError

MEASURE_RESOURCE = "oplens_measure"
ADDRESS_ENV = "OPLENS_RAY_ADDRESS"
POLL_S = 0.2  # how long one poll of the node waits for new lines: the latency of progress and of cancel
STOP_GRACE_S = 30.0  # after SIGINT (cancel or timeout) the job gets this long to stop cleanly, then SIGKILL
MAX_MODEL_BYTES = 4 * 2**30  # a bigger model is not shipped: the node reads it from a shared file system
# variables that describe the head's machine, not the job: the node keeps its own
NODE_LOCAL_ENV = ("OPLENS_RUNS_DIR", "OPLENS_LOCK_FILE", "OPLENS_EXECUTOR", ADDRESS_ENV, "PATH", "PYTHONPATH",
                  "HOME", "PWD", "TMPDIR", "CUDA_VISIBLE_DEVICES", "VIRTUAL_ENV")


class RayExecutorError(OpLensError):
    """The Ray cluster cannot take the job (unreachable, no measuring node, no GPU node); one line to act on."""


# --- on the head -------------------------------------------------------------------------------------------------


def connect() -> None:
    """Join the cluster at $OPLENS_RAY_ADDRESS (else "auto": the one started on this machine) unless connected.

    Ray's own log lines stay off our stderr unless $OPLENS_VERBOSE is set."""
    if ray.is_initialized():
        return
    address = os.environ.get(ADDRESS_ENV) or "auto"
    verbose = bool(os.environ.get("OPLENS_VERBOSE"))
    _probe(address)
    try:
        ray.init(address=address, log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR,
                 namespace="oplens")
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here (no cluster, version mismatch, auth): one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayExecutorError(f"cannot reach the Ray cluster at {address} ({first}); start one with `ray start "
                               f"--head` or set {ADDRESS_ENV} (docs/scale-out.md)") from None


def _probe(address: str, timeout_s: float = 3.0) -> None:
    # ray.init retries an unreachable address for minutes, printing C++ warnings on stderr: fail fast instead
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local": Ray resolves those itself and fails fast
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayExecutorError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); is `ray start "
                               f"--head` running there, and is {ADDRESS_ENV} its address?") from None


def job_payload(command: list[str]) -> dict:
    """The payload of a worker command (its last argument, a JSON object); {} when it has none."""
    try:
        payload = json.loads(command[-1]) if command else {}
    except json.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def wants_gpu(payload: dict, cluster_has_gpu: bool) -> bool:
    """Whether the job must run on a GPU node: it asks for CUDA, or for the best device while the cluster has GPUs."""
    device = str((payload.get("config") or {}).get("device") or "auto")
    return device.startswith("cuda") or (device == "auto" and cluster_has_gpu)


def placement(payload: dict) -> dict:
    """Actor options for the job: one `oplens_measure`, plus a GPU when it wants one; RayExecutorError when no node of
    the cluster could ever take it (rather than waiting forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    measuring = [r for r in nodes if r.get(MEASURE_RESOURCE, 0) >= 1]
    if not measuring:
        raise RayExecutorError(f"no node of the Ray cluster offers the '{MEASURE_RESOURCE}' resource: start measuring "
                               f"nodes with --resources '{{\"{MEASURE_RESOURCE}\": 1}}' (docs/scale-out.md)")
    gpu = wants_gpu(payload, any(r.get("GPU", 0) >= 1 for r in measuring))
    if gpu and not any(r.get("GPU", 0) >= 1 for r in measuring):
        raise RayExecutorError(f"the job asks for CUDA but no measuring node of the Ray cluster has a GPU "
                               f"(nodes with '{MEASURE_RESOURCE}': {len(measuring)}, all CPU-only)")
    return {"resources": {MEASURE_RESOURCE: 1}, "num_gpus": 1 if gpu else 0, "num_cpus": 0}


def model_path(spec: str | None) -> Path | None:
    """The local file or directory a model spec names (a .py spec without its `:factory`); None for sample models,
    Hub ids and paths that do not exist here."""
    if not spec or spec.startswith("hf:"):
        return None
    path = Path(os.path.expanduser(spec.rsplit(":", 1)[0] if ".py:" in spec else spec))
    return path.resolve() if path.exists() else None


def pack(paths: list[Path], root: Path) -> bytes:
    """A gzip tar of `paths` (files or folders), named relative to `root`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in paths:
            tar.add(p, arcname=str(p.relative_to(root)))
    return buf.getvalue()


def unpack(blob: bytes, into: Path) -> None:
    """Extract an archive made by `pack`; the "data" filter refuses absolute paths, links out and device files."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(into, filter="data")


def model_bundle(spec: str | None, limit: int = MAX_MODEL_BYTES) -> tuple[str, bytes] | None:
    """(name, archive) of the model file or directory a spec names on the head, with a TorchScript file's
    `<name>.inputs.pt` beside it. None when the spec names no local path (sample models, Hub ids) or one bigger than
    `limit`: that path is then used as it is on the node, which needs a shared file system."""
    path = model_path(spec)
    if path is None:
        return None
    sidecar = path.with_suffix(".inputs.pt")
    paths = [path] + ([sidecar] if path.is_file() and sidecar.is_file() and sidecar != path else [])
    size = sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    return (path.name, pack(paths, path.parent)) if size <= limit else None


def env_overrides(env: dict | None) -> dict:
    """What of the caller's environment travels to the node: the OPLENS_ settings and whatever the caller set
    differently from this process, without the variables that describe this machine (paths, runs dir, lock)."""
    if not env:
        return {}
    return {k: v for k, v in env.items()
            if (k.startswith("OPLENS_") or os.environ.get(k) != v) and k not in NODE_LOCAL_ENV}


def _replace_prefix(data, old: str, new: str):
    if isinstance(data, str):
        return new + data[len(old):] if data.startswith(old) else data
    if isinstance(data, dict):
        return {k: _replace_prefix(v, old, new) for k, v in data.items()}
    if isinstance(data, list):
        return [_replace_prefix(v, old, new) for v in data]
    return data


def bring_home(blob: bytes, runs: Path, node_model: str = "", head_model: str = "") -> list[str]:
    """Put the runs, comparisons and sweeps of a node's archive into the head's runs dir `runs`, each appearing whole
    (written aside, then renamed in); a node's model path in them becomes the head's. Returns what arrived."""
    arrived: list[str] = []
    with tempfile.TemporaryDirectory(dir=runs, prefix=".oplens-incoming-") as tmp:
        unpack(blob, Path(tmp))
        for f in Path(tmp).rglob("*.json"):
            if node_model and head_model:
                f.write_text(json.dumps(_replace_prefix(json.loads(f.read_text()), node_model, head_model), indent=1))
        for d in sorted(Path(tmp).iterdir()):
            if (d / store.RUN_FILE).is_file() and not (runs / d.name).exists():
                d.rename(runs / d.name)
                arrived.append(d.name)
        for folder in (store.COMPARISONS, store.SWEEPS):
            for f in sorted((Path(tmp) / folder).glob("*.json")):
                (runs / folder).mkdir(exist_ok=True)
                os.replace(f, runs / folder / f.name)
                arrived.append(f"{folder}/{f.name}")
    return arrived


def run(command: list[str], on_message: Callable[[dict], None], cancel: threading.Event, timeout_s: float | None,
        env: dict | None = None) -> int:
    """Run a worker command on a Ray node: Progress and Saved to `on_message` as they come, `cancel` and `timeout_s`
    forwarded as SIGINT, saved results brought into the head's runs dir, then the final message. Returns the child's
    exit code, or executors.TIMED_OUT when the timeout stopped it, as the local executor does.

    Messages are the job protocol's, as dicts. Failures of the cluster itself (unreachable, no node can take the job,
    the node lost) and a timeout arrive as one Failed; a job that died without a final line gets one worded by
    executors.died, with its last stderr line. `timeout_s` counts from the start on the node, not the wait for a free
    one."""
    payload = job_payload(command)
    head_env = env if env is not None else os.environ
    runs = store.runs_dir(payload.get("runs_dir") or head_env.get("OPLENS_RUNS_DIR"))
    try:
        store.check_writable(runs)
        connect()
        options = placement(payload)
        model = model_bundle(payload.get("spec"))
        head_model = str(model_path(payload.get("spec"))) if model else ""
    except OpLensError as exc:
        on_message(as_dict(Failed(str(exc))))
        return 1
    actor = NodeJob.options(**options).remote()
    try:
        return _follow(actor, command, model, env_overrides(env), on_message, cancel, timeout_s, runs, head_model)
    except ray.exceptions.RayError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        on_message(as_dict(Failed(f"the job was lost on the Ray cluster ({first}); runs saved before are unchanged")))
        return 1
    finally:
        try:
            ray.kill(actor)  # frees the node's oplens_measure for the next job; the child dies with the actor
        except ray.exceptions.RayError:
            pass  # the cluster is gone already, and the actor with it


def _follow(actor, command: list[str], model: tuple[str, bytes] | None, env: dict,
            on_message: Callable[[dict], None], cancel: threading.Event, timeout_s: float | None, runs: Path,
            head_model: str) -> int:
    def send(message: Message) -> None:
        on_message(as_dict(message))

    started = actor.start.remote(command, env, model)
    send(Progress("waiting for a free Ray node", 0.0))
    while not ray.wait([started], timeout=POLL_S)[0]:
        if cancel.is_set():  # still queued: nothing ran, nothing to stop on a node
            send(Cancelled("cancelled while waiting for a free Ray node"))
            return 1
    node, node_model = ray.get(started)
    send(Progress(f"running on Ray node {node}", 0.0))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    final, stopped_at, timed_out = None, None, False
    while True:
        lines, code, last_words = ray.get(actor.poll.remote(POLL_S))
        for data in lines:
            message = decode(data)
            if isinstance(message, FINAL):
                final = data  # held back until the results are home
            elif message is not None:
                on_message(data)  # Progress and Saved as they come
        if code is not None:
            break
        now = time.monotonic()
        if stopped_at is None and (cancel.is_set() or (deadline is not None and now > deadline)):
            timed_out = not cancel.is_set()
            ray.get(actor.signal.remote(signal.SIGINT))
            stopped_at = now
        elif stopped_at is not None and now - stopped_at > STOP_GRACE_S:
            ray.get(actor.signal.remote(signal.SIGKILL))
            stopped_at = float("inf")  # killed once is enough
    send(Progress("bringing the results back from the Ray node", 1.0))
    blob = ray.get(actor.saved.remote())
    if final is not None and node_model and head_model:
        final = _replace_prefix(final, node_model, head_model)  # a search's comparison names the model's path too
    try:
        bring_home(blob, runs, node_model, head_model)
    except (OSError, tarfile.TarError, json.JSONDecodeError) as exc:
        final = as_dict(Failed(f"the job ran on Ray node {node} but its results could not be brought into {runs}: "
                               f"{exc}"))
    if timed_out and not isinstance(decode(final) if final else None, Done):
        send(Failed(f"timed out after {timeout_s:g} s on Ray node {node}"))
        return TIMED_OUT
    if final is None:
        we_killed = f"it did not stop within {STOP_GRACE_S:g} s of SIGINT and was killed"
        process = f"the {job_payload(command).get('kind', 'profile')} process on Ray node {node}"
        final = as_dict(Failed(died(process, code, last_words,
                                    why=we_killed if stopped_at == float("inf") else "")))
    on_message(final)
    return code


# --- on the node ---------------------------------------------------------------------------------------------------


def _child_setup() -> None:
    # Ray's worker threads block SIGINT, and a child inherits the mask: unblocked, or cancel would never arrive
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if sys.platform == "linux":  # the child gets SIGKILL when the actor's process dies (ray.kill, a lost head)
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@ray.remote(max_restarts=0)
class NodeJob:
    """One job's child process on a node, with its own runs dir; the head polls it for lines."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="oplens-ray-job-"))
        self.runs = self.dir / "runs"
        self.proc: subprocess.Popen | None = None
        self.lines: list[dict] = []
        self.finished = False
        self.stderr: deque[str] = deque(maxlen=5)
        self.changed = threading.Condition()

    def start(self, command: list[str], env: dict, model: tuple[str, bytes] | None) -> tuple[str, str]:
        """Start the job here; returns this node's address and where the shipped model lies ("" if none)."""
        payload, node_model = job_payload(command), ""
        if model is not None:
            unpack(model[1], self.dir / "model")
            node_model = str(self.dir / "model" / model[0])
            spec = payload.get("spec", "")
            payload["spec"] = node_model + (":" + spec.rsplit(":", 1)[1] if ".py:" in spec else "")
        payload["runs_dir"] = str(self.runs)
        config = payload.get("config") or {}
        if str(config.get("device", "")).startswith("cuda:"):
            config["device"] = "cuda"  # the head's GPU index means nothing here; Ray made the assigned GPU visible
        argv = list(command[:-1]) + [json.dumps(payload)] if payload else list(command)
        if argv and Path(argv[0]).name.startswith("python"):
            argv[0] = sys.executable  # the head's interpreter path need not exist on this node
        root = str(Path(__file__).resolve().parents[1])  # this node's OpLens, for `python -m profiler.jobs`
        child_env = {**os.environ, **env, "OPLENS_RUNS_DIR": str(self.runs),
                     "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        if node_model:  # the head allowed the model where it lay; its copy here lies in this job's own folder
            child_env["OPLENS_DATA_DIRS"] = os.pathsep.join(
                p for p in (str(self.dir / "model"), child_env.get("OPLENS_DATA_DIRS")) if p)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env,
                                     cwd=self.dir, preexec_fn=_child_setup)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(line.rstrip() for line in self.proc.stderr),
                         daemon=True).start()
        return ray.util.get_node_ip_address(), node_model

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue  # a model printing to stdout: not ours
            if isinstance(msg, dict):
                with self.changed:
                    self.lines.append(msg)
                    self.changed.notify_all()
        self.proc.wait()
        with self.changed:
            self.finished = True  # after the last line: a poll that sees it has every line
            self.changed.notify_all()

    def poll(self, wait_s: float) -> tuple[list[dict], int | None, str]:
        """Lines since the last poll (waiting up to `wait_s` for one); once the child has exited and every line is
        read, its exit code and last non-empty stderr line, else (None, "")."""
        with self.changed:
            if not self.lines and not self.finished:
                self.changed.wait(wait_s)
            lines, self.lines, finished = self.lines, [], self.finished
        if not finished:
            return lines, None, ""
        return lines, self.proc.returncode, next((s for s in reversed(self.stderr) if s.strip()), "")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def saved(self) -> bytes:
        """Everything the job saved in its runs dir, as one archive; the job's folder is removed."""
        self.runs.mkdir(exist_ok=True)
        blob = pack(sorted(self.runs.iterdir()), self.runs)
        shutil.rmtree(self.dir, ignore_errors=True)
        return blob
