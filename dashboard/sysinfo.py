"""Machine load for the System page: psutil for CPU/memory, NVML (nvidia-ml-py's `pynvml`) for GPUs."""
from __future__ import annotations

import os

import psutil


def gpu_stats() -> tuple[list[dict], str]:
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound and friends: no driver here
        return [], f"no NVIDIA driver ({type(exc).__name__})"
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                        "util_percent": pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
                        "mem_used_gib": mem.used / 2**30, "mem_total_gib": mem.total / 2**30,
                        "temperature_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
                        "power_w": pynvml.nvmlDeviceGetPowerUsage(h) / 1000})
        return out, ""
    finally:
        pynvml.nvmlShutdown()


def snapshot() -> dict:
    vm = psutil.virtual_memory()
    gpus, note = gpu_stats()
    return {"cpu_percent": psutil.cpu_percent(interval=None), "cpu_count": psutil.cpu_count(),
            "mem_used_gib": (vm.total - vm.available) / 2**30, "mem_total_gib": vm.total / 2**30,
            "mem_percent": vm.percent, "load1": os.getloadavg()[0], "gpus": gpus, "gpu_note": note}
