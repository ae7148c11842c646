"""The result of an evaluation: one record per item, the accuracy with its interval, a table per
subject, plots, an HTML summary and an item browser.

Records are plain dicts, so a Report needs nothing beyond numpy; `df`, `by_subject()`, the plots
and the browser import pandas, matplotlib and ipywidgets when first used.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from .errors import EvalDataError
from .lazy import require
from .stats import expected_calibration_error, wilson_interval

__all__ = ["Report", "subject_rows"]


def subject_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per subject: items, correct, accuracy and its 95% Wilson interval (sorted by name)."""
    groups: dict[str, list[bool]] = {}
    for r in records:
        groups.setdefault(r["subject"], []).append(bool(r["correct"]))
    rows = []
    for subject in sorted(groups):
        right = groups[subject]
        low, high = wilson_interval(sum(right), len(right))
        rows.append({"subject": subject or "(none)", "n": len(right), "correct": sum(right),
                     "accuracy": sum(right) / len(right), "ci_low": low, "ci_high": high})
    return rows


@dataclass
class Report:
    """What `evaluate` returns. `interrupted` runs hold the items scored before the stop."""

    task: str
    model: str
    kind: str  # "multiple_choice" or "generation"
    records: list[dict[str, Any]] = field(repr=False)
    planned: int  # items the task has
    elapsed_s: float
    interrupted: bool = False

    # ---- numbers ---------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def correct(self) -> int:
        return sum(bool(r["correct"]) for r in self.records)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson score interval of the accuracy (see stats.py for why Wilson)."""
        return wilson_interval(self.correct, self.n)

    @property
    def acc_norm(self) -> float:
        """Accuracy when each choice's log-likelihood is divided by its length in characters."""
        self._need_choices("acc_norm")
        return sum(bool(r["correct_norm"]) for r in self.records) / self.n if self.n \
            else float("nan")

    @property
    def items_per_s(self) -> float:
        return self.n / self.elapsed_s if self.elapsed_s else float("nan")

    @property
    def calibration_error(self) -> float:
        """Expected calibration error over 10 bins of the predicted choice's probability."""
        self._need_choices("calibration")
        return expected_calibration_error([r["confidence"] for r in self.records],
                                          [r["correct"] for r in self.records])

    def _need_choices(self, what: str) -> None:
        if self.kind != "multiple_choice":
            raise EvalDataError(f"{what} needs choice probabilities; {self.task} is a "
                                "generation task")

    def summary(self) -> str:
        low, high = self.interval
        text = (f"{self.task} on {self.model}: accuracy {self.accuracy:.3f} "
                f"(95% CI {low:.3f}-{high:.3f}, Wilson) over {self.n} items")
        if self.kind == "multiple_choice":
            text += f", acc_norm {self.acc_norm:.3f}"
        text += f"; {self.items_per_s:.2f} items/s"
        if self.interrupted:
            text += f"; interrupted after {self.n} of {self.planned} items"
        return text

    def __str__(self) -> str:
        return self.summary()

    # ---- tables ----------------------------------------------------------------------------

    @property
    def df(self) -> Any:
        """One row per item: the prompt, per-choice log-probs and probabilities (lists, in
        choice order), the prediction and whether it is correct."""
        return require("pandas").DataFrame.from_records(self.records)

    def by_subject(self) -> Any:
        return require("pandas").DataFrame.from_records(subject_rows(self.records))

    # ---- plots and widgets -----------------------------------------------------------------

    def plot_subjects(self, ax: Any = None) -> Any:
        """Accuracy per subject with 95% intervals; the chance level when choices exist."""
        from .plots import plot_subjects

        return plot_subjects(self, ax)

    def plot_calibration(self, ax: Any = None, bins: int = 10) -> Any:
        """Reliability diagram: accuracy against the predicted choice's probability."""
        self._need_choices("calibration")
        from .plots import plot_calibration

        return plot_calibration(self, ax, bins)

    def browse(self) -> Any:
        """An ipywidgets browser paging through the items and their choice probabilities."""
        from .browser import ItemBrowser

        return ItemBrowser(self)

    def _repr_html_(self) -> str:
        low, high = self.interval
        head = (f"<b>{html.escape(self.task)}</b> on <code>{html.escape(self.model)}</code>: "
                f"accuracy <b>{self.accuracy:.3f}</b> (95% CI {low:.3f}&ndash;{high:.3f}, "
                f"Wilson), {self.correct}/{self.n} items")
        if self.kind == "multiple_choice":
            head += f", acc_norm {self.acc_norm:.3f}"
        head += f", {self.items_per_s:.2f} items/s"
        if self.interrupted:
            head += (f" <span style='color:#b00'>interrupted after {self.n} of "
                     f"{self.planned} items</span>")
        cells = "".join(
            f"<tr><td style='text-align:left'>{html.escape(r['subject'])}</td><td>{r['n']}</td>"
            f"<td>{r['accuracy']:.3f}</td><td>{r['ci_low']:.3f}&ndash;{r['ci_high']:.3f}</td>"
            "</tr>" for r in subject_rows(self.records))
        table = ("<table><thead><tr><th>subject</th><th>n</th><th>accuracy</th>"
                 f"<th>95% CI</th></tr></thead><tbody>{cells}</tbody></table>")
        return f"<div><p>{head}</p><details><summary>per subject</summary>{table}</details></div>"
