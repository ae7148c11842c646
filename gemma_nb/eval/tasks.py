"""A task is the items to score, the prompt layout, and the few-shot examples: all fixed before
a run, so two models evaluated on one task see the same prompts.

Selection: a subject filter, then a seeded sample of `n` items (the first n of numpy's
`default_rng(seed).permutation`: in sampled order, so a run stopped early is still a random
sample, and with one seed a smaller sample is a prefix of a larger one). Few-shot examples are
the first `shots` of the item's subject in the example pool (the harness's `first_n` sampler over
MMLU's dev split).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .errors import NotEnoughExamplesError, UnknownSubjectError
from .files import read_rows
from .items import Item, Problem
from .prompts import PROMPTS, GSM8KPrompt, MMLUPrompt
from .rows import items_from_rows, problems_from_rows

__all__ = ["MultipleChoiceTask", "GenerationTask", "multiple_choice", "generation", "select",
           "examples_by_subject"]

T = TypeVar("T", Item, Problem)


@dataclass(frozen=True)
class MultipleChoiceTask:
    """Items scored by the log-likelihood of each choice after the prompt."""

    name: str
    items: tuple[Item, ...]
    prompt: MMLUPrompt = field(default_factory=MMLUPrompt)
    shots: int = 0
    examples: Mapping[str, tuple[Item, ...]] = field(default_factory=dict)  # pool by subject

    def __post_init__(self) -> None:
        _check_examples(self.items, self.examples, self.shots)

    def context(self, item: Item) -> str:
        return self.prompt.context(item, self.examples.get(item.subject, ())[: self.shots])

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<MultipleChoiceTask {self.name}: {len(self.items)} items, {self.shots}-shot>"


@dataclass(frozen=True)
class GenerationTask:
    """Problems answered by greedy generation; the answer is extracted (`extract`: "number",
    GSM8K's last number, or a regex whose first group is the answer) and compared exactly."""

    name: str
    items: tuple[Problem, ...]
    prompt: GSM8KPrompt = field(default_factory=GSM8KPrompt)
    shots: int = 0
    examples: Mapping[str, tuple[Problem, ...]] = field(default_factory=dict)
    extract: str = "number"
    stop: tuple[str, ...] = ("Question:", "\n\n")  # the harness stops at "Question:"
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        _check_examples(self.items, self.examples, self.shots)

    def context(self, problem: Problem) -> str:
        return self.prompt.context(problem, self.examples.get(problem.subject, ())[: self.shots])

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<GenerationTask {self.name}: {len(self.items)} problems, {self.shots}-shot>"


def _check_examples(items: Sequence[Item | Problem], examples: Mapping[str, Sequence[Any]],
                    shots: int) -> None:
    """Fail before a run, not at the item whose subject lacks examples."""
    if shots <= 0:
        return
    for subject in sorted({item.subject for item in items}):
        have = len(examples.get(subject, ()))
        if have < shots:
            raise NotEnoughExamplesError(
                f"{shots}-shot needs {shots} examples of subject {subject or '(none)'!r}; the "
                f"example pool has {have}"
            )


def _key(subject: str) -> str:
    return subject.replace("_", " ").strip().lower()


def select(items: Sequence[T], n: int | None = None, seed: int = 0,
           subjects: Sequence[str] | None = None) -> list[T]:
    """Items of `subjects` (spaces or underscores, any case), then `n` of them sampled."""
    chosen = list(items)
    if subjects:
        have = {_key(item.subject) for item in chosen}
        wanted = {_key(s) for s in subjects}
        unknown = sorted(wanted - have)
        if unknown:
            raise UnknownSubjectError(
                f"no items of subject(s) {', '.join(map(repr, unknown))}; the data has: "
                f"{', '.join(sorted(have))}"
            )
        chosen = [item for item in chosen if _key(item.subject) in wanted]
    if n is not None and n < len(chosen):
        # a permutation's first n: a smaller sample with the same seed is a prefix of a larger
        order = np.random.default_rng(seed).permutation(len(chosen))[:n]
        chosen = [chosen[i] for i in order]
    return chosen


def examples_by_subject(items: Sequence[T]) -> dict[str, tuple[T, ...]]:
    """The example pool: items grouped by subject, in their order."""
    pool: dict[str, list[T]] = {}
    for item in items:
        pool.setdefault(item.subject, []).append(item)
    return {subject: tuple(group) for subject, group in pool.items()}


def multiple_choice(data: Any, *, name: str = "multiple choice", prompt: str = "mmlu",
                    shots: int = 0, examples: Any = None, n: int | None = None, seed: int = 0,
                    subjects: Sequence[str] | None = None,
                    columns: Mapping[str, str] | None = None) -> MultipleChoiceTask:
    """A task from your data: a path (.jsonl, .csv, .parquet), a DataFrame or a list of dicts
    with a question, choices and an answer (index, letter or text). `prompt` is "mmlu"
    (lettered choices, letters scored) or "cloze" (each choice's text scored); `examples` is
    data of the same form for few-shot prompts."""
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}")
    items = items_from_rows(*read_rows(data), mapping=columns)
    pool = examples_by_subject(items_from_rows(*read_rows(examples), mapping=columns)
                               ) if examples is not None else {}
    return MultipleChoiceTask(name, tuple(select(items, n, seed, subjects)), PROMPTS[prompt],
                              shots, pool)


def generation(data: Any, *, name: str = "generation", shots: int = 0, examples: Any = None,
               n: int | None = None, seed: int = 0, subjects: Sequence[str] | None = None,
               extract: str = "number", max_new_tokens: int = 256,
               stop: Sequence[str] = ("Question:", "\n\n")) -> GenerationTask:
    """A GSM8K-style task from data with `question` and `answer` columns (an answer holding
    "#### X" is scored against X)."""
    problems = problems_from_rows(read_rows(data)[0])
    pool = examples_by_subject(problems_from_rows(read_rows(examples)[0])
                               ) if examples is not None else {}
    return GenerationTask(name, tuple(select(problems, n, seed, subjects)), GSM8KPrompt(),
                          shots, pool, extract, tuple(stop), max_new_tokens)
