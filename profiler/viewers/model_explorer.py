"""A run's graph in Google's Model Explorer (`pip install ai-edge-model-explorer`; its web app ships in the wheel and
works offline): the graph as Model Explorer's JSON graph collection, module paths as its collapsible layers, and per
node T_exec, T_trans, FLOPs and roofline bound as node-data overlays.

`export` writes the files (plain JSON: no Model Explorer needed to write them); `start` serves them with Model
Explorer's own server in a child process on loopback, so a page rerun or a Ctrl-C never leaves it half-started.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from profiler.analysis import roofline as rl
from profiler.schema import OpLensError, Peaks, ProfileRun

GRAPH_FILE = "graph.json"
# overlay file name -> (GraphNode field or roofline bound, scale, colours from low to high)
OVERLAYS = {
    "exec_ms.json": ("exec_ms", 1.0),
    "trans_ms.json": ("trans_ms", 1.0),
    "gflop.json": ("flops", 1e-9),
}
BOUND_FILE = "roofline_bound.json"
BOUNDS = {"compute": 0, "memory": 1, "overhead": 2}  # node-data values are numbers: thresholds colour them
LOW, HIGH = "#ffffff", "#d62728"  # white to red: the hot nodes stand out
HEALTH = "model_explorer_ok"  # what Model Explorer's /check_health answers


class ViewerError(OpLensError):
    """Model Explorer is missing or did not start."""


@dataclass
class ExplorerFiles:
    graph: Path
    overlays: list[Path]


def graph_id(run: ProfileRun) -> str:
    return run.model.name or run.id


def _namespace(module: str) -> str:
    # Model Explorer nests layers on "/": each module path component becomes a collapsible layer
    return module.replace(".", "/")


def graph_collection(run: ProfileRun) -> dict:
    """The run's graph as a Model Explorer graph collection ({label, graphs: [{id, nodes}]})."""
    ids = {n.id for n in run.graph.nodes}
    nodes = []
    for n in run.graph.nodes:
        attrs = {"op": n.op, "kind": n.kind, "module": n.module, "exec_ms": f"{n.exec_ms:.6g}",
                 "trans_ms": f"{n.trans_ms:.6g}", "flops": f"{n.flops:.6g}"}
        node = {"id": n.id, "label": n.op.split("::")[-1] if n.kind != "placeholder" else n.id,
                "namespace": "inputs" if n.kind == "placeholder" else _namespace(n.module),
                "attrs": [{"key": k, "value": v} for k, v in attrs.items() if v],
                "incomingEdges": [{"sourceNodeId": src, "sourceNodeOutputId": "0", "targetNodeInputId": str(i)}
                                  for i, src in enumerate(x for x in n.inputs if x in ids)]}
        if n.output_shape:
            shape = n.output_shape.replace(" ", "")
            node["outputsMetadata"] = [{"id": "0", "attrs": [{"key": "tensor_shape",
                                                              "value": f"{n.output_dtype}{shape}"}]}]
        nodes.append(node)
    label = f"{run.model.name} · {run.id} ({run.graph.method})"
    return {"label": label, "graphs": [{"id": graph_id(run), "nodes": nodes}]}


def _gradient() -> list[dict]:
    return [{"stop": 0, "bgColor": LOW}, {"stop": 1, "bgColor": HIGH}]


def node_data(run: ProfileRun, peaks: Peaks | None = None) -> dict[str, dict]:
    """Overlay file name -> Model Explorer node data ({graph id: {results: {node id: {value}}, ...}}): per node
    exec and transfer ms, GFLOP, and with the machine's peaks each node's roofline bound (0 compute, 1 memory,
    2 overhead)."""
    gid = graph_id(run)
    timed = [n for n in run.graph.nodes if n.kind not in ("placeholder", "output")]
    out = {}
    for name, (field, scale) in OVERLAYS.items():
        # 4 significant digits: what the viewer's tables can show, not the timer's float noise
        results = {n.id: {"value": float(f"{getattr(n, field) * scale:.4g}")} for n in timed}
        out[name] = {gid: {"results": results, "gradient": _gradient()}}
    if peaks is not None:
        points = rl.node_point_map(run, peaks)
        out[BOUND_FILE] = {gid: {"results": {i: {"value": BOUNDS[p.bound]} for i, p in points.items()},
                                 "thresholds": [{"value": 0, "bgColor": "#2ca02c"}, {"value": 1, "bgColor": "#ff7f0e"},
                                                {"value": 2, "bgColor": HIGH}]}}
    return out


