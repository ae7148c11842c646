"""`gemma-nb bench`: a smoke run without thresholds (speed is measured in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def bench(model_dir, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gemma_nb.cli", "bench", str(model_dir), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def check_report(report: dict, prompt_tokens: list[int], new_tokens: int) -> None:
    assert [r["prompt_tokens"] for r in report["runs"]] == prompt_tokens
    for run in report["runs"]:
        assert run["new_tokens"] == new_tokens
        for key in ("prefill_tok_s", "time_to_first_token_s", "decode_tok_s"):
            figures = run[key]
            assert 0 < figures["min"] <= figures["median"] <= figures["max"]
    assert report["load_s"] > 0 and report["peak_rss_bytes"] > 0 and report["threads"] >= 1
    assert isinstance(report["parallel_prepack"], bool)
    assert 0 < report["rss_bytes"] <= report["generation_peak_rss_bytes"]
    assert report["generation_peak_rss_bytes"] <= report["peak_rss_bytes"]


def test_the_peak_rss_restarts_from_the_memory_in_use():
    """What lets bench report generation's peak apart from loading's."""
    from gemma_nb.bench import peak_rss_bytes, restart_peak_rss

    transient = np.ones(60_000_000)  # 480 MB touched, then freed
    del transient
    before = peak_rss_bytes()
    assert restart_peak_rss()
    assert peak_rss_bytes() < before - 400 * 2**20


def test_bench_json_reports_every_figure(tiny_gemma2_model):
    result = bench(tiny_gemma2_model.path, "--prompt-tokens", "16,32", "--new-tokens", "8",
                   "--repeat", "2", "--json")
    assert result.returncode == 0, result.stderr
    check_report(json.loads(result.stdout), [16, 32], 8)


def test_bench_table_and_bad_arguments(tiny_gemma2_model):
    table = bench(tiny_gemma2_model.path, "--prompt-tokens", "16", "--new-tokens", "4",
                  "--repeat", "1")
    assert table.returncode == 0 and "decode tok/s" in table.stdout
    for bad in (["--prompt-tokens", "a,b"], ["--prompt-tokens", "250", "--new-tokens", "64"]):
        result = bench(tiny_gemma2_model.path, *bad)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("gemma-nb: error: ")


@pytest.mark.slow
def test_bench_json_on_the_default_model(default_model_cache):
    result = bench("default", "--prompt-tokens", "128,512", "--new-tokens", "32", "--repeat",
                   "1", "--json")
    assert result.returncode == 0, result.stderr
    check_report(json.loads(result.stdout), [128, 512], 32)
