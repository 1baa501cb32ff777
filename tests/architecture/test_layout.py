"""The house rules of issue #19, checked on the source: profiler/ by stage with no import circle (imports inside
functions, under TYPE_CHECKING and by importlib.import_module("...") count), none of the arrows that must never
exist, and no module or function past its size without a stated reason."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("profiler", "optimizers", "dashboard", "sample_models")
STAGES = ("models", "measure", "traces", "analysis", "viewers", "jobs", "cli")
# the package's face may reach every stage: it is what `import profiler` and `python -m profiler` give
FACE = ("profiler", "profiler.__main__")
NEVER = [  # (from, to, why)
    ("models", ("measure", "traces", "analysis"), "a model source needs nothing measured or read"),
    ("traces", ("measure",), "an imported trace needs nothing live"),
    ("measure", ("analysis",), "measuring draws no conclusions"),
]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# modules and functions allowed past the limits, each with its reason
LONG_MODULES = {
    "profiler/schema.py": "the data contract: every dataclass a run's, a comparison's and a search's JSON holds, "
                          "in one file a reader checks the JSON against",
}
LONG_FUNCTIONS = {
    "dashboard/app_pages": "Streamlit pages are scripts, read top to bottom; their loops render and decide nothing",
    "profiler/traces/columns.py:load": "one pass over hundreds of thousands of events with the per-event work inlined "
                                       "(a helper call per event shows in benchmarks/trace_import.py); the rare kinds "
                                       "and the skipped-events report are helpers",
}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = modules()


def _resolve(name: str) -> str | None:
    """The module a dotted import name refers to (the longest prefix that is one of ours)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def imports(mod: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == \
                "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        for n in names:
            target = _resolve(n)
            if target and target != mod:
                found.add(target)
    # `from profiler.x import y` names both profiler.x and profiler.x.y: keep the most specific
    return {t for t in found if not any(o != t and o.startswith(t + ".") and o in found and _is_parent_import(t)
                                        for o in found)}


def _is_parent_import(t: str) -> bool:
    return MODULES[t].name == "__init__.py"


GRAPH = {m: imports(m, p) for m, p in MODULES.items()}


def stage(mod: str) -> str | None:
    parts = mod.split(".")
    if parts[0] != "profiler":
        return parts[0]
    if len(parts) == 1:
        return "face"
    return parts[1] if parts[1] in STAGES else "root"


def test_no_import_circle():
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in GRAPH:
        if m not in index:
            visit(m)
    # a package importing its own submodules (its __init__ re-exporting them) is no circle
    circles = [c for c in circles if not all(x == c[0] or x.startswith(c[0] + ".") for x in c)]
    assert circles == []


def arrows() -> list[tuple[str, str]]:
    return [(a, b) for a, targets in GRAPH.items() for b in targets]


def test_root_files_reach_no_stage():
    bad = [(a, b) for a, b in arrows() if stage(a) == "root" and a not in FACE and stage(b) in STAGES]
    assert bad == []


@pytest.mark.parametrize("source, targets, why", NEVER)
def test_never_arrows(source, targets, why):
    bad = [(a, b) for a, b in arrows() if stage(a) == source and stage(b) in targets]
    assert bad == [], why


def test_only_the_cli_reaches_optimizers_or_dashboard():
    bad = [(a, b) for a, b in arrows()
           if a.startswith("profiler") and stage(a) != "cli" and stage(b) in ("optimizers", "dashboard")]
    assert bad == []


def test_analysis_never_measures():
    bad = [(a, b) for a, b in arrows() if stage(a) == "analysis" and stage(b) in ("measure", "jobs")]
    assert bad == []


def test_pages_and_lessons_live_in_the_dashboard():
    assert not any(m.startswith("profiler") and m.split(".")[-1] in ("lessons", "bottlenecks") for m in MODULES)
    assert "profiler.analysis.findings" in MODULES and "profiler.op_categories" in MODULES


def _reason(rel: str, table: dict) -> str | None:
    return next((why for prefix, why in table.items() if rel.startswith(prefix)), None)


def test_module_sizes():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert {f: n for f, n in long.items() if not _reason(f, LONG_MODULES)} == {}


def test_function_sizes():
    long = {}
    for p in MODULES.values():
        rel = str(p.relative_to(ROOT))
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and not _reason(f"{rel}:{node.name}", LONG_FUNCTIONS) \
                        and not _reason(rel, LONG_FUNCTIONS):
                    long[f"{rel}:{node.name}"] = n
    assert long == {}


def test_op_names_are_listed_once():
    """No module but op_categories spells a list of operator names (a family): tuples, lists and sets of two or more
    "namespace::op" strings live in the one vocabulary. (A formula table keyed by op names is no family.)"""
    import re

    op = re.compile(r"^(aten|mkldnn|onednn|quantized|mkl|quantized_decomposed|torchao|prim)::")
    where = []
    for mod, path in MODULES.items():
        if mod == "profiler.op_categories":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                         and op.match(e.value)]
                if len(names) >= 2:
                    where.append(f"{path.relative_to(ROOT)}:{node.lineno} {names[:3]}")
    assert where == []
