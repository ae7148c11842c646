"""Bad input: a specific exception from the API, one clear line from the CLI, nothing left behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

import gemma_export
import gemma_nb
from gemma_export import export


def write_gguf(path: Path, arch: str, tensor_type: GGMLQuantizationType | None = None) -> Path:
    """A minimal GGUF: one embedding tensor, no tokenizer."""
    writer = GGUFWriter(path, arch)
    writer.add_block_count(1)
    writer.add_embedding_length(32)
    if tensor_type is None:
        writer.add_tensor("token_embd.weight", np.zeros((16, 32), np.float32))
    else:  # raw bytes of a block type we do not read: 16 rows of 32 values = 2 IQ4_NL blocks of 18 bytes
        writer.add_tensor("token_embd.weight", np.zeros((16, 36), np.uint8),
                          raw_shape=(16, 36), raw_dtype=tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def truncated_gguf(tiny_gemma2_gguf: Path, tmp_path: Path) -> Path:
    data = tiny_gemma2_gguf.read_bytes()
    path = tmp_path / "truncated.gguf"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def hf_without_weights(tiny_gemma2_hf: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(tiny_gemma2_hf / "config.json", folder)
    shutil.copy(tiny_gemma2_hf / "tokenizer.model", folder)
    return folder


@pytest.fixture
def hf_without_tokenizer(tiny_gemma2_hf: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_gemma2_hf, folder, ignore=shutil.ignore_patterns("tokenizer.model"))
    return folder


CASES = {
    "truncated_gguf": gemma_export.CorruptWeightsError,
    "llama_gguf": gemma_export.UnsupportedArchitectureError,
    "hf_without_weights": gemma_export.MissingWeightsError,
    "unknown_tensor_type": gemma_export.UnsupportedTensorTypeError,
    "hf_without_tokenizer": gemma_export.MissingTokenizerError,
}


@pytest.fixture
def bad_source(request, tmp_path: Path) -> Path:
    name = request.param
    if name == "llama_gguf":
        return write_gguf(tmp_path / "llama.gguf", "llama")
    if name == "unknown_tensor_type":
        return write_gguf(tmp_path / "iq4.gguf", "gemma2", GGMLQuantizationType.IQ4_NL)
    return request.getfixturevalue(name)


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("bad_source", list(CASES), indirect=True)
def test_api_raises_specific_error_and_writes_nothing(bad_source, request, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CASES[request.node.callspec.params["bad_source"]]):
        export(bad_source, out, progress=False)
    assert not out.exists() and not leftovers(tmp_path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gemma_nb.cli", *args], capture_output=True,
                          text=True, timeout=300)


def assert_one_clear_line(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gemma-nb: error: "), result.stderr


@pytest.mark.parametrize("bad_source", list(CASES), indirect=True)
def test_cli_prints_one_line_and_writes_nothing(bad_source, tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", str(bad_source), "-o", str(out))
    assert_one_clear_line(result)
    assert not out.exists() and not leftovers(tmp_path)


def test_interrupted_export_leaves_nothing(tiny_gemma2_hf, tmp_path, monkeypatch):
    from gemma_export import exporter

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter.onnx, "save_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(tiny_gemma2_hf, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_existing_output_is_not_overwritten(tiny_gemma2_hf, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(gemma_export.OutputExistsError):
        export(tiny_gemma2_hf, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_prompt_longer_than_context_raises(tiny_gemma2_model):
    too_long = [tiny_gemma2_model.tokenizer.bos_id] + [5] * tiny_gemma2_model.config.context_length
    with pytest.raises(gemma_nb.ContextLengthError, match="context"):
        tiny_gemma2_model.generate(too_long, max_new_tokens=1)
    with pytest.raises(gemma_nb.ContextLengthError):
        tiny_gemma2_model.logits(too_long)


def test_empty_prompt_raises(tiny_gemma2_model):
    with pytest.raises(gemma_nb.EmptyPromptError, match="no tokens"):
        tiny_gemma2_model.generate([], max_new_tokens=1)
    with pytest.raises(gemma_nb.EmptyPromptError):
        tiny_gemma2_model.logits([])
    with pytest.raises(gemma_nb.EmptyPromptError):
        tiny_gemma2_model.generate_batch([[2, 5], []], max_new_tokens=1)


def test_cli_prompt_longer_than_context_is_one_line(tiny_gemma2_model):
    prompt = " ".join(["word"] * tiny_gemma2_model.config.context_length)
    result = run_cli("generate", str(tiny_gemma2_model.path), "-p", prompt, "-n", "1")
    assert_one_clear_line(result)
    assert "context" in result.stderr


def test_loading_a_folder_that_is_not_a_model_raises(tmp_path):
    with pytest.raises(gemma_nb.ModelFolderError):
        gemma_nb.load(tmp_path)
