"""MMLU tasks: seeded samples, subject filters, and where the few-shot examples come from."""

from __future__ import annotations

import json
import sys
import types

import pytest

from gemma_nb.eval import DatasetUnavailableError, UnknownSubjectError, mmlu, mmlu_items

SUBJECTS = ("abstract algebra", "anatomy", "virology")


def row(subject: str, i: int) -> dict:
    return {"question": f"{subject} question {i}?", "choices": ["w", "x", "y", "z"],
            "answer": i % 4, "subject": subject}


@pytest.fixture
def data(tmp_path):
    """20 items per subject, as a jsonl file (no dev split: the first 5 per subject are)."""
    path = tmp_path / "mmlu.jsonl"
    path.write_text("\n".join(json.dumps(row(s, i)) for s in SUBJECTS for i in range(20)))
    return path


def ids(task):
    return [item.id for item in task.items]


def test_the_seed_fixes_the_sample(data):
    assert ids(mmlu(n=10, seed=3, source=data)) == ids(mmlu(n=10, seed=3, source=data))
    assert ids(mmlu(n=10, seed=3, source=data)) != ids(mmlu(n=10, seed=4, source=data))


def test_a_smaller_sample_is_a_prefix_of_a_larger_one(data):
    assert ids(mmlu(n=30, source=data))[:10] == ids(mmlu(n=10, source=data))


def test_the_sample_is_the_same_at_zero_and_five_shots(data):
    assert ids(mmlu(n=20, shots=0, source=data)) == ids(mmlu(n=20, shots=5, source=data))


def test_without_a_dev_split_the_first_five_of_each_subject_are_examples_only(data):
    items, dev = mmlu_items(data)
    assert [i.question for i in dev["anatomy"]] == [f"anatomy question {i}?" for i in range(5)]
    assert len(items) == 3 * 15 and not set(map(id, items)) & {id(i) for g in dev.values()
                                                               for i in g}
    task = mmlu(n=None, shots=2, source=data)
    assert task.context(task.items[0]).count("\nAnswer: ") == 2


def test_subjects_filter_accepts_underscores_and_case(data):
    task = mmlu(n=None, subjects=["Abstract_Algebra", "virology"], source=data)
    assert {i.subject for i in task.items} == {"abstract algebra", "virology"}
    assert len(task.items) == 30


def test_an_unknown_subject_lists_the_known_ones(data):
    with pytest.raises(UnknownSubjectError, match="'astrology'; the data has: abstract algebra, "
                                                  "anatomy, virology"):
        mmlu(subjects=["astrology"], source=data)


def test_a_dev_file_gives_the_examples(data, tmp_path):
    dev = tmp_path / "dev.jsonl"
    dev.write_text("\n".join(json.dumps({**row(s, 0), "question": f"dev {s}?"})
                             for s in SUBJECTS))
    items, examples = mmlu_items(data, dev=dev)
    assert len(items) == 60 and [i.question for i in examples["virology"]] == ["dev virology?"]


def test_hendrycks_data_folder_uses_its_dev_split(tmp_path):
    for split in ("dev", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / f"anatomy_{split}.csv").write_text(f"{split} q?,a,b,c,d,A\n")
    task = mmlu(n=None, shots=1, source=tmp_path)
    assert task.context(task.items[0]).endswith("dev q?\nA. a\nB. b\nC. c\nD. d\nAnswer: A\n\n"
                                                "test q?\nA. a\nB. b\nC. c\nD. d\nAnswer:")


def test_hugging_face_datasets_test_and_dev_splits(monkeypatch):
    """source="hf" reads cais/mmlu's splits through `datasets` (faked here: no network)."""
    splits = {"test": [row("anatomy", i) for i in range(3)],
              "dev": [{**row("anatomy", 0), "question": "dev?"}]}
    asked = []

    def load_dataset(path, name, split):
        asked.append((path, name, split))
        return splits[split]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    items, dev = mmlu_items("hf")
    assert asked == [("cais/mmlu", "all", "test"), ("cais/mmlu", "all", "dev")]
    assert len(items) == 3 and [i.question for i in dev["anatomy"]] == ["dev?"]


def test_hugging_face_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(DatasetUnavailableError, match="pip install datasets"):
        mmlu_items("hf")
