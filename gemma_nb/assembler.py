"""From generated token ids to the text a user sees, one row of generation at a time."""

from __future__ import annotations

from .stops import StopFilter
from .tokenizer import IncrementalDecoder, Tokenizer

__all__ = ["TextAssembler"]


class TextAssembler:
    """Incremental decoding (split UTF-8 characters), stop strings, and the running text."""

    def __init__(self, tokenizer: Tokenizer, stop: list[str] | tuple[str, ...] = ()):
        self._decoder = IncrementalDecoder(tokenizer)
        self._stops = StopFilter(list(stop))
        self.text = ""

    @property
    def stopped(self) -> bool:
        """A stop string appeared: the text is complete."""
        return self._stops.stopped

    def push(self, token: int) -> str:
        piece = self._stops.push(self._decoder.push(token))
        self.text += piece
        return piece

    def finish(self) -> str:
        """Release text held back for a split character or a possible stop string."""
        if self.stopped:
            return ""
        tail = self._stops.push(self._decoder.flush())
        tail += "" if self.stopped else self._stops.flush()
        self.text += tail
        return tail
