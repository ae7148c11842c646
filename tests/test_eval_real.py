"""MMLU on the real Gemma 3 270M (acceptance 3): a fixed, seeded 200-item sample end to end.

The base 270M is near chance on MMLU, so these tests pin the pipeline, not a score. Measured
throughput is in docs/evaluation.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from gemma_nb.eval import evaluate, mmlu
from gemma_nb.eval.scoring import log_softmax

pytestmark = pytest.mark.slow

N, SEED = 200, 0


@pytest.fixture(scope="module")
def report(real_model):
    return evaluate(real_model, mmlu(n=N, seed=SEED), progress=False)


def test_a_seeded_200_item_sample_runs_end_to_end(report, capsys):
    with capsys.disabled():  # the accuracy and its interval, in the test log
        print(f"\n{report.summary()}")
    assert report.n == N and not report.interrupted
    assert [r["id"] for r in report.records] == [i.id for i in mmlu(n=N, seed=SEED).items]
    low, high = report.interval
    assert 0 <= low <= report.accuracy <= high <= 1
    assert report.by_subject().n.sum() == N and report.items_per_s > 0
    for r in report.records:
        assert len(r["logprobs"]) == 4 and np.isfinite(r["logprobs"]).all()
        assert sum(r["probs"]) == pytest.approx(1)


def test_scores_equal_the_letters_log_probs_after_the_prompt(report, real_model):
    """An independent path for three items: one full forward of the prompt (model.logits),
    the log-softmax of its last position at the ids of " A".." D"."""
    tok = real_model.tokenizer
    letters = [tok.encode(f" {c}", add_bos=False) for c in "ABCD"]
    assert all(len(ids) == 1 for ids in letters)  # one forward per item, no decode
    for r in report.records[:3]:
        last = log_softmax(real_model.logits(tok.encode(r["prompt"]))[-1])
        np.testing.assert_allclose(r["logprobs"], [last[ids[0]] for ids in letters], atol=1e-4)


def test_five_shot_prompts_run(real_model):
    task = mmlu(n=5, seed=SEED, shots=5)
    report = evaluate(real_model, task, progress=False)
    assert report.n == 5
    for r in report.records:
        assert r["prompt"].startswith("The following are multiple choice questions (with "
                                      f"answers) about {r['subject']}.\n\n")
        assert r["prompt"].count("\nAnswer: ") == 5 and r["prompt"].endswith("\nAnswer:")
        assert r["tokens"] > 200