def export(run: ProfileRun, out_dir: str | os.PathLike, peaks: Peaks | None = None) -> ExplorerFiles:
    """Write the graph and its overlays under `out_dir` (created); returns their paths."""
    if not run.graph.nodes:
        raise OpLensError(f"run {run.id} has no graph (method '{run.graph.method}'): profile it without --no-graph")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        graph = out / GRAPH_FILE
        graph.write_text(json.dumps(graph_collection(run)))
        overlays = []
        for name, data in node_data(run, peaks).items():
            (out / name).write_text(json.dumps(data))
            overlays.append(out / name)
    except OSError as exc:
        raise OpLensError(f"cannot write the graph files to {out}: {exc.strerror or exc}") from None
    return ExplorerFiles(graph=graph, overlays=overlays)


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("model_explorer") is not None


def _config(files: ExplorerFiles):
    import model_explorer

    cfg = model_explorer.config()
    cfg.add_model_from_path(str(files.graph))
    for path in files.overlays:
        cfg.add_node_data_from_path(str(path))
    return cfg


def url(files: ExplorerFiles, host: str, port: int) -> str:
    """The address that opens the graph with its overlays in a Model Explorer server at host:port."""
    return f"http://{host}:{port}/?data={_config(files).to_url_param_value()}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Viewer:
    process: subprocess.Popen
    url: str
    port: int
    files: ExplorerFiles | None = None
    owned_dir: Path | None = None  # a temporary folder of its files, removed when it stops

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)


def start(files: ExplorerFiles, host: str = "127.0.0.1", port: int | None = None, log: str | os.PathLike | None = None,
          timeout_s: float = 60.0, owned_dir: Path | None = None) -> Viewer:
    """Serve the files with Model Explorer in a child process; returns once it answers (ViewerError if it does
    not within `timeout_s`). Its own output goes to `log` (default: our stderr)."""
    if not available():
        raise ViewerError("Model Explorer is not installed: pip install ai-edge-model-explorer "
                          "(or --export DIR to only write the files)")
    port = port or free_port(host)
    payload = json.dumps({"graph": str(files.graph), "overlays": [str(p) for p in files.overlays], "host": host,
                          "port": port})
    # its chatter goes to our stderr, which the CLI sends to its log file unless --verbose
    sink = open(log, "a") if log else sys.stderr.fileno()  # noqa: SIM115 - handed to the child, closed below
    try:
        # a session of its own: the terminal's Ctrl-C reaches us, and we stop it
        proc = subprocess.Popen([sys.executable, "-m", "profiler.viewers.model_explorer", payload], stdout=sink,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log:
            sink.close()
    viewer = Viewer(process=proc, url=url(files, host, port), port=port, files=files, owned_dir=owned_dir)
    atexit.register(viewer.stop)  # its own session outlives us otherwise (a dashboard server that exits)
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise ViewerError(f"Model Explorer exited with code {proc.returncode} before serving"
                                  + (f"; see {log}" if log else ""))
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/check_health", timeout=2) as r:
                    if r.read().decode() == HEALTH:
                        return viewer
            except OSError:
                pass
            time.sleep(0.3)
    except BaseException:  # a Ctrl-C or SIGTERM while it starts stops it too
        viewer.stop()
        raise
    viewer.stop()
    raise ViewerError(f"Model Explorer did not answer on {host}:{port} within {timeout_s:.0f} s")


def serve_run(run: ProfileRun, peaks: Peaks | None = None, port: int | None = None,
              log: str | os.PathLike | None = None) -> Viewer:
    """Write the run's files (with `peaks` for the roofline overlay, none without them) to a temporary folder and
    serve them: what `python -m profiler explore` and the Graph page's button do."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="oplens-explorer-"))
    try:
        files = export(run, folder, peaks)
        return start(files, port=port, log=log, owned_dir=folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _serve(args: dict) -> None:
    """The child: Model Explorer's server with our files, no browser, until terminated."""
    from model_explorer import server

    files = ExplorerFiles(graph=Path(args["graph"]), overlays=[Path(p) for p in args["overlays"]])
    server.start(host=args["host"], port=args["port"], config=_config(files), no_open_in_browser=True)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
