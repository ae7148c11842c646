"""compare(): accuracy of each model, agreement, mean KL between choice distributions, a plot."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

import gemma_nb
from gemma_nb.eval import Comparison, Item, MultipleChoiceTask, Report, compare, evaluate
from gemma_nb.eval.prompts import ClozePrompt

matplotlib.use("Agg")


def rec(i: int, probs: list[float], answer: int = 0) -> dict:
    pred = int(np.argmax(probs))
    return {"id": str(i), "subject": "s", "probs": probs, "pred": pred, "correct": pred == answer,
            "choices": ["a", "b"]}


def report(name: str, records: list[dict]) -> Report:
    return Report("task", name, "multiple_choice", records, len(records), 1.0)


A = report("a", [rec(0, [0.9, 0.1]), rec(1, [0.6, 0.4]), rec(2, [0.2, 0.8])])
B = report("b", [rec(0, [0.8, 0.2]), rec(1, [0.4, 0.6]), rec(2, [0.3, 0.7])])


def kl(p, q):
    return sum(x * math.log(x / y) for x, y in zip(p, q))


def test_agreement_and_mean_kl_against_the_reference():
    c = Comparison("task", {"a": A, "b": B})
    assert c.agreement("b") == pytest.approx(2 / 3)
    expected = np.mean([kl([0.9, 0.1], [0.8, 0.2]), kl([0.6, 0.4], [0.4, 0.6]),
                        kl([0.2, 0.8], [0.3, 0.7])])
    assert c.mean_kl("b") == pytest.approx(expected) and c.mean_kl("a") == 0.0
    table = c.table
    assert table.loc["a", "accuracy"] == pytest.approx(2 / 3)
    assert table.loc["b", "accuracy"] == pytest.approx(1 / 3)
    assert table.loc["b", "agreement"] == pytest.approx(2 / 3)
    assert c.kl_matrix().loc["b", "a"] == pytest.approx(np.mean(
        [kl(p, q) for p, q in zip([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]],
                                  [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])]))
    assert c.agreement_matrix().loc["a", "b"] == pytest.approx(2 / 3)


def test_only_common_items_are_compared():
    partial = report("p", [rec(2, [0.2, 0.8])])  # an interrupted run
    c = Comparison("task", {"a": A, "p": partial})
    assert c.ids == ["2"] and c.n == 1 and c.agreement("p") == 1.0


def test_plot_has_accuracy_bars_and_the_kl_histogram():
    fig = Comparison("task", {"a": A, "b": B}).plot()
    bars, hist = fig.axes
    assert [round(p.get_height(), 3) for p in bars.patches] == [0.667, 0.333]
    assert "b: mean" in hist.get_legend_handles_labels()[1][0]


def test_html_table_lists_each_model():
    page = Comparison("task", {"fp32": A, "int4": B})._repr_html_()
    assert page.count("<tr><td") == 2 and "mean KL" in page


ITEMS = tuple(Item(q, c, 0, "", str(i)) for i, (q, c) in enumerate([
    ("The quick brown fox jumps over the", ("lazy dog", "cat", "warm sun")),
    ("Once upon a time there was a", ("small model", "time", "cat")),
    ("The capital of France is", ("Paris", "Rome", "the capital of France")),
]))


def test_compare_evaluates_models_on_the_same_items(tiny_gemma2_model, export_once,
                                                    tiny_gemma2_hf):
    int8 = gemma_nb.load(export_once(tiny_gemma2_hf, "tiny-gemma2-hf", "int8"))
    task = MultipleChoiceTask("cloze", ITEMS, ClozePrompt())
    fp32_report = evaluate(tiny_gemma2_model, task, progress=False)
    c = compare({"fp32": fp32_report, "int8": int8}, task, progress=False)
    assert c.reports["fp32"] is fp32_report and c.reports["int8"].model == "tiny-gemma2-hf-int8"
    assert c.ids == ["0", "1", "2"]
    assert c.mean_kl("int8") > 0  # quantized weights move the distributions a little
    assert c.item_kl("int8").shape == (3,)
    names = list(compare([tiny_gemma2_model, tiny_gemma2_model], task, progress=False).reports)
    assert names == ["tiny-gemma2-hf-fp32", "tiny-gemma2-hf-fp32'"]


def test_compare_needs_two_models(tiny_gemma2_model):
    with pytest.raises(ValueError, match="at least two"):
        compare([tiny_gemma2_model], MultipleChoiceTask("t", ITEMS[:1], ClozePrompt()))


def test_after_an_interrupt_the_next_models_score_only_the_items_done(tiny_gemma2_model,
                                                                      monkeypatch):
    task = MultipleChoiceTask("cloze", ITEMS, ClozePrompt())
    first = evaluate(tiny_gemma2_model, MultipleChoiceTask("cloze", ITEMS[:2], ClozePrompt()),
                     progress=False)
    first.interrupted = True  # as if stopped after two of the three items
    scored = []
    prefill = tiny_gemma2_model.prefill
    monkeypatch.setattr(tiny_gemma2_model, "prefill",
                        lambda cache, ids: scored.append(ids) or prefill(cache, ids))
    c = compare({"first": first, "second": tiny_gemma2_model}, task, progress=False)
    assert len(scored) == 2 and c.ids == ["0", "1"]
