"""gemma-nb's own CPU kernel (q4_matmul.cc): the ops `--dtype int4-cpu` model folders run on,
and the one pass over a row of logits that every folder's generation takes (logit_stats.py).

The library is built when gemma-nb is installed, or by `gemma-nb build-kernel` (build.py).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from ..errors import GemmaError
from .build import BUILD_ERROR_FILE, library_dirs, library_name

__all__ = ["KERNEL_DTYPE", "KERNEL_LAYOUT", "KernelUnavailableError", "kernel_library",
           "kernel_isa"]

KERNEL_DTYPE = "int4-cpu"  # the export dtype whose graphs use these ops
# The tile layout these ops read, recorded in a folder's "quantization": 2 stores 4-bit zero
# points (4.625 bits a weight); 1, fp16 minimums (5 bits), is no longer read.
KERNEL_LAYOUT = 2


class KernelUnavailableError(GemmaError):
    """The folder needs the CPU kernel, and this install has no library of it."""


def kernel_library() -> Path:
    """The built library for the installed source."""
    name = library_name()
    for folder in library_dirs():
        if (folder / name).is_file():
            return folder / name
    failure = library_dirs()[0] / BUILD_ERROR_FILE
    why = (f" (the install's build failed: {failure.read_text().strip().splitlines()[0]})"
           if failure.is_file() else "")
    raise KernelUnavailableError(
        f"this model folder (--dtype {KERNEL_DTYPE}) runs on gemma-nb's CPU kernel, which is not "
        f"built in this install{why}. Build it with `gemma-nb build-kernel` (a C++ compiler, "
        "and once Debian's archive for onnxruntime's headers), or export the model with "
        "--dtype int4")


def kernel_isa(library: Path | None = None) -> str:
    """The path the kernel takes on this CPU: amx, avx512-vnni, avx2 or generic (GEMMA_NB_KERNEL_ISA
    caps it; `exact`, fp32 activations, is only taken when asked for)."""
    loaded = ctypes.CDLL(str(library or kernel_library()))
    loaded.GemmaNbKernelIsa.restype = ctypes.c_char_p
    isa = loaded.GemmaNbKernelIsa()
    if isa is None:
        raise GemmaError("GEMMA_NB_KERNEL_ISA must be exact, generic, avx2, avx512-vnni or amx")
    return isa.decode()
