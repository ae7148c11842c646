"""Running tasks: records consistent with their scores, a progress bar with items/s and ETA,
partial results kept on interrupt, generation tasks batched like single answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gemma_nb.errors import ContextLengthError
from gemma_nb.eval import Item, MultipleChoiceTask, Problem, evaluate, generation
from gemma_nb.eval.prompts import ClozePrompt, MMLUPrompt
from gemma_nb.model import Generation
from gemma_nb.eval.tasks import GenerationTask

ITEMS = tuple(Item(q, c, a, s, f"item {i}") for i, (q, c, a, s) in enumerate([
    ("The quick brown fox jumps over the", ("lazy dog", "cat", "warm sun in the sky"), 0, "a"),
    ("Once upon a time there was a", ("small model", "time", "cat"), 1, "a"),
    ("The capital of France is", ("Paris", "Rome", "the capital of France"), 0, "b"),
    ("def add(a, b):\n    return", ("a + b", "a", "b * a - 1"), 0, "b"),
    ("She said that the weather would be", ("better", "worse tomorrow", "fine"), 2, "c"),
]))


@pytest.fixture(scope="module")
def cloze_report(tiny_gemma2_model):
    return evaluate(tiny_gemma2_model, MultipleChoiceTask("cloze", ITEMS, ClozePrompt()),
                    progress=False)


def test_records_follow_from_the_scores(cloze_report):
    assert cloze_report.n == len(ITEMS) and not cloze_report.interrupted
    for item, r in zip(ITEMS, cloze_report.records):
        logprobs = np.array(r["logprobs"])
        lengths = np.array([len(c) for c in item.choices])  # acc_norm: characters of the choice
        assert r["id"] == item.id and r["answer"] == item.answer
        assert r["pred"] == np.argmax(logprobs)
        assert r["pred_norm"] == np.argmax(logprobs / lengths)
        assert r["correct"] == (r["pred"] == item.answer)
        assert np.allclose(r["probs"], np.exp(logprobs) / np.exp(logprobs).sum())
        assert r["confidence"] == max(r["probs"])
    assert cloze_report.accuracy == np.mean([r["correct"] for r in cloze_report.records])


def test_acc_norm_can_disagree_with_acc(cloze_report):
    """Guards the test above: lengths differ enough here to change some predictions."""
    assert any(r["pred"] != r["pred_norm"] for r in cloze_report.records)


def test_progress_bar_shows_items_per_second_and_eta(tiny_gemma2_model, capsys):
    evaluate(tiny_gemma2_model, MultipleChoiceTask("bar", ITEMS[:2], MMLUPrompt()))
    err = capsys.readouterr().err
    assert "2/2 [" in err and "item/s" in err and "<" in err  # [elapsed<remaining, rate]


def test_interrupt_keeps_the_items_done(tiny_gemma2_model, monkeypatch):
    model, calls = tiny_gemma2_model, []
    prefill = model.prefill

    def interrupted_at_the_third(cache, ids):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return prefill(cache, ids)

    monkeypatch.setattr(model, "prefill", interrupted_at_the_third)
    report = evaluate(model, MultipleChoiceTask("stop", ITEMS, MMLUPrompt()), progress=False)
    assert report.interrupted and report.n == 2 and report.planned == 5
    assert [r["id"] for r in report.records] == ["item 0", "item 1"]
    assert "interrupted after 2 of 5 items" in report.summary()


def test_an_item_too_long_for_the_context_is_named(tiny_gemma2_model, monkeypatch):
    model = tiny_gemma2_model
    monkeypatch.setattr(model, "config", dataclasses.replace(model.config, context_length=12))
    with pytest.raises(ContextLengthError, match="^item 0: the prompt and its longest choice "
                                                 "need .* context is 12"):
        evaluate(model, MultipleChoiceTask("long", ITEMS, MMLUPrompt()), progress=False)


# ---- generation tasks --------------------------------------------------------------------------

class CannedModel:
    """Answers each prompt with a canned text; records the batches it was given."""

    path = Path("canned-fp32")

    def __init__(self, answers: dict[str, str]):
        self.answers, self.batches = answers, []

    def generate_batch(self, prompts, **kwargs):
        self.batches.append((list(prompts), kwargs))
        return [Generation(self.answers[p.rsplit("Question: ", 1)[1]], [], "stop")
                for p in prompts]


def test_generation_extracts_numbers_and_batches_prompts():
    data = [{"question": f"{a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
            for a, b in [(1, 2), (3, 4), (5, 6)]]
    model = CannedModel({"1 + 2?\nAnswer:": " 1 + 2 is 3.", "3 + 4?\nAnswer:": " It is 8",
                         "5 + 6?\nAnswer:": " no idea"})
    report = evaluate(model, generation(data), progress=False, batch_size=2)
    assert [len(prompts) for prompts, _ in model.batches] == [2, 1]
    assert model.batches[0][1] == {"max_new_tokens": 256, "temperature": 0.0,
                                   "stop": ["Question:", "\n\n"]}
    assert [(r["extracted"], r["target"], r["correct"]) for r in report.records] == [
        ("3", "3", True), ("8", "7", False), (None, "11", False)]
    assert report.accuracy == pytest.approx(1 / 3)


def test_generation_batches_answer_as_single_prompts_do(tiny_gemma2_model):
    problems = tuple(Problem(q, "0", id=str(i)) for i, q in enumerate(
        ["What is 3 + 4?", "Once upon a time", "The capital of France is"]))
    task = GenerationTask("gen", problems, max_new_tokens=8)
    report = evaluate(tiny_gemma2_model, task, progress=False, batch_size=3)
    for problem, record in zip(problems, report.records):
        alone = tiny_gemma2_model.generate(task.context(problem), max_new_tokens=8,
                                           stop=list(task.stop))
        assert record["output"] == alone.text


def test_a_run_waits_for_the_model_lock(tiny_gemma2_model, capsys):
    """The chat widget and the magic hold the model's lock while answering; so does a run."""
    import threading
    import time

    from gemma_nb.exclusive import model_lock

    lock = model_lock(tiny_gemma2_model)
    lock.acquire()
    start = time.perf_counter()  # before the timer starts: it releases 0.5 s after that
    threading.Timer(0.5, lock.release).start()
    report = evaluate(tiny_gemma2_model, MultipleChoiceTask("wait", ITEMS[:1], MMLUPrompt()))
    assert time.perf_counter() - start >= 0.5 and report.n == 1
    assert "(waiting: the model is answering another request)" in capsys.readouterr().err
    assert not lock.locked()  # released after the run
