"""What an evaluation scores: a multiple-choice `Item` or a `Problem` with a reference answer."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Item", "Problem", "LETTERS"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # choice labels, as MMLU prints them


@dataclass(frozen=True)
class Item:
    """One multiple-choice question; `answer` indexes `choices`."""

    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str = ""  # "" when the data has none: the prompt then has no subject header
    id: str = ""  # where it came from ("mmlu.jsonl line 12"): errors and comparisons use it

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


@dataclass(frozen=True)
class Problem:
    """One question answered by generation; `target` is the reference answer as text
    (`solution` is the worked answer shown in few-shot examples, GSM8K style)."""

    question: str
    target: str
    subject: str = ""
    id: str = ""
    solution: str = ""
