"""Gemma's SentencePiece tokenizer at run time: encode, decode, and decode while streaming.

The model file is the `tokenizer.model` of the model folder (Gemma's own, or the one the exporter
rebuilds from a GGUF). It has no dummy prefix and keeps whitespace, so decoding is concatenation
and text can be decoded piece by piece.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import sentencepiece as spm

from gemma_nb.errors import GemmaError

__all__ = ["Tokenizer", "IncrementalDecoder", "TokenizerError"]

logger = logging.getLogger(__name__)

_REPLACEMENT = "\ufffd"  # what a byte-fallback character decodes to until its last byte arrives


class TokenizerError(GemmaError):
    """The tokenizer model file is missing, unreadable, or lacks Gemma's special pieces."""


class Tokenizer:
    """Text to token ids and back; ids are plain ints."""

    def __init__(self, processor: spm.SentencePieceProcessor) -> None:
        if processor.bos_id() < 0 or processor.eos_id() < 0:
            raise TokenizerError(
                "the tokenizer model has no <bos> or <eos> piece; re-export the model"
            )
        self._sp = processor
        eot = processor.piece_to_id("<end_of_turn>")
        # piece_to_id answers unk_id for an unknown piece
        self._end_of_turn_id = None if eot == processor.unk_id() else eot

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        if not os.path.isfile(path):
            raise TokenizerError(f"no tokenizer model at {os.fspath(path)!r}")
        try:
            processor = spm.SentencePieceProcessor(model_file=os.fspath(path))
        except (RuntimeError, OSError) as e:
            raise TokenizerError(
                f"{os.fspath(path)!r} is not a SentencePiece model ({e}); re-export the model"
            ) from e
        logger.debug("loaded tokenizer %s: %d pieces", path, processor.vocab_size())
        return cls(processor)

    @classmethod
    def from_bytes(cls, model_proto: bytes) -> Tokenizer:
        """A tokenizer from a serialized SentencePiece ModelProto (what the exporter builds)."""
        try:
            return cls(spm.SentencePieceProcessor(model_proto=model_proto))
        except RuntimeError as e:
            raise TokenizerError(f"not a SentencePiece model ({e})") from e

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids: list[int] = self._sp.encode(text)
        return [self.bos_id, *ids] if add_bos else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; bos/eos/pad vanish, turn markers and other special pieces stay as text."""
        return self._sp.decode([int(i) for i in ids])  # int(): numpy ints are not accepted

    def piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))

    def incremental_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def pad_id(self) -> int | None:
        return None if self._sp.pad_id() < 0 else self._sp.pad_id()

    @property
    def end_of_turn_id(self) -> int | None:
        return self._end_of_turn_id

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()


class IncrementalDecoder:
    """Turns ids arriving one at a time into the text each one adds.

    Byte fallback spreads one character over several ids, and until its last byte arrives the
    decoded text ends in U+FFFD: nothing is emitted then. Only the ids since the last emitted
    text (plus the previous step, as context) are decoded again, so a step costs O(1), not
    O(length). The approach is vLLM's `detokenize_incrementally` (prefix and read offsets).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the context decoded again each step
        self._read = 0  # end of the ids whose text has been emitted

    def push(self, token_id: int) -> str:
        """The new text once `token_id` is added; empty while a character is incomplete."""
        self._ids.append(int(token_id))
        done, text = self._texts()
        if len(text) <= len(done) or text.endswith(_REPLACEMENT):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(done) :]

    def flush(self) -> str:
        """Whatever is held back (an invalid or unfinished byte sequence at the end)."""
        done, text = self._texts()
        self._prefix = self._read = len(self._ids)
        return text[len(done) :]

    def _texts(self) -> tuple[str, str]:
        decode = self._tokenizer.decode
        return decode(self._ids[self._prefix : self._read]), decode(self._ids[self._prefix :])
