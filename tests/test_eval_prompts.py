"""Prompts equal lm-evaluation-harness's MMLU template (acceptance 2), written out by hand here.

The template (lm_eval/tasks/mmlu/default/_default_template_yaml and the per-subject yaml):
description "The following are multiple choice questions (with answers) about {subject}.\\n\\n";
doc_to_text "{{question.strip()}}\\nA. {{choices[0]}}\\nB. ...\\nD. {{choices[3]}}\\nAnswer:";
few-shot examples are doc_to_text + " " + the answer's letter + "\\n\\n" (first_n of dev).
"""

from __future__ import annotations

import pytest

from gemma_nb.eval import Item, MultipleChoiceTask, NotEnoughExamplesError, Problem
from gemma_nb.eval.prompts import ClozePrompt, GSM8KPrompt, MMLUPrompt

QUESTION = Item("  What is 2 + 2?\n", ("3", "4", " 5", "22"), 1, "elementary_mathematics", "q")
DEV = tuple(Item(q, c, a, "elementary_mathematics", f"dev{i}") for i, (q, c, a) in enumerate([
    ("What is 1 + 1?", ("1", "2", "3", "4"), 1),
    ("What is 10 - 3?", ("7", "3", "13", "10"), 0),
    ("What is 3 * 3?", ("6", "33", "9", "12"), 2),
    ("What is 8 / 2?", ("2", "6", "16", "4"), 3),
    ("What is 5 + 0?", ("0", "5", "50", "1"), 1),
    ("What is 9 - 9?", ("0", "1", "9", "18"), 0),  # the sixth: never shown at 5 shots
]))

ZERO_SHOT = (
    "The following are multiple choice questions (with answers) about elementary mathematics."
    "\n\n"
    "What is 2 + 2?\nA. 3\nB. 4\nC.  5\nD. 22\nAnswer:"
)

FIVE_SHOT = (
    "The following are multiple choice questions (with answers) about elementary mathematics."
    "\n\n"
    "What is 1 + 1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
    "What is 10 - 3?\nA. 7\nB. 3\nC. 13\nD. 10\nAnswer: A\n\n"
    "What is 3 * 3?\nA. 6\nB. 33\nC. 9\nD. 12\nAnswer: C\n\n"
    "What is 8 / 2?\nA. 2\nB. 6\nC. 16\nD. 4\nAnswer: D\n\n"
    "What is 5 + 0?\nA. 0\nB. 5\nC. 50\nD. 1\nAnswer: B\n\n"
    "What is 2 + 2?\nA. 3\nB. 4\nC.  5\nD. 22\nAnswer:"
)


def task(shots: int) -> MultipleChoiceTask:
    return MultipleChoiceTask("mmlu", (QUESTION,), MMLUPrompt(), shots,
                              {"elementary_mathematics": DEV})


def test_zero_shot_prompt_is_the_harness_template():
    assert task(0).context(QUESTION) == ZERO_SHOT


def test_five_shot_prompt_takes_the_first_five_examples_of_the_subject():
    assert task(5).context(QUESTION) == FIVE_SHOT


def test_scored_continuations_are_space_and_letter():
    assert [" " + t for t in MMLUPrompt().targets(QUESTION)] == [" A", " B", " C", " D"]


def test_no_subject_means_no_header():
    item = Item("Is water wet?", ("yes", "no"), 0)
    assert MMLUPrompt().context(item, []) == "Is water wet?\nA. yes\nB. no\nAnswer:"


def test_too_few_examples_fail_before_any_run():
    with pytest.raises(NotEnoughExamplesError, match="6-shot needs 6 examples of subject "
                                                     "'elementary_mathematics'; .* has 5"):
        MultipleChoiceTask("m", (QUESTION,), MMLUPrompt(), 6, {"elementary_mathematics": DEV[:5]})


def test_cloze_prompt_scores_choice_texts():
    prompt = ClozePrompt()
    assert prompt.context(QUESTION, DEV[:1]) == (
        "Question: What is 1 + 1?\nAnswer: 2\n\nQuestion: What is 2 + 2?\nAnswer:")
    assert prompt.targets(QUESTION) == ["3", "4", " 5", "22"]


def test_gsm8k_prompt_shows_worked_solutions():
    example = Problem("Tom has 3 apples and buys 2. How many?", "5", solution="3 + 2 = 5\n#### 5")
    problem = Problem("What is 6 times 7?", "42")
    assert GSM8KPrompt().context(problem, [example]) == (
        "Question: Tom has 3 apples and buys 2. How many?\nAnswer: 3 + 2 = 5\n#### 5\n\n"
        "Question: What is 6 times 7?\nAnswer:")
