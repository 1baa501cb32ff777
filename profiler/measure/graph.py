"""The model's computation graph G = (V, E) with per-node FLOPs and measured T_exec / T_trans.

Capture: torch.export (TorchScript files via its converter), falling back to fx symbolic tracing, falling back to
the module tree for models neither can trace; the method used is recorded. Per-node times come from running the
captured graph node by node, each node wrapped in a record_function tag, under torch.profiler: a node's time is the
self time of the ATen ops inside its tag, the same quantity the operator table sums, so the two reconcile.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch import nn
from torch.profiler import profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from profiler.measure import flops as flops_mod
from profiler.measure.ops import time_by_tag
from profiler.schema import Graph, GraphNode, error_line

NODE_TAG = "oplens.node:"


@dataclass
class Captured:
    method: str
    gm: fx.GraphModule | None
    flat_inputs: list | None
    note: str = ""


def capture(module: nn.Module, args: tuple, kwargs: dict, exported: torch.export.ExportedProgram | None = None
            ) -> Captured:
    """Try torch.export (or use `exported`, the program the model was loaded from), then fx; never raises: an
    untraceable model falls back to its module tree."""
    notes = []
    ep = exported
    try:
        if ep is None and isinstance(module, torch.jit.ScriptModule):
            if not any(True for _ in module.parameters()):
                # frozen TorchScript (weights inlined as constants) crashes the converter outright in torch 2.13
                raise RuntimeError("frozen TorchScript cannot be converted to a graph")
            from torch._export.converter import TS2EPConverter

            ep = TS2EPConverter(module, args, kwargs or None).convert()
        elif ep is None:
            ep, kwargs = _export(module, args, kwargs, notes)  # the graph is fed what it was traced with
        gm = ep.module()
        flat = pytree.tree_leaves((args, kwargs))
        return Captured("torch.export", gm, flat, note="; ".join(notes))
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: try the next method
        notes.append(f"torch.export failed ({error_line(exc)})")
    if _quantized_modules(module):
        try:
            gm, kwargs = _export_quantized(module, args, kwargs, notes)
            notes.append("exported with float stand-ins for the int8 modules; their nodes run (and are timed on) the "
                         "int8 modules themselves")
            return Captured(QUANTIZED_METHOD, gm, pytree.tree_leaves((args, kwargs)), note="; ".join(notes))
        except Exception as exc:  # noqa: BLE001
            notes.append(f"torch.export with float stand-ins failed ({error_line(exc)})")
    if not kwargs and not isinstance(module, torch.jit.ScriptModule):
        try:
            gm = fx.symbolic_trace(module)
            return Captured("fx", gm, list(args), note="; ".join(notes))
        except Exception as exc:  # noqa: BLE001
            notes.append(f"fx tracing failed ({error_line(exc)})")
    return Captured("module-tree", None, None, note="; ".join(notes) + "; showing the module tree instead")


def _export(module: nn.Module, args: tuple, kwargs: dict, notes: list[str]):
    """The exported program and the kwargs it was exported with."""
    try:
        return torch.export.export(module, args, kwargs, strict=False), kwargs
    except Exception as exc:  # noqa: BLE001
        # HF decoders return a KV-cache object export cannot flatten; the forward pass itself is the same without it
        config = getattr(module, "config", None)
        if "Cache" in str(exc) and getattr(config, "use_cache", False) and "use_cache" not in kwargs:
            kwargs = {**kwargs, "use_cache": False}
            notes.append("graph exported with use_cache=False (the KV cache object cannot be exported)")
            return torch.export.export(module, args, kwargs, strict=False), kwargs
        raise


QUANTIZED_METHOD = "torch.export+int8"


def _float_linear(q: nn.Module) -> nn.Linear:
    """An nn.Linear with the dequantized weights of a dynamic int8 Linear: the same data flow, exportable."""
    bias = q.bias()
    lin = nn.Linear(q.in_features, q.out_features, bias=bias is not None)
    lin.weight = nn.Parameter(q.weight().dequantize(), requires_grad=False)
    if bias is not None:
        lin.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return lin


# int8 module type -> a float module computing the same thing, which torch.export can trace (packed int8 params
# cannot be: LinearPackedParamsBase has no __obj_flatten__ in torch 2.13)
_STAND_INS: dict[type, Callable[[nn.Module], nn.Module]] = {torch.ao.nn.quantized.dynamic.Linear: _float_linear}


def _quantized_modules(module: nn.Module) -> dict[str, nn.Module]:
    if isinstance(module, torch.jit.ScriptModule):
        return {}
    return {name: m for name, m in module.named_modules() if _stand_in(m) is not None}


def _stand_in(m: nn.Module) -> Callable[[nn.Module], nn.Module] | None:
    """The stand-in maker for an int8 module, subclasses included (the full-range dynamic Linear is one)."""
    return next((make for cls, make in _STAND_INS.items() if isinstance(m, cls)), None)


def _export_quantized(module: nn.Module, args: tuple, kwargs: dict, notes: list[str]):
    """Export the float structure (int8 modules swapped for float stand-ins, then swapped back), and point each
    stand-in's node at the real int8 module: a data-flow graph whose nodes run the optimized model's own kernels."""
    real = _quantized_modules(module)
    for name, m in real.items():
        module.set_submodule(name, _stand_in(m)(m))
    try:
        ep, kwargs = _export(module, args, kwargs, notes)
    finally:
        for name, m in real.items():
            module.set_submodule(name, m)
    gm = ep.module()
    mapped = set()
    for node in list(gm.graph.nodes):
        path = _module_path(node)
        if node.op != "call_function" or node.target is not torch.ops.aten.linear.default or path not in real:
            continue
        target = "oplens_int8_" + path.replace(".", "_")
        if not hasattr(gm, target):
            gm.add_module(target, real[path])
        with gm.graph.inserting_before(node):
            # named after the float node it replaces (linear_3 -> linear_3_int8): base and optimized graphs pair up
            new = gm.graph.create_node("call_module", target, (node.args[0],), name=f"{node.name}_int8")
        new.meta = dict(node.meta)  # keeps nn_module_stack: the node reports the model's own module path
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        mapped.add(path)
    if mapped != set(real):
        raise RuntimeError(f"{len(real) - len(mapped)} int8 modules found no node in the exported graph")
    gm.graph.eliminate_dead_code()  # the stand-ins' weights
    gm.recompile()
    return gm, kwargs


class _NodeInterpreter(fx.Interpreter):
    """Runs a graph node by node, tagging each node for the profiler and remembering output metadata."""

    def __init__(self, gm: fx.GraphModule, tag: bool, flops: FlopCounterMode | None = None):
        super().__init__(gm)
        self.tag = tag
        self.flop_mode = flops
        self.outputs: dict[str, tuple[str, str]] = {}
        self.flops: dict[str, float] = {}

    def run_node(self, n: fx.Node) -> Any:
        before = self.flop_mode.get_total_flops() if self.flop_mode is not None else 0
        if self.tag:
            with record_function(NODE_TAG + n.name):
                result = super().run_node(n)
        else:
            result = super().run_node(n)
        if self.flop_mode is not None:
            self.flops[n.name] = float(self.flop_mode.get_total_flops() - before)
            self.outputs[n.name] = _describe(result)
        return result


def _describe(value: Any) -> tuple[str, str]:
    if isinstance(value, torch.Tensor):
        return str(list(value.shape)), str(value.dtype).replace("torch.", "")
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return str([list(v.shape) for v in value if isinstance(v, torch.Tensor)]), str(value[0].dtype).replace(
            "torch.", ""
        )
    return "", type(value).__name__ if value is not None else ""


def _module_path(n: fx.Node) -> str:
    stack = n.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1]
        path = path[0] if isinstance(path, tuple) else path
        return str(path).replace("L['self'].", "").replace("L['self']", "")
    if n.op == "call_module":
        return str(n.target)
    return ""


def _op_name(n: fx.Node) -> str:
    if n.op == "call_function":
        name = getattr(n.target, "__name__", str(n.target))
        if isinstance(n.target, torch._ops.OpOverload):
            name = str(n.target.overloadpacket).replace("aten.", "aten::", 1)
        return name
    if n.op == "call_method":
        return f"Tensor.{n.target}"
    if n.op == "call_module":  # _get_name: DynamicQuantizedLinear, where the class name says only Linear
        return (
            n.graph.owning_module.get_submodule(str(n.target))._get_name() if n.graph.owning_module else str(n.target)
        )
    return n.op


def _graph_nodes(gm: fx.GraphModule, times: dict, interp: _NodeInterpreter) -> list[GraphNode]:
    nodes = []
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            continue  # parameters and buffers: hundreds of nodes that carry weights, not work
        ex, tr, _ = times.get(n.name, (0.0, 0.0, 0.0))
        shape, dtype = interp.outputs.get(n.name, ("", ""))
        nodes.append(GraphNode(
            id=n.name, op=_op_name(n), kind=n.op, module=_module_path(n),
            inputs=[a.name for a in n.all_input_nodes if a.op != "get_attr"],
            output_shape=shape, output_dtype=dtype, flops=interp.flops.get(n.name, 0.0), exec_ms=ex, trans_ms=tr))
    return nodes


def _profile_runs(run_once: Callable[[], Any], iterations: int, activities, device: torch.device):
    with profile(activities=activities, with_flops=False) as prof:
        for _ in range(iterations):
            run_once()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof.events()


def profile_graph(captured: Captured, module: nn.Module, args: tuple, kwargs: dict, device: torch.device,
                  iterations: int, activities) -> Graph:
    """Time every node of a captured graph; module-tree graphs are timed with forward hooks instead."""
    on_cuda = device.type == "cuda"
    if captured.gm is None:
        return _module_tree(module, args, kwargs, device, iterations, activities, captured.note)
    gm, flat = captured.gm, captured.flat_inputs
    with torch.inference_mode(), flops_mod.counter() as flop_mode:
        meta = _NodeInterpreter(gm, tag=False, flops=flop_mode)
        meta.run(*flat)
    timed = _NodeInterpreter(gm, tag=True)
    with torch.inference_mode():
        events = _profile_runs(lambda: timed.run(*flat), iterations, activities, device)
    times = time_by_tag(events, NODE_TAG, iterations, on_cuda)
    nodes = _graph_nodes(gm, times, meta)
    return _finish(captured.method, nodes, captured.note)


def _finish(method: str, nodes: list[GraphNode], note: str) -> Graph:
    timed = [n for n in nodes if n.exec_ms + n.trans_ms > 0]
    return Graph(method=method, nodes=nodes, note=note.strip("; "), timed_nodes=len(timed),
                 exec_ms=sum(n.exec_ms for n in nodes), trans_ms=sum(n.trans_ms for n in nodes))


def _module_tree(module: nn.Module, args, kwargs, device, iterations, activities, note: str) -> Graph:
    """Fallback graph: one node per module (self time: ops not inside a child), edges in execution order."""
    if isinstance(module, torch.jit.ScriptModule):
        nodes = [GraphNode(id=name or "<root>", op=getattr(m, "original_name", type(m).__name__), kind="module",
                           module=name, inputs=[]) for name, m in module.named_modules()]
        return Graph(
            method="module-tree",
            nodes=nodes,
            note=(note + "; TorchScript modules take no hooks, so nodes are untimed").strip("; "),
        )
    order: list[str] = []
    live: dict[int, Any] = {}
    handles = []

    def pre(name):
        def hook(mod, inp):
            rf = record_function(NODE_TAG + (name or "<root>"))
            rf.__enter__()
            live.setdefault(id(mod), []).append(rf)
            if name not in order:
                order.append(name)
        return hook

    def post(mod, inp, out):
        stack = live.get(id(mod))
        if stack:
            stack.pop().__exit__(None, None, None)

    names = {}
    for name, m in module.named_modules():
        names[name] = type(m).__name__
        handles.append(m.register_forward_pre_hook(pre(name)))
        handles.append(m.register_forward_hook(post))
    try:
        with torch.inference_mode():
            events = _profile_runs(lambda: module(*args, **kwargs), iterations, activities, device)
    finally:
        for h in handles:
            h.remove()
    times = time_by_tag(events, NODE_TAG, iterations, device.type == "cuda")
    with torch.inference_mode():
        own_flops = flops_mod.module_flops(lambda: module(*args, **kwargs))
    nodes, prev = [], None
    for name in order:
        key = name or "<root>"
        ex, tr, _ = times.get(key, (0.0, 0.0, 0.0))
        nodes.append(GraphNode(id=key, op=names[name], kind="module", module=name, inputs=[prev] if prev else [],
                               flops=own_flops.get(name, 0.0), exec_ms=ex, trans_ms=tr))
        prev = key
    return _finish("module-tree", nodes, note + "; edges follow execution order, not data flow")
