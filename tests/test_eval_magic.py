"""`%gemma eval mmlu ...`: parsed into EvalArgs, delegated to gemma_nb.eval, errors as one line."""

from __future__ import annotations

import json
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from gemma_nb.eval import Report
from gemma_nb.magic_args import EvalArgs, LineCommand, MagicArgumentError, line_usage, parse_line


def test_every_option_is_parsed():
    line = ("eval mmlu --n 100 --shots 5 --subjects anatomy 'high school physics' --seed 3 "
            "--source data.jsonl --cluster tcp://10.0.0.5:8786")
    assert parse_line(line) == LineCommand("eval", eval=EvalArgs(
        "mmlu", 100, 5, ("anatomy", "high school physics"), 3, "data.jsonl",
        "tcp://10.0.0.5:8786"))


def test_defaults_and_all_items():
    assert parse_line("eval mmlu").eval == EvalArgs()
    assert parse_line("eval mmlu --n all").eval.n is None


@pytest.mark.parametrize("line, message", [
    ("eval", "required: task"),
    ("eval hellaswag", "invalid choice: 'hellaswag'"),
    ("eval mmlu --n 0", "--n: must be at least 1"),
    ("eval mmlu --shots -1", "--shots: must be >= 0"),
    ("eval mmlu --subjects", "expected at least one argument"),
])
def test_bad_eval_lines_raise_one_line(line, message):
    with pytest.raises(MagicArgumentError) as info:
        parse_line(line)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_usage_shows_eval():
    assert "%gemma eval mmlu [--n 100|all] [--shots 0..5]" in line_usage()


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.extension_manager.load_extension("gemma_nb")
    return shell


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "mmlu.jsonl"
    path.write_text("\n".join(json.dumps(
        {"question": f"{s} question {i}?", "choices": ["w", "x", "y", "z"], "answer": i % 4,
         "subject": s}) for s in ("anatomy", "virology") for i in range(8)))
    return path


@pytest.fixture
def magics(shell, tiny_gemma2_model):
    magics = shell.magics_manager.registry["GemmaMagics"]
    magics.model, magics.model_is_configured = tiny_gemma2_model, False
    return magics


def test_eval_returns_the_report(shell, magics, data):
    shell.run_cell(f"r = %gemma eval mmlu --n 4 --shots 2 --seed 1 --source {data}")
    report = shell.user_ns["r"]
    assert isinstance(report, Report) and report.n == 4
    assert report.task == "mmlu 2-shot, n=4" and report.model == magics.model.path.name
    assert all(r["prompt"].count("\nAnswer: ") == 2 for r in report.records)


def test_eval_with_a_subject_filter(shell, magics, data):
    shell.run_cell(f"r = %gemma eval mmlu --n all --subjects virology --source {data}")
    assert {r["subject"] for r in shell.user_ns["r"].records} == {"virology"}
    assert shell.user_ns["r"].n == 3  # 8 minus the 5 kept as examples


def test_data_errors_are_one_usage_line(shell, magics, data, capsys):
    shell.run_cell(f"%gemma eval mmlu --subjects astrology --source {data}")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("UsageError: %gemma: no items of subject(s) 'astrology'")


def test_a_cluster_without_dask_is_one_usage_line(shell, magics, data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    shell.run_cell(f"%gemma eval mmlu --n 2 --source {data} --cluster local")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("UsageError: %gemma: running on a cluster needs Dask's distributed")
    assert "pip install 'gemma-nb[cluster]'" in err
