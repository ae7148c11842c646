"""Export a weights source to a self-contained gemma-nb model folder, atomically.

Everything is checked before the first byte is written; the folder is assembled under a
temporary name beside the target and renamed at the end, so an interrupted or failed export
leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import onnx
from tqdm.auto import tqdm

from gemma_nb.config import GemmaConfig
from gemma_nb.folder import (CONFIG_FILE, DATA_FILE, DATA_INDEX_FILE, FORMAT_VERSION, GRAPH_FILE,
                             TOKENIZER_FILE)
from gemma_nb.kernels import KERNEL_LAYOUT
from gemma_nb.tokenizer import Tokenizer

from . import __version__
from .errors import ExportError, MissingWeightsError
from .graph import build_decoder
from .packing import DEFAULT_ACCURACY_LEVEL, DEFAULT_BLOCK_SIZE, DTYPES, packing_for, table_bits
from .quant import QuantizationError
from .sources import open_source, source_sha256
from .tape import Tape, data_index
from .tiles import BLOCK, TILE
from .tensor_names import model_tensor_names

logger = logging.getLogger(__name__)

__all__ = ["export", "OutputExistsError"]


class OutputExistsError(ExportError):
    """The output folder exists and overwriting was not asked for."""


def check_block_size(cfg: GemmaConfig, block_size: int) -> None:
    """Every matrix's input width must be a whole number of blocks."""
    widths = {"hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
              "heads * head_dim": cfg.num_heads * cfg.head_dim}
    bad = {k: v for k, v in widths.items() if v % block_size}
    if bad:
        raise QuantizationError(
            f"block size {block_size} does not divide "
            + ", ".join(f"{k} = {v}" for k, v in bad.items())
            + "; choose a power of two in 16..256 that divides them"
        )


def check_tiles(cfg: GemmaConfig) -> None:
    """int4-cpu cuts every matrix into 16-output by 32-input tiles."""
    outputs = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
               "intermediate_size": cfg.intermediate_size,
               "kv_heads * head_dim": cfg.num_kv_heads * cfg.head_dim}
    bad = {k: v for k, v in outputs.items() if v % TILE}
    if bad:
        raise QuantizationError(
            "--dtype int4-cpu needs outputs in multiples of 16; "
            + ", ".join(f"{k} = {v}" for k, v in bad.items()) + "; use --dtype int4")
    check_block_size(cfg, BLOCK)


def quantization_info(dtype: str, block_size: int, accuracy_level: int,
                      embedding_bits: int | None) -> dict | None:
    """config.json's "quantization": what the runtime and `gemma-nb info` report."""
    if dtype in ("int4", "int8"):
        return {"block_size": block_size, "accuracy_level": accuracy_level,
                "embedding_bits": table_bits(dtype, embedding_bits)}
    if dtype == "int4-cpu":
        return {"block_size": BLOCK, "tile_rows": TILE, "embedding_bits": 4,
                "tile_layout": KERNEL_LAYOUT}
    if dtype == "gguf":
        return {"accuracy_level": accuracy_level}
    return None


def export(src: str | Path, out: str | Path, *, dtype: str = "fp32",
           block_size: int = DEFAULT_BLOCK_SIZE, accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
           embedding_bits: int | None = None, overwrite: bool = False,
           progress: bool = True) -> Path:
    """Export Gemma weights (GGUF, .llamafile or HF folder) to a model folder at `out`.

    dtype: fp32, fp16, int8, int4 (MatMulNBits, `block_size`, `accuracy_level`; int4 also
    `embedding_bits`, 4 or 8, for the tied embedding/lm_head), or gguf (each GGUF block type
    re-encoded exactly where MatMulNBits can hold it), or int4-cpu (the int4 codes in the tiles
    of gemma-nb's own CPU kernel: no repacking at load, faster on CPU, CPU only).
    """
    src, out = Path(src), Path(out)
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists (pass overwrite=True / --force)")
    source = open_source(src)
    cfg = source.config
    if dtype in ("int4", "int8"):
        check_block_size(cfg, block_size)
    if dtype == "int4-cpu":
        check_tiles(cfg)
    pack = packing_for(dtype, source, block_size=block_size, accuracy_level=accuracy_level,
                       embedding_bits=embedding_bits)
    tokenizer_bytes = source.tokenizer_model()
    tokenizer = Tokenizer.from_bytes(tokenizer_bytes)  # a broken tokenizer fails before any work
    needed = model_tensor_names(cfg.num_layers, cfg.qk_norm)
    missing = [source.source_name(n) for n in needed
               if source.source_name(n) not in source.source_names()]
    if missing:
        raise MissingWeightsError(
            f"{src} lacks {len(missing)} tensor(s) a {cfg.architecture} model needs, e.g. "
            + ", ".join(missing[:3])
        )
    unused = source.source_names() - {source.source_name(n) for n in needed}
    if unused:
        logger.warning("ignoring %d tensor(s) of %s, e.g. %s", len(unused), src, sorted(unused)[:3])

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        bar = tqdm(total=cfg.num_layers, desc=f"export {dtype}", unit="layer",
                   disable=not progress)
        with open(staging / DATA_FILE, "wb") as data, bar:
            model = build_decoder(cfg, pack, source.tensor, Tape(data, DATA_FILE),
                                  progress=lambda: bar.update())
        onnx.save_model(model, staging / GRAPH_FILE)
        (staging / DATA_INDEX_FILE).write_text(json.dumps(data_index(model.graph)) + "\n")
        (staging / TOKENIZER_FILE).write_bytes(tokenizer_bytes)
        info = {
            "format_version": FORMAT_VERSION,
            "config": cfg.to_json(),
            "dtype": dtype,
            "quantization": quantization_info(dtype, block_size, accuracy_level,
                                              embedding_bits),
            "tokenizer": {"file": TOKENIZER_FILE, "bos_id": tokenizer.bos_id,
                          "eos_id": tokenizer.eos_id, "end_of_turn_id": tokenizer.end_of_turn_id,
                          "vocab_size": tokenizer.vocab_size},
            "chat_format": "gemma",
            "exporter": {"name": "gemma_export", "version": __version__,
                         "source": src.name, "source_sha256": source_sha256(src)},
        }
        (staging / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.chmod(0o755)  # mkdtemp makes it private
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s to %s (%s)", src, out, dtype)
    return out
