"""The layout of an exported model folder, shared by the exporter (writes) and runtime (reads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import GemmaConfig
from .errors import ModelFolderError
from .kernels import KERNEL_DTYPE, KERNEL_LAYOUT

__all__ = ["CONFIG_FILE", "GRAPH_FILE", "DATA_FILE", "DATA_INDEX_FILE", "TOKENIZER_FILE",
           "FORMAT_VERSION", "read_model_info"]

CONFIG_FILE = "gemma_nb.json"
GRAPH_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
# Where each weight of DATA_FILE lies: {name: {"dtype", "shape", "offset", "bytes"}}, so that the
# runtime can read the weights itself (gemma_nb.huge_pages) without parsing the ONNX graph.
DATA_INDEX_FILE = "model.onnx.data.json"
TOKENIZER_FILE = "tokenizer.model"
FORMAT_VERSION = 1


def read_model_info(path: Path) -> tuple[dict[str, Any], GemmaConfig]:
    """The folder's JSON and config, after checking every file is there."""
    if not path.is_dir():
        raise ModelFolderError(
            f"{path} is not a model folder; export weights first: gemma-nb export SRC -o {path}"
        )
    missing = [f for f in (CONFIG_FILE, GRAPH_FILE, TOKENIZER_FILE) if not (path / f).is_file()]
    if missing:
        raise ModelFolderError(f"{path} is not a complete model folder: {', '.join(missing)} missing")
    try:
        info = json.loads((path / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path / CONFIG_FILE} is not valid JSON: {exc}") from None
    if info.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(
            f"{path} was written by format {info.get('format_version')}; this gemma-nb reads "
            f"format {FORMAT_VERSION}: export it again"
        )
    if info.get("dtype") == KERNEL_DTYPE:
        layout = (info.get("quantization") or {}).get("tile_layout", 1)
        if layout != KERNEL_LAYOUT:
            raise ModelFolderError(
                f"{path} holds {KERNEL_DTYPE} tiles of layout {layout}; this gemma-nb's kernel "
                f"reads layout {KERNEL_LAYOUT}: export it again"
            )
    return info, GemmaConfig.from_json(info["config"])
