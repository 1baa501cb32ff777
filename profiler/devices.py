"""Which device to run on, what it is (and a GPU's published peaks), and how to time work on it. Nothing else in
OpLens assumes CUDA."""
from __future__ import annotations

import json
import platform
import re
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from profiler.schema import DeviceInfo, ModelRunError, Peaks

# CPU features that decide which optimization wins (bf16 and int8 kernels differ by ISA).
_INTERESTING_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "avx512_fp16",
    "amx_fp16",
    "fma",
)
# which flags give a precision its own instructions; without them torch emulates it (bf16: ~10x slower than fp32)
NATIVE_FLAGS = {"bf16": {"avx512_bf16", "amx_bf16"}, "fp16": {"avx512_fp16", "amx_fp16"}}
VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}  # int8 dot products that add in int32 (8-bit activations)


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype a run config names; ModelRunError for any other name."""
    dtype = DTYPES.get(name)
    if dtype is None:
        raise ModelRunError(f"unknown dtype '{name}': use float32, bfloat16 or float16")
    return dtype


def library_versions() -> dict[str, str]:
    """Versions of the libraries a run's numbers depend on (torch, and transformers/numpy when present)."""
    out = {"torch": torch.__version__}
    for name in ("transformers", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def cuda_available() -> bool:
    return torch.cuda.is_available()


def available_devices() -> list[str]:
    """Devices a user can pick, best first."""
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] + ["cpu"]


def resolve_device(requested: str = "auto") -> torch.device:
    """'auto' -> first CUDA GPU, else CPU; an explicit CUDA request without CUDA is an error, not a silent fallback."""
    if requested in ("auto", "", None):
        return torch.device("cuda:0" if cuda_available() else "cpu")
    try:
        dev = torch.device(requested)
    except RuntimeError as exc:
        raise ModelRunError(f"unknown device '{requested}': use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not cuda_available():
            raise ModelRunError(f"device '{requested}' asked for, but no CUDA GPU is available here; use --device cpu")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ModelRunError(
                f"device '{requested}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
            )
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise ModelRunError(f"device type '{dev.type}' is not supported: use cpu or cuda")
    return dev


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in _INTERESTING_FLAGS if f in flags]
    except OSError:
        pass
    return []


def emulated_precisions(features: list[str] | None = None) -> list[str]:
    """The low precisions this CPU has no instructions for (so torch converts to fp32 and back around each op)."""
    have = set(cpu_features() if features is None else features)
    return [p for p, flags in NATIVE_FLAGS.items() if not flags & have]


def kernel_isas(features: list[str] | None = None) -> tuple[str, str]:
    """(torch's dispatch ISA, what the GEMM kernels use) on this CPU. torch reports its own dispatch level; oneDNN
    (fp32/bf16 GEMMs) and fbgemm (int8 Linears) pick the widest ISA the flags allow, which this mirrors."""
    have = set(cpu_features() if features is None else features)
    try:
        torch_isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - very old builds
        torch_isa = ""
    width = "AVX-512" if "avx512f" in have else "AVX2" if "avx2" in have else ""
    vnni = ("avx512_vnni" if width == "AVX-512" else "avx_vnni") in have
    if "amx_tile" in have:
        onednn = "AVX-512 + AMX tiles"
    elif "avx512_bf16" in have:
        onednn = "AVX-512 + BF16"
    else:
        onednn = width + (" + VNNI" if vnni else "") if width else "SSE4"
    if not width:
        fbgemm = "reference"
    else:  # without VNNI fbgemm's AVX2 int8 kernels keep activations to 7 bits (vpmaddubsw saturates)
        fbgemm = width + (" VNNI" if vnni else " (7-bit activations, no VNNI)" if width == "AVX2" else "")
    return torch_isa, f"oneDNN {onednn}; int8 fbgemm {fbgemm}"


def capability_line(info: DeviceInfo) -> str:
    """One line on what a CPU really has and what torch's kernels use on it (empty for a GPU or an old run)."""
    if info.kind != "cpu" or not (info.cpu_features or info.kernels):
        return ""
    have = set(info.cpu_features)
    simd = ("AMX" if "amx_tile" in have else "AVX-512" if "avx512f" in have else "AVX2" if "avx2" in have
            else "no AVX2")
    int8 = "VNNI" if have & VNNI_FLAGS else "no VNNI"
    emulated = info.emulated
    native = [p for p in NATIVE_FLAGS if p not in emulated]
    parts = [simd, int8, ("native " + ", ".join(native)) if native else ""]
    if emulated:
        parts.append("emulated " + ", ".join(emulated) + " (expect a slowdown)")
    line = ", ".join(p for p in parts if p)
    return line + (f"; kernels: {info.kernels}" if info.kernels else "")


