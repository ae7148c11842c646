"""An ipywidgets item browser: page through a report's items, see each choice's probability,
the answer and the prediction; a filter keeps only the wrong (or right) ones.

    report.browse()
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .items import LETTERS
from .lazy import require

if TYPE_CHECKING:
    from .report import Report

__all__ = ["ItemBrowser", "render_item"]

FILTERS = {"all items": None, "wrong only": False, "right only": True}


def _bar(p: float, colour: str) -> str:
    return (f"<div style='background:#eee;width:160px;height:10px;display:inline-block'>"
            f"<div style='background:{colour};width:{max(0.0, min(p, 1.0)) * 160:.0f}px;"
            "height:10px'></div></div>")


def render_item(record: dict[str, Any], position: str = "") -> str:
    """One record as HTML: question, choices with probability bars, verdict, the full prompt."""
    mark = "&#10003; right" if record["correct"] else "&#10007; wrong"
    head = (f"<p><b>{html.escape(record['subject'] or '(no subject)')}</b> &middot; "
            f"{html.escape(str(record['id']))} {position} &middot; {mark}</p>")
    question = f"<p style='white-space:pre-wrap'>{html.escape(record['question'])}</p>"
    if "choices" in record:  # multiple choice
        rows = []
        for i, (choice, p, lp) in enumerate(zip(record["choices"], record["probs"],
                                                record["logprobs"])):
            answer, pred = i == record["answer"], i == record["pred"]
            colour = "#55a868" if answer else "#c44e52" if pred else "#8c8c8c"
            tags = " ".join(t for t, on in (("answer", answer), ("predicted", pred)) if on)
            rows.append(f"<tr><td>{LETTERS[i]}</td><td style='text-align:left'>"
                        f"{html.escape(choice)}</td><td>{_bar(p, colour)}</td>"
                        f"<td>{p:.3f}</td><td>{lp:.2f}</td><td>{tags}</td></tr>")
        body = ("<table><thead><tr><th></th><th>choice</th><th></th><th>p</th>"
                f"<th>log-lik</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    else:  # generation
        body = (f"<pre style='white-space:pre-wrap'>{html.escape(record['output'])}</pre>"
                f"<p>extracted <code>{html.escape(str(record['extracted']))}</code>, target "
                f"<code>{html.escape(record['target'])}</code></p>")
    prompt = (f"<details><summary>prompt ({record['tokens']} tokens)</summary><pre "
              f"style='white-space:pre-wrap'>{html.escape(record['prompt'])}</pre></details>")
    return head + question + body + prompt


class ItemBrowser:
    """Previous / next buttons, a slider and a filter over the report's items."""

    def __init__(self, report: Report) -> None:
        widgets = require("ipywidgets")
        self.report = report
        self.shown: list[int] = list(range(report.n))  # record indices the filter keeps
        self.previous = widgets.Button(description="previous", icon="arrow-left")
        self.next = widgets.Button(description="next", icon="arrow-right")
        self.slider = widgets.IntSlider(min=0, max=max(report.n - 1, 0), description="item")
        self.filter = widgets.Dropdown(options=list(FILTERS), value="all items",
                                       description="show")
        self.html = widgets.HTML()
        self.previous.on_click(lambda _: self.go(self.slider.value - 1))
        self.next.on_click(lambda _: self.go(self.slider.value + 1))
        self.slider.observe(lambda _: self._render(), names="value")
        self.filter.observe(lambda _: self._refilter(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.previous, self.slider, self.next,
                                                  self.filter]), self.html])
        self._render()

    def go(self, position: int) -> None:
        """Show the item at `position` among those the filter keeps (clamped)."""
        self.slider.value = max(0, min(position, len(self.shown) - 1))
        self._render()

    def _refilter(self) -> None:
        keep = FILTERS[self.filter.value]
        self.shown = [i for i, r in enumerate(self.report.records)
                      if keep is None or bool(r["correct"]) == keep]
        self.slider.max = max(len(self.shown) - 1, 0)
        self.go(0)

    def _render(self) -> None:
        if not self.shown:
            self.html.value = "<p>no items to show</p>"
            return
        position = self.slider.value
        record = self.report.records[self.shown[position]]
        self.html.value = render_item(record, f"({position + 1} of {len(self.shown)})")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)  # shown as the widget itself
