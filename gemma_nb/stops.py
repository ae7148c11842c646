"""Stop strings over streamed text: cut at the first match, hold back what might start one."""

from __future__ import annotations

__all__ = ["StopFilter"]


class StopFilter:
    def __init__(self, stops: list[str] | tuple[str, ...] = ()):
        self.stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add generated text; returns the part that is safe to show now."""
        text = self._pending + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self._pending = True, ""
            return text[: min(hits)]
        hold = max((n for s in self.stops for n in range(len(s) - 1, 0, -1)
                    if text.endswith(s[:n])), default=0)
        self._pending = text[len(text) - hold:] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """At the end of generation: text held back that never became a stop string."""
        text, self._pending = self._pending, ""
        return text