def device_info(device: torch.device) -> DeviceInfo:
    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:
        tf_version = None
    common = dict(
        threads=torch.get_num_threads(), torch=torch.__version__, transformers=tf_version, cpu_features=cpu_features()
    )
    if device.type == "cpu":
        isa, kernels = kernel_isas(common["cpu_features"])
        common.update(cpu_isa=isa, kernels=kernels, emulated=emulated_precisions(common["cpu_features"]))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return DeviceInfo(kind="cuda", name=props.name, index=device.index or 0, total_memory_bytes=props.total_memory,
                          capability=f"{props.major}.{props.minor}", **common)
    try:
        import psutil

        total = psutil.virtual_memory().total
    except ImportError:
        total = None
    return DeviceInfo(kind="cpu", name=cpu_name(), total_memory_bytes=total, **common)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Times one region in milliseconds: CUDA events on a GPU (device time), perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    @contextmanager
    def time(self, out: list[float]):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)
            start.record()
            yield
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            yield
            out.append((time.perf_counter() - t0) * 1e3)


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text
            or "can't allocate memory" in text or "cannot allocate memory" in text)


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def oom_message(exc: BaseException, what: str, lower: str = "the batch size or sequence length") -> str:
    """One line for an allocation that failed: how much was asked for (when the allocator says), what is
    available, and what to lower."""
    text = str(exc)
    asked = ""
    if m := re.search(r"allocate (\d+) bytes", text):  # CPU allocator
        asked = f" asked for {_gib(int(m.group(1)))}"
    elif m := re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]i?B)", text):  # CUDA caching allocator
        asked = f" asked for {m.group(1)}"
    where = "GPU memory" if "cuda" in text.lower() or isinstance(exc, torch.OutOfMemoryError) else "memory"
    have = ""
    if where == "memory":
        try:
            import psutil

            have = f"; {_gib(psutil.virtual_memory().available)} is available"
        except ImportError:
            pass
    return f"out of {where}: {what}{asked}{have}. Lower {lower}"


# ---------------------------------------------------------------- published peaks

SPECS_FILE = Path(__file__).parent / "data" / "gpu_specs.json"

def gpu_specs() -> dict[str, dict]:
    return {k: v for k, v in json.loads(SPECS_FILE.read_text()).items() if not k.startswith("_")}


def _spec_key(gpu_name: str) -> str | None:
    words = gpu_name.upper().replace("-", " ").split()
    matches = [k for k in gpu_specs() if all(w in words for w in k.upper().split())]
    return max(matches, key=len) if matches else None


def spec_peaks(gpu_name: str) -> Peaks | None:
    """Published peaks for a GPU named in a trace (longest matching table key wins), or None when unknown."""
    key = _spec_key(gpu_name)
    if key is None:
        return None
    s = gpu_specs()[key]
    return Peaks(device="cuda", name=gpu_name, source="spec", fp32_gflops=1e3 * s.get("fp32_tflops", 0),
                 bf16_gflops=1e3 * s.get("bf16_tflops", 0), fp16_gflops=1e3 * s.get("fp16_tflops", 0),
                 int8_gops=1e3 * s.get("int8_tops", 0), tf32_gflops=1e3 * s.get("tf32_tflops", 0),
                 fp8_gflops=1e3 * s.get("fp8_tflops", 0), mem_bw_gbs=s.get("mem_bw_gbs", 0.0),
                 notes=[f"spec, not measured: published dense figures for '{key}' ({SPECS_FILE.name}); source: "
                        f"{s.get('source', 'not given')}"])


# TraceLens's arch files (max_achievable_tflops) key -> Peaks field
_TRACELENS_KEYS = {"matrix_fp32": "fp32_gflops", "matrix_tf32": "tf32_gflops", "matrix_bf16": "bf16_gflops",
                   "matrix_fp16": "fp16_gflops", "matrix_fp8": "fp8_gflops", "matrix_int8": "int8_gops"}


def peaks_file(path: str | Path, name: str = "") -> Peaks:
    """Measured peaks from a JSON file: OpLens's own (`profiler peaks --json`) or a TraceLens arch file
    ({"mem_bw_gbps": ..., "max_achievable_tflops": {"matrix_bf16": ...}}, as its microbenchmarks write).
    ModelRunError naming the file and the problem otherwise."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ModelRunError(f"cannot read peaks file {p}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ModelRunError(f"peaks file {p.name} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelRunError(f"peaks file {p.name}: want a JSON object")
    if "max_achievable_tflops" in data:
        rates = data.get("max_achievable_tflops") or {}
        peaks = Peaks(device="cuda", name=str(data.get("name") or name or p.stem), source="measured",
                      mem_bw_gbs=float(data.get("mem_bw_gbps") or 0.0),
                      notes=[f"measured peaks from {p.name} (TraceLens arch format: max achievable)"])
        for key, fld in _TRACELENS_KEYS.items():
            if key in rates:
                setattr(peaks, fld, 1e3 * float(rates[key]))
    else:
        try:
            peaks = Peaks.from_dict({"device": "cuda", "name": name or p.stem, "source": "measured", **data})
        except TypeError as exc:
            raise ModelRunError(f"peaks file {p.name}: {exc}") from None
        peaks.notes = list(peaks.notes) + [f"peaks from {p.name}"]
    if not (peaks.fp32_gflops or peaks.bf16_gflops or peaks.fp16_gflops) or not peaks.mem_bw_gbs:
        raise ModelRunError(f"peaks file {p.name}: needs a GEMM rate (fp32_gflops, bf16_gflops or fp16_gflops; "
                            "or max_achievable_tflops) and a memory bandwidth (mem_bw_gbs or mem_bw_gbps)")
    return peaks
