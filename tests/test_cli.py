"""The `gemma-nb` command (run as `python -m gemma_nb.cli`) and `models.resolve_model`.

Each CLI call is a subprocess (about a second), so each test checks several things of one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gemma_export
import gemma_nb
from gemma_nb.folder import CONFIG_FILE, FORMAT_VERSION
from gemma_nb.models import resolve_model

PROMPT = "The quick brown fox"
TIMINGS = re.compile(r"\[\d+ prompt tokens, [\d.]+ tok/s; \d+ generated, [\d.]+ tok/s; "
                     r"first token [\d.]+ s; load [\d.]+ s\]")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI; stdout/stderr decoded as written (text mode would turn a generated "\r"
    into "\n")."""
    result = subprocess.run([sys.executable, "-m", "gemma_nb.cli", *args], capture_output=True,
                            timeout=300,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})})
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    return result


def assert_one_clear_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gemma-nb: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_gguf_folder(export_once, tiny_gemma2_gguf: Path) -> Path:
    return export_once(tiny_gemma2_gguf, "tiny-gemma2-gguf")


# ------------------------------------------------------------------------------------- export


def test_export_writes_a_loadable_folder_and_needs_force_to_overwrite(tiny_gemma2_hf, tmp_path):
    out = tmp_path / "tiny"
    first = run_cli("export", str(tiny_gemma2_hf), "-o", str(out))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(out)
    model = gemma_nb.load(out)
    assert model.config.architecture == "gemma2"

    (out / "mine.txt").write_text("keep me")
    refused = run_cli("export", str(tiny_gemma2_hf), "-o", str(out))
    assert "already exists" in assert_one_clear_line(refused)
    assert (out / "mine.txt").read_text() == "keep me"

    forced = run_cli("export", str(tiny_gemma2_hf), "-o", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (out / "mine.txt").exists()
    gemma_nb.load(out)


@pytest.mark.parametrize("bits", ["4", "8"])
def test_export_int4_takes_the_embedding_bits(tiny_gemma2_hf, tmp_path, bits):
    out = tmp_path / "tiny"
    done = run_cli("export", str(tiny_gemma2_hf), "-o", str(out), "--dtype", "int4",
                   "--embedding-bits", bits)
    assert done.returncode == 0, done.stderr
    assert gemma_nb.load(out).info["quantization"]["embedding_bits"] == int(bits)


def test_export_refuses_embedding_bits_for_other_dtypes(tiny_gemma2_hf, tmp_path):
    refused = run_cli("export", str(tiny_gemma2_hf), "-o", str(tmp_path / "tiny"), "--dtype",
                      "int8", "--embedding-bits", "4")
    assert "embedding bits apply to --dtype int4 only" in assert_one_clear_line(refused)
    assert not (tmp_path / "tiny").exists()


# ----------------------------------------------------------------------------------- generate


def test_generate_raw_greedy_prints_what_the_api_generates(tiny_gemma2_model):
    expected = tiny_gemma2_model.generate(PROMPT, max_new_tokens=8)
    assert expected.text  # the tiny model does say something
    result = run_cli("generate", str(tiny_gemma2_model.path), "-p", PROMPT, "-n", "8", "--raw")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.text + "\n"
    assert TIMINGS.fullmatch(result.stderr.strip().splitlines()[-1]), result.stderr


def test_generate_answers_the_prompt_as_a_user_turn_by_default(tiny_gemma2_model):
    expected = tiny_gemma2_model.chat([{"role": "user", "content": PROMPT}], max_new_tokens=8)
    assert expected.text != tiny_gemma2_model.generate(PROMPT, max_new_tokens=8).text
    result = run_cli("generate", str(tiny_gemma2_model.path), "-p", PROMPT, "-n", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.text + "\n"


def test_generate_with_seed_and_temperature_prints_text_and_timings(tiny_gemma2_model):
    result = run_cli("generate", str(tiny_gemma2_model.path), "-p", PROMPT, "-n", "8",
                     "--seed", "1", "--temperature", "0.8", "--raw")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    last = result.stderr.strip().splitlines()[-1]
    assert TIMINGS.fullmatch(last), result.stderr
    # The seed reaches the sampler: the API with the same settings samples the same text.
    same = tiny_gemma2_model.generate(PROMPT, max_new_tokens=8, temperature=0.8, seed=1)
    assert result.stdout == same.text + "\n"


def test_generate_on_a_gguf_exports_into_the_cache_once(tiny_gemma2_gguf, tmp_path):
    cache, home = tmp_path / "cache", tmp_path / "home"
    home.mkdir()
    env = {"GEMMA_NB_CACHE": str(cache), "HOME": str(home)}
    result = run_cli("generate", str(tiny_gemma2_gguf), "-p", PROMPT, "-n", "4", env=env)
    assert result.returncode == 0, result.stderr
    assert TIMINGS.fullmatch(result.stderr.strip().splitlines()[-1]), result.stderr
    [folder] = list(cache.iterdir())
    assert folder.name.startswith(tiny_gemma2_gguf.stem)
    assert gemma_nb.load(folder).info["exporter"]["source"] == tiny_gemma2_gguf.name
    # onnxruntime itself keeps a device id in ~/.cache/Microsoft; we write nothing there.
    assert not (home / ".cache" / "gemma-nb").exists()

    # A second run finds the export (same folder, not written again) and says the same.
    written = (folder / CONFIG_FILE).stat().st_mtime_ns
    again = run_cli("generate", str(tiny_gemma2_gguf), "-p", PROMPT, "-n", "4", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout
    assert list(cache.iterdir()) == [folder]
    assert (folder / CONFIG_FILE).stat().st_mtime_ns == written


# --------------------------------------------------------------------------------------- info


def test_info_describes_the_folder(tiny_gguf_folder, tiny_gemma2_gguf):
    result = run_cli("info", str(tiny_gguf_folder))
    assert result.returncode == 0, result.stderr
    assert f"path:          {tiny_gguf_folder}" in result.stdout
    assert "architecture:  gemma2, 4 layers, hidden 64" in result.stdout
    assert hashlib.sha256(tiny_gemma2_gguf.read_bytes()).hexdigest() in result.stdout


def test_info_json_has_config_and_source_sha256(tiny_gguf_folder, tiny_gemma2_gguf):
    result = run_cli("info", str(tiny_gguf_folder), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["path"] == str(tiny_gguf_folder)
    assert info["config"] == gemma_nb.load(tiny_gguf_folder).config.to_json()
    sha = hashlib.sha256(tiny_gemma2_gguf.read_bytes()).hexdigest()
    assert info["exporter"]["source_sha256"] == sha


# -------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("command", [[], ["export"], ["generate"], ["chat"], ["serve"],
                                     ["info"], ["setup"]])
def test_help_exits_zero(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: gemma-nb")


@pytest.mark.parametrize("option, value, message", [
    ("--top-p", "0", "top_p"),
    ("--temperature", "-1", "temperature"),
])
def test_bad_sampling_setting_is_one_clear_line(tiny_gemma2_model, option, value, message):
    result = run_cli("generate", str(tiny_gemma2_model.path), "-p", PROMPT, option, value)
    assert message in assert_one_clear_line(result)
    assert result.stdout == ""
    chat = run_cli("chat", str(tiny_gemma2_model.path), option, value)
    assert message in assert_one_clear_line(chat)
    assert chat.stdout == ""


def test_generate_on_a_missing_model_is_one_clear_line(tmp_path):
    result = run_cli("generate", str(tmp_path / "nowhere"), "-p", PROMPT)
    assert "nowhere" in assert_one_clear_line(result)


# ------------------------------------------------------------------------------ resolve_model


def test_resolve_model_returns_a_model_folder_as_is(tiny_gguf_folder):
    assert resolve_model(tiny_gguf_folder) == tiny_gguf_folder
    assert resolve_model(str(tiny_gguf_folder)) == tiny_gguf_folder


def test_resolve_model_exports_a_gguf_once_and_reuses_it(tiny_gemma2_gguf, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("GEMMA_NB_CACHE", str(tmp_path / "cache"))
    first = resolve_model(tiny_gemma2_gguf, progress=False)
    assert first.parent == tmp_path / "cache"
    written = (first / CONFIG_FILE).stat().st_mtime_ns

    def no_second_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(gemma_export, "export", no_second_export)
    second = resolve_model(tiny_gemma2_gguf, progress=False)
    assert second == first
    assert (second / CONFIG_FILE).stat().st_mtime_ns == written
    gemma_nb.load(second)


def test_resolve_model_exports_again_a_cached_folder_it_cannot_read(tiny_gemma2_gguf, tmp_path,
                                                                     monkeypatch):
    """An export cached by an older gemma-nb (another format) is replaced, not loaded."""
    monkeypatch.setenv("GEMMA_NB_CACHE", str(tmp_path / "cache"))
    folder = resolve_model(tiny_gemma2_gguf, progress=False)
    info = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**info, "format_version": 0}))
    assert resolve_model(tiny_gemma2_gguf, progress=False) == folder
    assert json.loads((folder / CONFIG_FILE).read_text())["format_version"] == FORMAT_VERSION
    gemma_nb.load(folder)


def test_resolve_model_rejects_a_path_that_is_no_model(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMA_NB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(gemma_nb.GemmaError, match="neither"):
        resolve_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(gemma_nb.GemmaError):
        resolve_model(tmp_path / "empty")


def test_resolve_model_on_a_file_that_is_not_weights_raises_and_caches_nothing(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("GEMMA_NB_CACHE", str(tmp_path / "cache"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    with pytest.raises(gemma_nb.GemmaError):
        resolve_model(notes, progress=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
