"""matplotlib figures of reports and comparisons (imported only when a plot is asked for).

Each function draws into `ax` when given; otherwise it makes a figure and closes it in pyplot, so
a notebook shows the returned figure once (not once more when the cell ends).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .lazy import require
from .report import subject_rows
from .stats import calibration_bins, expected_calibration_error, wilson_interval

if TYPE_CHECKING:
    from .compare import Comparison
    from .report import Report

__all__ = ["plot_subjects", "plot_calibration", "plot_comparison"]


def _axes(ax: Any, size: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    plt = require("matplotlib.pyplot")
    fig, axes = plt.subplots(1, ncols, figsize=size, layout="constrained")
    plt.close(fig)  # returned, not left for pyplot to show again at the end of the cell
    return fig, axes


def _chance(report: Report) -> float | None:
    if report.kind != "multiple_choice" or not report.records:
        return None
    return float(np.mean([1 / len(r["choices"]) for r in report.records]))


def plot_subjects(report: Report, ax: Any = None) -> Any:
    rows = subject_rows(report.records)
    fig, ax = _axes(ax, (7, 1.2 + 0.28 * max(len(rows), 1)))
    y = np.arange(len(rows))
    acc = np.array([r["accuracy"] for r in rows])
    errors = np.array([[a - r["ci_low"], r["ci_high"] - a] for a, r in zip(acc, rows)]).T
    ax.barh(y, acc, xerr=errors.reshape(2, -1), color="#4c72b0", alpha=0.8,
            error_kw={"elinewidth": 1, "ecolor": "#333"})
    ax.set_yticks(y, [f"{r['subject']} ({r['n']})" for r in rows])
    ax.invert_yaxis()
    ax.axvline(report.accuracy, color="#c44e52", label=f"overall {report.accuracy:.3f}")
    chance = _chance(report)
    if chance is not None:
        ax.axvline(chance, color="#888", linestyle="--", label=f"chance {chance:.2f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (bars: 95% Wilson interval)")
    ax.set_title(f"{report.task} on {report.model}")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_calibration(report: Report, ax: Any = None, bins: int = 10) -> Any:
    confidence = [r["confidence"] for r in report.records]
    correct = [r["correct"] for r in report.records]
    table = calibration_bins(confidence, correct, bins)
    fig, ax = _axes(ax, (5, 5))
    ax.plot([0, 1], [0, 1], color="#888", linestyle="--", label="perfect calibration")
    if table:
        conf = [c for _, c, _, _ in table]
        acc = [a for _, _, a, _ in table]
        counts = [n for *_, n in table]
        intervals = [wilson_interval(round(a * n), n) for a, n in zip(acc, counts)]
        errors = np.array([[a - lo, hi - a] for a, (lo, hi) in zip(acc, intervals)]).T
        ax.errorbar(conf, acc, yerr=errors, fmt="o-", color="#4c72b0", capsize=3,
                    label="accuracy per bin")
        for c, a, n in zip(conf, acc, counts):
            ax.annotate(str(n), (c, a), textcoords="offset points", xytext=(4, -10),
                        fontsize="x-small", color="#555")
    ece = expected_calibration_error(confidence, correct, bins)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("probability of the predicted choice")
    ax.set_ylabel("accuracy")
    ax.set_title(f"calibration of {report.model} (ECE {ece:.3f}, n={report.n})")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_comparison(comparison: Comparison) -> Any:
    """Left: each model's accuracy with its interval. Right: the per-item KL from the
    reference model's choice distribution (how far each model's answers moved)."""
    fig, (left, right) = _axes(None, (10, 3.8), ncols=2)
    names = list(comparison.reports)
    acc = np.array([comparison.reports[n].accuracy for n in names])
    intervals = [comparison.reports[n].interval for n in names]
    errors = np.array([[a - lo, hi - a] for a, (lo, hi) in zip(acc, intervals)]).T
    left.bar(names, acc, yerr=errors, color="#4c72b0", alpha=0.8, capsize=4)
    for i, a in enumerate(acc):
        left.annotate(f"{a:.3f}", (i, a), ha="center", xytext=(0, 4),
                      textcoords="offset points", fontsize="small")
    left.set_ylim(0, 1)
    left.set_ylabel("accuracy (95% Wilson interval)")
    left.set_title(f"{comparison.task}, {comparison.n} common items")
    reference = names[0]
    for name in names[1:]:
        kl = comparison.item_kl(name)
        right.hist(kl, bins=30, alpha=0.6,
                   label=f"{name}: mean {np.mean(kl):.4f}, agree {comparison.agreement(name):.0%}")
    right.set_xlabel(f"KL({reference} || model) over the choices, nats")
    right.set_ylabel("items")
    right.set_title("per-item divergence from the reference")
    if len(names) > 1:
        right.legend(fontsize="small")
    return fig
