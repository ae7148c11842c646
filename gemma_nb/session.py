"""ONNX Runtime session creation: execution provider choice and session settings."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from .errors import GemmaError
from .signals import workers_started_deaf_to_interrupts

__all__ = ["PROVIDERS", "ProviderError", "create_session", "physical_cores"]

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "MIGraphXExecutionProvider",  # onnxruntime-rocm stopped at 1.22; ROCm moved here
    "migraphx": "MIGraphXExecutionProvider",
}


class ProviderError(GemmaError):
    """The asked-for execution provider is unknown or not in this onnxruntime build."""


def physical_cores() -> int:
    # Hyper-threads share one core's vector units: more threads than cores only adds contention.
    try:
        import psutil  # optional

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def create_session(graph: Path, provider: str = "cpu", threads: int | None = None
                   ) -> ort.InferenceSession:
    name = PROVIDERS.get(provider.lower())
    if name is None:
        raise ProviderError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if name not in available:
        raise ProviderError(
            f"{name} is not in this onnxruntime build (it has {', '.join(available)}); "
            f"install the onnxruntime package built for {provider}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]
    with workers_started_deaf_to_interrupts():  # the session's thread pools start here
        return ort.InferenceSession(str(graph), options, providers=providers)
