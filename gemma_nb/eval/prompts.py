"""Prompt layouts, as lm-evaluation-harness writes them.

MMLU (`lm_eval/tasks/mmlu/default/_default_template_yaml`, `api/samplers.py`): a subject header
"The following are multiple choice questions (with answers) about {subject}.\\n\\n", then each
few-shot example as "{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: {letter}" followed by
"\\n\\n", then the question in the same layout ending at "Answer:". What is scored is " A", " B",
... after it: the target delimiter " " then the choice's label.

Cloze (ARC, HellaSwag style): "Question: {question}\\nAnswer:" and the choices' own texts are
scored. GSM8K: the same "Question: ..\\nAnswer:" with worked answers in the examples, then the
model writes its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .items import LETTERS, Item, Problem

__all__ = ["MMLUPrompt", "ClozePrompt", "GSM8KPrompt", "PROMPTS", "TARGET_DELIMITER",
           "FEWSHOT_DELIMITER"]

TARGET_DELIMITER = " "  # between the prompt and what is scored (the harness's default)
FEWSHOT_DELIMITER = "\n\n"  # after each few-shot example


@dataclass(frozen=True)
class MMLUPrompt:
    """Questions with lettered choices; the letters are scored."""

    name: str = "mmlu"

    def header(self, subject: str) -> str:
        # The harness's per-subject "description"; subjects are written with spaces.
        if not subject:
            return ""
        return (f"The following are multiple choice questions (with answers) about "
                f"{subject.replace('_', ' ')}.\n\n")

    def question(self, item: Item) -> str:
        lines = [item.question.strip()]  # the harness strips the question, not the choices
        lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(item.choices)]
        return "\n".join(lines) + "\nAnswer:"

    def targets(self, item: Item) -> list[str]:
        """What follows the delimiter for each choice; acc_norm divides by its length."""
        return list(LETTERS[: len(item.choices)])

    def context(self, item: Item, examples: Sequence[Item]) -> str:
        shots = "".join(self.question(ex) + TARGET_DELIMITER + self.targets(ex)[ex.answer]
                        + FEWSHOT_DELIMITER for ex in examples)
        return self.header(item.subject) + shots + self.question(item)


@dataclass(frozen=True)
class ClozePrompt(MMLUPrompt):
    """"Question: ..\\nAnswer:" and each choice's own text scored (ARC, HellaSwag)."""

    name: str = "cloze"

    def header(self, subject: str) -> str:
        return ""  # ARC and HellaSwag have no description

    def question(self, item: Item) -> str:
        return f"Question: {item.question.strip()}\nAnswer:"

    def targets(self, item: Item) -> list[str]:
        return list(item.choices)


@dataclass(frozen=True)
class GSM8KPrompt:
    """"Question: ..\\nAnswer:"; examples show their worked solution, the model writes on."""

    name: str = "gsm8k"

    def question(self, problem: Problem) -> str:
        return f"Question: {problem.question.strip()}\nAnswer:"

    def context(self, problem: Problem, examples: Sequence[Problem]) -> str:
        shots = "".join(self.question(ex) + TARGET_DELIMITER + (ex.solution or ex.target)
                        + FEWSHOT_DELIMITER for ex in examples)
        return shots + self.question(problem)


PROMPTS = {"mmlu": MMLUPrompt(), "cloze": ClozePrompt()}  # multiple-choice layouts by name
