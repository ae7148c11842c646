"""Reports: numbers, tables, HTML, plots and the item browser, on records written here."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from gemma_nb.eval import EvalDataError, Report
from gemma_nb.eval.stats import wilson_interval

matplotlib.use("Agg")


def record(i: int, subject: str, answer: int, probs: list[float]) -> dict:
    probs_ = np.array(probs) / sum(probs)
    pred = int(np.argmax(probs_))
    return {"id": f"line {i}", "subject": subject, "question": f"<b>Question</b> {i}?",
            "choices": ["w", "x", "y", "z"], "answer": answer, "prompt": f"prompt {i}",
            "logprobs": np.log(probs_).tolist(), "probs": probs_.tolist(), "pred": pred,
            "pred_norm": pred, "correct": pred == answer, "correct_norm": pred == answer,
            "confidence": float(probs_[pred]), "tokens": 10 + i, "seconds": 0.1}


RECORDS = [record(0, "anatomy", 0, [5, 1, 1, 1]), record(1, "anatomy", 1, [5, 1, 1, 1]),
           record(2, "virology", 2, [1, 1, 6, 1]), record(3, "virology", 3, [1, 1, 1, 2]),
           record(4, "virology", 0, [1, 3, 1, 1])]


@pytest.fixture
def report() -> Report:
    return Report("mmlu 0-shot", "tiny-fp32", "multiple_choice", RECORDS, planned=5,
                  elapsed_s=2.0)


def test_accuracy_interval_and_rate(report):
    assert (report.n, report.correct, report.accuracy) == (5, 3, 0.6)
    assert report.interval == wilson_interval(3, 5)
    assert report.items_per_s == 2.5 and report.acc_norm == 0.6


def test_by_subject_table(report):
    table = report.by_subject()
    assert table.subject.tolist() == ["anatomy", "virology"]
    assert table.n.tolist() == [2, 3] and table.correct.tolist() == [1, 2]
    assert table.ci_low[1] == pytest.approx(wilson_interval(2, 3)[0])


def test_item_dataframe_has_prompt_choice_scores_and_verdict(report):
    df = report.df
    for column in ("prompt", "logprobs", "probs", "pred", "correct", "subject", "answer"):
        assert column in df.columns
    assert df.probs[2] == pytest.approx([1 / 9, 1 / 9, 6 / 9, 1 / 9])


def test_summary_and_html(report):
    assert report.summary().startswith("mmlu 0-shot on tiny-fp32: accuracy 0.600 (95% CI ")
    page = report._repr_html_()
    assert "accuracy <b>0.600</b>" in page and "Wilson" in page and "<td>virology</td>" in page.\
        replace(" style='text-align:left'", "")


def test_interrupted_report_says_so(report):
    report.interrupted, report.planned = True, 9
    assert "interrupted after 5 of 9 items" in report.summary()
    assert "interrupted after 5 of 9" in report._repr_html_()


def test_subject_plot_has_one_bar_per_subject_and_the_chance_line(report):
    fig = report.plot_subjects()
    ax = fig.axes[0]
    assert [round(p.get_width(), 3) for p in ax.patches] == [0.5, 0.667]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["overall 0.600", "chance 0.25"]


def test_calibration_plot_bins_the_predicted_probability(report):
    fig = report.plot_calibration(bins=10)
    line = fig.axes[0].lines[1]  # after the diagonal
    # confidences 5/8, 5/8, 6/9 fall in bin 0.6 (2 of 3 right), 2/5 in 0.4 and 3/6 in 0.5
    assert line.get_xdata().tolist() == pytest.approx([0.4, 0.5, (5 / 8 + 5 / 8 + 6 / 9) / 3])
    assert line.get_ydata().tolist() == pytest.approx([1.0, 0.0, 2 / 3])
    assert "ECE" in fig.axes[0].get_title()


def test_plots_draw_into_given_axes(report):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    assert report.plot_subjects(ax=a) is fig and report.plot_calibration(ax=b) is fig
    plt.close(fig)


def test_generation_reports_have_no_calibration():
    gen = Report("gsm8k", "m", "generation", [{"id": "1", "subject": "", "correct": True}], 1, 1.0)
    with pytest.raises(EvalDataError, match="calibration needs choice probabilities"):
        gen.plot_calibration()


def test_browser_pages_and_filters_items(report):
    browser = report.browse()
    assert "Question</b> 0?" not in browser.html.value  # escaped
    assert "&lt;b&gt;Question&lt;/b&gt; 0?" in browser.html.value and "(1 of 5)" in \
        browser.html.value
    browser.next.click()
    assert "1?" in browser.html.value and "(2 of 5)" in browser.html.value
    browser.previous.click()
    browser.previous.click()  # stays at the first
    assert "(1 of 5)" in browser.html.value
    browser.filter.value = "wrong only"
    assert "(1 of 2)" in browser.html.value and "line 1" in browser.html.value
    browser.go(99)
    assert "(2 of 2)" in browser.html.value and "line 4" in browser.html.value
    assert "0.500" in browser.html.value  # line 4's predicted choice: 3/6


def test_importing_eval_pulls_in_no_notebook_packages():
    code = ("import sys, gemma_nb.eval; print(sorted(m for m in ('pandas', 'matplotlib', "
            "'ipywidgets', 'IPython', 'torch', 'transformers', 'gemma_export') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
