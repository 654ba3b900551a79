"""Printing the benchmark: tables, ratios and the CPU-cores-per-GPU advice."""

from __future__ import annotations

import json
import os
import platform

from spark_jql.devtools.bench.measure import BF16_PEAK_TFLOPS


def device_description(device) -> tuple[str, float | None]:
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        total = torch.cuda.get_device_properties(device).total_memory
        peak = None
        upper = name.upper()
        for key, value in BF16_PEAK_TFLOPS.items():
            if key.upper() in upper:
                peak = value
                break
        return f"{name} ({total / 2**30:.0f} GiB), CUDA {torch.version.cuda}", peak
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {cpu}, {len(os.sched_getaffinity(0))} cores, torch threads {torch.get_num_threads()}", None


def format_table(rows: list[dict], keys: list[str]) -> str:
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    line = " | ".join(k.ljust(widths[k]) for k in keys)
    sep = "-|-".join("-" * widths[k] for k in keys)
    body = "\n".join(" | ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys) for r in rows)
    return f"{line}\n{sep}\n{body}"


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def gpu_sharing_advice(tok_docs_per_s_core: float, gpu_docs_per_s: float, measured: bool) -> dict:
    """How many CPU cores of tokenization one GPU needs, and what that means for task sharing."""
    cores = gpu_docs_per_s / tok_docs_per_s_core if tok_docs_per_s_core else float("inf")
    return {
        "gpu_docs_per_s": round(gpu_docs_per_s, 1),
        "gpu_docs_per_s_source": "measured (ours, model only)" if measured else "estimated from FLOPs at the assumed MFU",
        "tokenization_docs_per_s_per_core": round(tok_docs_per_s_core, 1),
        "tokenizer_cores_to_keep_gpu_busy": round(cores, 1),
        "one_task_per_gpu_busy_fraction_at_1_core": round(min(1.0, 1 / cores), 3) if cores else 1.0,
    }


def write_json(path, report: dict) -> None:
    """``--json PATH``: the whole report, folders created."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
