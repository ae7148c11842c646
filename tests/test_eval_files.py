"""Tables from jsonl, csv (with a header or Hendrycks' headerless files), parquet, DataFrames
and lists of dicts: the same items, with rows labelled for errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gemma_nb.eval import AnswerNotInChoicesError, EvalDataError, Item, multiple_choice
from gemma_nb.eval.files import read_rows

ROWS = [
    {"question": "Capital of Italy?", "choices": ["Paris", "Rome", "Oslo", "Bern"], "answer": 1,
     "subject": "geography"},
    {"question": "2 + 2?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "math"},
]
FLAT = [{"question": r["question"], **dict(zip("ABCD", r["choices"])),
         "answer": "ABCD"[r["answer"]], "subject": r["subject"]} for r in ROWS]


def questions(task):
    return [(i.question, i.choices, i.answer, i.subject) for i in task.items]


EXPECTED = [(r["question"], tuple(r["choices"]), r["answer"], r["subject"]) for r in ROWS]


def test_jsonl(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    task = multiple_choice(path)
    assert questions(task) == EXPECTED
    assert [i.id for i in task.items] == ["line 1 of data.jsonl", "line 2 of data.jsonl"]


def test_csv_with_a_header(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame(FLAT).to_csv(path, index=False)
    task = multiple_choice(path)
    assert questions(task) == EXPECTED
    assert task.items[0].id == "row 2 of data.csv"  # line 1 is the header


def test_hendrycks_headerless_csv_takes_the_subject_from_its_name(tmp_path):
    path = tmp_path / "high_school_geography_test.csv"
    path.write_text('"Capital of Italy?",Paris,Rome,Oslo,Bern,B\n')
    (item,) = multiple_choice(path).items
    assert item == Item("Capital of Italy?", ("Paris", "Rome", "Oslo", "Bern"), 1,
                        "high school geography", "row 1 of high_school_geography_test.csv")


def test_folder_of_hendrycks_csvs(tmp_path):
    (tmp_path / "anatomy_test.csv").write_text("Bones?,1,206,3,4,B\n")
    (tmp_path / "virology_test.csv").write_text("Virus?,a,b,c,d,D\n")
    assert [i.subject for i in multiple_choice(tmp_path).items] == ["anatomy", "virology"]


def test_parquet_as_published_by_cais_mmlu(tmp_path):
    path = tmp_path / "test-00000-of-00001.parquet"
    pd.DataFrame(ROWS).to_parquet(path)  # choices come back as numpy arrays
    assert questions(multiple_choice(path)) == EXPECTED


def test_dataframe_and_records():
    assert questions(multiple_choice(pd.DataFrame(ROWS))) == EXPECTED
    assert questions(multiple_choice(ROWS)) == EXPECTED


def test_bad_answer_in_a_csv_names_its_line(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame([FLAT[0], {**FLAT[1], "answer": "F"}]).to_csv(path, index=False)
    with pytest.raises(AnswerNotInChoicesError, match="^row 3 of data.csv: answer 'F'"):
        multiple_choice(path)


def test_wrong_field_count_names_the_row(tmp_path):
    path = tmp_path / "anatomy_test.csv"
    path.write_text("Bones?,1,206,3,4,B\nVirus?,a,b,c,D\n")
    with pytest.raises(EvalDataError, match="row 2 of anatomy_test.csv has 5 fields, the layout 6"):
        multiple_choice(path)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(EvalDataError, match="^line 2 of data.jsonl is not JSON"):
        multiple_choice(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(EvalDataError, match="cannot read .txt"):
        read_rows(tmp_path / "data.txt")
    with pytest.raises(EvalDataError, match="no file at"):
        read_rows(tmp_path / "absent.jsonl")
