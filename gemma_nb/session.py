"""ONNX Runtime session creation: execution provider choice and session settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnxruntime as ort

from .errors import GemmaError
from .folder import DATA_FILE
from .huge_pages import read_weights
from .kernels import KERNEL_DTYPE, kernel_isa, kernel_library
from .signals import workers_started_deaf_to_interrupts

logger = logging.getLogger(__name__)

__all__ = ["PROVIDERS", "ProviderError", "create_session", "physical_cores", "available_memory",
           "prepack_in_parallel", "packs_in_parallel"]

PARALLEL_PREPACK = "session.prepack.enable_parallel"
# Packing in parallel keeps every unpacked weight until all are packed: the 2B-shape int4 folder
# (1.7 GB) peaked at 3.9 GB while loading, against 2.8 GB one weight at a time.
PARALLEL_PREPACK_MEMORY_FACTOR = 3

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


def available_memory() -> int | None:
    """Bytes this machine can give without swapping, or None where it cannot be told."""
    try:
        import psutil  # optional

        return psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def prepack_in_parallel(graph: Path) -> bool:
    """Whether ONNX Runtime may repack the weights on all its threads at load (the 2B-shape int4
    folder: 2.6 s instead of 4.1 s) rather than one weight at a time: only when the machine has
    the memory for its higher load-time peak."""
    weight_files = (graph, graph.with_name(DATA_FILE))
    weight_bytes = sum(f.stat().st_size for f in weight_files if f.is_file())
    available = available_memory()
    return available is not None and available >= PARALLEL_PREPACK_MEMORY_FACTOR * weight_bytes


def create_session(graph: Path, provider: str = "cpu", threads: int | None = None,
                   kernel: bool = False) -> ort.InferenceSession:
    """`kernel`: the graph uses gemma-nb's own CPU ops (an int4-cpu folder), whose weights are
    read into huge pages where that helps (gemma_nb.huge_pages) rather than mapped."""
    name = PROVIDERS.get(provider.lower())
    if name is None:
        raise ProviderError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    if kernel and name != "CPUExecutionProvider":
        raise ProviderError(f"--dtype {KERNEL_DTYPE} folders run on the CPU only; export the "
                            f"model with --dtype int4 for {provider}")
    available = ort.get_available_providers()
    if name not in available:
        raise ProviderError(
            f"{name} is not in this onnxruntime build (it has {', '.join(available)}); "
            f"install the onnxruntime package built for {provider}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if kernel:
        library = kernel_library()
        options.register_custom_ops_library(str(library))
        if kernel_isa(library) == "generic":
            logger.warning("this CPU lacks AVX2: %s runs on the kernel's generic path, "
                           "slower than --dtype int4 here", KERNEL_DTYPE)
    if not kernel and prepack_in_parallel(graph):  # the kernel's weights are never repacked
        options.add_session_config_entry(PARALLEL_PREPACK, "1")
    weights = read_weights(graph.parent, available_memory()) if kernel else None
    if weights:
        for weight, value in weights.initializers.items():
            options.add_initializer(weight, value)  # not copied: `weights` must live as long
    providers = [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]
    with workers_started_deaf_to_interrupts():  # the session's thread pools start here
        session = ort.InferenceSession(str(graph), options, providers=providers)
    session.gemma_nb_weights = weights  # held for the session's lifetime
    return session


def packs_in_parallel(session: ort.InferenceSession) -> bool:
    """Whether `session` was made to repack its weights on all its threads."""
    try:
        return session.get_session_options().get_session_config_entry(PARALLEL_PREPACK) == "1"
    except RuntimeError:  # the entry was never set
        return False
