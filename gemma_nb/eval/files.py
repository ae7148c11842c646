"""Tables from where users keep them: jsonl, csv (with a header, or Hendrycks' headerless
`{subject}_test.csv`), parquet, a pandas DataFrame, or a list of dicts. Each row comes with a label
("line 12 of mmlu.jsonl") so that errors can name it.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import EvalDataError
from .lazy import require
from .rows import Row

__all__ = ["read_rows", "jsonl_rows", "read_jsonl", "read_csv", "read_parquet", "rows_of_frame",
           "rows_of_records", "HENDRYCKS_COLUMNS"]

# Hendrycks' original CSVs have no header: question, the four choices, the answer letter.
HENDRYCKS_COLUMNS = ("question", "A", "B", "C", "D", "answer")
_HENDRYCKS_SUFFIXES = ("_test", "_dev", "_val")


def jsonl_rows(lines: Iterable[str], name: str) -> Iterator[Row]:
    """One JSON object a line; blank lines are skipped, labels count every line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"line {number} of {name} is not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise EvalDataError(f"line {number} of {name} is not a JSON object")
        yield f"line {number} of {name}", row


def read_jsonl(path: Path) -> Iterator[Row]:
    with open(path, encoding="utf-8") as f:
        yield from jsonl_rows(f, path.name)


def _subject_of(path: Path) -> str:
    """"high_school_physics_test.csv" -> "high school physics" (Hendrycks' file names)."""
    stem = path.stem
    for suffix in _HENDRYCKS_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return stem.replace("_", " ")


def read_csv(path: Path) -> Iterator[Row]:
    """A CSV with a header naming `question`, or Hendrycks' six headerless columns (the
    subject then comes from the file name)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        first = next(reader, None)
        if first is None:
            return
        has_header = "question" in first
        header = first if has_header else list(HENDRYCKS_COLUMNS)
        subject = None if has_header else _subject_of(path)
        if not has_header:
            reader = itertools.chain([first], reader)
        for number, values in enumerate(reader, 2 if has_header else 1):
            if len(values) != len(header):
                raise EvalDataError(f"row {number} of {path.name} has {len(values)} fields, "
                                    f"the {'header' if has_header else 'layout'} "
                                    f"{len(header)} ({', '.join(header)})")
            row: dict[str, Any] = dict(zip(header, values))
            if subject is not None:
                row["subject"] = subject
            yield f"row {number} of {path.name}", row


def read_parquet(path: Path) -> tuple[list[Row], list[str]]:
    frame = require("pandas").read_parquet(path)
    return list(rows_of_frame(frame, path.name)), [str(c) for c in frame.columns]


def rows_of_frame(frame: Any, name: str = "the DataFrame") -> Iterator[Row]:
    """Rows of a pandas DataFrame, labelled by their index."""
    columns = [str(c) for c in frame.columns]
    for index, values in zip(frame.index, frame.itertuples(index=False, name=None)):
        yield f"row {index!r} of {name}", dict(zip(columns, values))


def _is_frame(data: Any) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame exists only once pandas is imported
    return pandas is not None and isinstance(data, pandas.DataFrame)


def rows_of_records(records: Iterable[Mapping[str, Any]]) -> Iterator[Row]:
    for i, row in enumerate(records):
        if not isinstance(row, Mapping):
            raise EvalDataError(f"record {i} is a {type(row).__name__}, not a dict")
        yield f"record {i}", row


def read_rows(data: Any) -> tuple[list[Row], list[str] | None]:
    """Rows of a path (file, or a folder of Hendrycks CSVs), a DataFrame or a list of dicts,
    and the table's columns when it has a header (so a missing column is found up front)."""
    if isinstance(data, (str, Path)):
        path = Path(data).expanduser()
        if path.is_dir():
            return [row for file in sorted(path.glob("*.csv")) for row in read_csv(file)], None
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv", ".parquet"):
            raise EvalDataError(f"{path.name}: cannot read {suffix or 'a file without a suffix'}"
                                "; use .jsonl, .csv or .parquet")
        if not path.is_file():
            raise EvalDataError(f"no file at {path}")
        if suffix == ".parquet":
            return read_parquet(path)
        return list(read_csv(path) if suffix == ".csv" else read_jsonl(path)), None
    if _is_frame(data):
        return list(rows_of_frame(data)), [str(c) for c in data.columns]
    return list(rows_of_records(data)), None
