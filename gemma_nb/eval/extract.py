"""Answers out of generated text, GSM8K style (lm-evaluation-harness `gsm8k` filters).

"number" takes the last number in the text (the harness's flexible-extract), with thousands
separators, a dollar sign and a final period removed; a regex takes the first group of its
first match (the strict "#### (-?[0-9.,]+)" is one). Numbers then compare as numbers, so "18.0"
matches "18"; other text compares exactly after stripping.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "normalize", "is_match", "NUMBER", "STRICT_GSM8K"]

NUMBER = re.compile(r"-?[$0-9.,]{2,}|-?[0-9]+")  # the harness's flexible-extract pattern
STRICT_GSM8K = r"#### (\-?[0-9\.\,]+)"


def normalize(text: str) -> str:
    return text.strip().replace(",", "").replace("$", "").rstrip(".")


def extract_answer(text: str, extract: str = "number") -> str | None:
    """The answer in `text`, or None when there is none."""
    if extract == "number":
        found = [m for m in NUMBER.findall(text) if re.search(r"\d", m)]
        return normalize(found[-1]) if found else None
    match = re.search(extract, text)
    if match is None:
        return None
    return normalize(match.group(1) if match.groups() else match.group(0))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def is_match(extracted: str | None, target: str) -> bool:
    if extracted is None:
        return False
    a, b = normalize(extracted), normalize(target)
    x, y = _number(a), _number(b)
    return x == y if x is not None and y is not None else a == b
