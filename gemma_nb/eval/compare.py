"""Several models on one task: accuracy of each, how often they agree, and how far their choice
distributions move (mean KL from the first model, the reference), with a plot. "What did int4
cost me?" is `compare({"fp32": full, "int4": small}, task)`.

Models are scored on the same items with the same prompts; a report passed in instead of a model
is used as it is. Only items every report holds are compared: after an interrupted run, the
next models score only the items it finished.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import EvalDataError
from .lazy import require
from .report import Report
from .runner import evaluate, model_name
from .stats import kl_divergence, wilson_interval

__all__ = ["compare", "Comparison"]


def _named(models: Mapping[str, Any] | Sequence[Any]) -> list[tuple[str, Any]]:
    if isinstance(models, Mapping):
        return [(str(name), m) for name, m in models.items()]
    named, seen = [], set()
    for m in models:
        name = m.model if isinstance(m, Report) else model_name(m)
        while name in seen:
            name += "'"
        seen.add(name)
        named.append((name, m))
    return named


def compare(models: Mapping[str, Any] | Sequence[Any], task: Any, *,
            progress: bool = True, cluster: Any = None) -> Comparison:
    """Evaluate each model (or take its Report) on `task`; the first is the reference.
    `cluster`: as in `evaluate`, for every model."""
    named = _named(models)
    if len(named) < 2:
        raise ValueError(f"compare needs at least two models, got {len(named)}")
    reports: dict[str, Report] = {}
    for name, m in named:
        report = m if isinstance(m, Report) else evaluate(m, task, progress=progress, cluster=cluster)
        reports[name] = report
        if report.interrupted:  # the next models score only the items this one finished
            done = {r["id"] for r in report.records}
            task = dataclasses.replace(task, items=tuple(i for i in task.items if i.id in done))
    return Comparison(task.name, reports)


@dataclass
class Comparison:
    task: str
    reports: dict[str, Report]

    def __post_init__(self) -> None:
        kinds = {r.kind for r in self.reports.values()}
        if len(kinds) > 1:
            raise EvalDataError(f"cannot compare {' and '.join(sorted(kinds))} reports")
        by_id = [{r["id"]: r for r in report.records} for report in self.reports.values()]
        self._records = dict(zip(self.reports, by_id))
        first = list(self.reports.values())[0].records
        self.ids = [r["id"] for r in first if all(r["id"] in ids for ids in by_id)]

    @property
    def reference(self) -> str:
        return next(iter(self.reports))

    @property
    def n(self) -> int:
        return len(self.ids)

    def _column(self, name: str, key: str) -> list[Any]:
        records = self._records[name]
        return [records[i][key] for i in self.ids]

    def _predictions(self, name: str) -> list[Any]:
        kind = self.reports[name].kind
        return self._column(name, "pred" if kind == "multiple_choice" else "extracted")

    def accuracy(self, name: str) -> float:
        right = self._column(name, "correct")
        return sum(right) / len(right) if right else math.nan

    def agreement(self, name: str, other: str | None = None) -> float:
        """Share of the common items where `name` predicts what `other` (the reference) does."""
        a, b = self._predictions(name), self._predictions(other or self.reference)
        return float(np.mean([x == y for x, y in zip(a, b)])) if a else math.nan

    def item_kl(self, name: str, reference: str | None = None) -> np.ndarray:
        """KL(reference || name) of each common item's distribution over its choices."""
        reference = reference or self.reference
        if self.reports[name].kind != "multiple_choice":
            raise EvalDataError("KL needs choice probabilities; generation tasks have none")
        return np.array([kl_divergence(p, q) for p, q in
                         zip(self._column(reference, "probs"), self._column(name, "probs"))])

    def mean_kl(self, name: str, reference: str | None = None) -> float:
        if self.reports[name].kind != "multiple_choice" or not self.ids:
            return math.nan
        return float(self.item_kl(name, reference).mean())

    def rows(self) -> list[dict[str, Any]]:
        """One row per model, on the common items; agreement and KL against the reference."""
        out = []
        for name, report in self.reports.items():
            right = sum(self._column(name, "correct"))
            low, high = wilson_interval(right, self.n)
            out.append({"model": name, "folder": report.model, "n": self.n,
                        "accuracy": self.accuracy(name), "ci_low": low, "ci_high": high,
                        "agreement": self.agreement(name), "mean_kl": self.mean_kl(name),
                        "items_per_s": report.items_per_s})
        return out

    @property
    def table(self) -> Any:
        return require("pandas").DataFrame.from_records(self.rows()).set_index("model")

    def agreement_matrix(self) -> Any:
        names = list(self.reports)
        return require("pandas").DataFrame(
            [[self.agreement(a, b) for b in names] for a in names], index=names, columns=names)

    def kl_matrix(self) -> Any:
        """Row a, column b: mean KL(a || b)."""
        names = list(self.reports)
        return require("pandas").DataFrame(
            [[self.mean_kl(b, a) for b in names] for a in names], index=names, columns=names)

    def plot(self) -> Any:
        from .plots import plot_comparison

        return plot_comparison(self)

    def summary(self) -> str:
        lines = [f"{self.task}: {self.n} common items, reference {self.reference}"]
        for r in self.rows():
            lines.append(f"  {r['model']}: accuracy {r['accuracy']:.3f} ({r['ci_low']:.3f}-"
                         f"{r['ci_high']:.3f}), agreement {r['agreement']:.3f}, "
                         f"mean KL {r['mean_kl']:.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td style='text-align:left'>{html.escape(r['model'])}</td><td>{r['n']}</td>"
            f"<td>{r['accuracy']:.3f}</td><td>{r['ci_low']:.3f}&ndash;{r['ci_high']:.3f}</td>"
            f"<td>{r['agreement']:.3f}</td><td>{r['mean_kl']:.4f}</td>"
            f"<td>{r['items_per_s']:.2f}</td></tr>" for r in self.rows())
        return (f"<div><p><b>{html.escape(self.task)}</b>: {self.n} common items; agreement "
                f"and KL against <code>{html.escape(self.reference)}</code></p><table><thead>"
                "<tr><th>model</th><th>n</th><th>accuracy</th><th>95% CI (Wilson)</th>"
                "<th>agreement</th><th>mean KL (nats)</th><th>items/s</th></tr></thead>"
                f"<tbody>{cells}</tbody></table></div>")
