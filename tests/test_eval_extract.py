"""Answers extracted from generated text, GSM8K style."""

from __future__ import annotations

import pytest

from gemma_nb.eval.extract import STRICT_GSM8K, extract_answer, is_match


@pytest.mark.parametrize("text, expected", [
    ("She pays 3 * 4 = 12 dollars, so the answer is $1,234.", "1234"),
    ("first 5, then 7", "7"),
    ("-3 degrees", "-3"),
    ("It costs 18.50.", "18.50"),
    ("no digits here", None),
])
def test_number_is_the_last_one(text, expected):
    assert extract_answer(text) == expected


def test_regex_takes_the_first_group():
    assert extract_answer("so 6 * 7 = 42\n#### 42\nQuestion", STRICT_GSM8K) == "42"
    assert extract_answer("The answer is 42", STRICT_GSM8K) is None
    assert extract_answer("Answer: (b)", r"\(([a-d])\)") == "b"


@pytest.mark.parametrize("extracted, target, expected", [
    ("18", "18", True), ("18.0", "18", True), ("1,000", "1000", True), ("17", "18", False),
    (None, "18", False), ("b", "b", True), ("b", "c", False),
])
def test_match_compares_numbers_as_numbers(extracted, target, expected):
    assert is_match(extracted, target) is expected
