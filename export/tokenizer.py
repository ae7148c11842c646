"""Rebuild Gemma's SentencePiece `tokenizer.model` from a GGUF file's tokenizer metadata.

A Gemma GGUF stores the SentencePiece vocabulary as three parallel lists (`tokenizer.ggml.tokens`,
`.scores`, `.token_type`). llama.cpp's converter changes two things we must undo:

- it marks every special-looking piece (`<start_of_turn>`, `<unusedN>`, `<unk>`, ...) CONTROL,
  while the real Gemma tokenizer has only pad/eos/bos as control and `<unk>` as unknown.
  SentencePiece never matches control pieces inside text, so we make the rest user-defined;
- it stores the space-run pieces with real spaces; SentencePiece matches pieces against the
  normalized text, where spaces are U+2581, so we convert them back.

Everything else mirrors Gemma's own model: BPE, byte fallback, identity normalizer, no dummy
prefix, whitespace kept. References: llama.cpp `convert_hf_to_gguf.py`
(`_create_vocab_sentencepiece`, which writes HF added tokens over the pieces) and SentencePiece's
`sentencepiece_model.proto`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import gguf
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from gemma_export.errors import MissingTokenizerError

__all__ = ["sentencepiece_model_from_gguf", "validate_tokenizer_fields"]

logger = logging.getLogger(__name__)

_K = gguf.Keys.Tokenizer
_REQUIRED = (_K.MODEL, _K.LIST, _K.SCORES, _K.TOKEN_TYPE, _K.BOS_ID, _K.EOS_ID)
_SPACE = "\u2581"  # SentencePiece's whitespace symbol
_Piece = sp_pb2.ModelProto.SentencePiece

# GGUF token types whose SentencePiece type does not depend on the piece's role.
_TYPE_MAP = {
    gguf.TokenType.NORMAL: _Piece.NORMAL,
    gguf.TokenType.USER_DEFINED: _Piece.USER_DEFINED,
    gguf.TokenType.UNUSED: _Piece.UNUSED,
    gguf.TokenType.BYTE: _Piece.BYTE,
    # Converter-made CONTROL (and stray UNKNOWN) pieces must still match inside text.
    gguf.TokenType.CONTROL: _Piece.USER_DEFINED,
    gguf.TokenType.UNKNOWN: _Piece.USER_DEFINED,
}


def validate_tokenizer_fields(fields: Mapping[str, object]) -> None:
    """Raise MissingTokenizerError unless `fields` describe a SentencePiece (Gemma) vocabulary."""
    missing = [key for key in _REQUIRED if fields.get(key) is None]
    if missing:
        raise MissingTokenizerError(
            f"the GGUF has no usable tokenizer: missing {', '.join(missing)}. Use a GGUF made by "
            "llama.cpp's convert_hf_to_gguf.py from the original model, or export from the "
            "Hugging Face folder that holds tokenizer.model."
        )
    model = fields[_K.MODEL]
    if model != "llama":
        raise MissingTokenizerError(
            f"{_K.MODEL} is {model!r}, but Gemma uses a SentencePiece tokenizer ('llama'); "
            "this GGUF is not a Gemma model or its tokenizer was converted wrongly."
        )
    tokens, scores, types = (_sequence(fields, key) for key in (_K.LIST, _K.SCORES, _K.TOKEN_TYPE))
    if not len(tokens) == len(scores) == len(types):
        raise MissingTokenizerError(
            f"the GGUF tokenizer lists disagree: {len(tokens)} tokens, {len(scores)} scores, "
            f"{len(types)} token types; the file is damaged, re-download or re-convert it."
        )
    for key in (_K.BOS_ID, _K.EOS_ID, _K.UNK_ID, _K.PAD_ID):
        value = fields.get(key)
        if value is not None and not 0 <= int(value) < len(tokens):  # type: ignore[call-overload]
            raise MissingTokenizerError(
                f"{key} = {value} is outside the vocabulary of {len(tokens)} pieces."
            )
    strange = {int(t) for t in types} - {int(t) for t in gguf.TokenType}
    if strange:
        raise MissingTokenizerError(
            f"{_K.TOKEN_TYPE} holds unknown token types {sorted(strange)}; the file is damaged "
            "or was written by a converter this gguf package does not know."
        )
    n_bytes = sum(int(t) == gguf.TokenType.BYTE for t in types)
    if n_bytes != 256:
        raise MissingTokenizerError(
            f"the GGUF vocabulary has {n_bytes} byte pieces (<0x00>..<0xFF>); Gemma's byte "
            "fallback needs all 256."
        )


def sentencepiece_model_from_gguf(fields: Mapping[str, object]) -> bytes:
    """A serialized SentencePiece ModelProto equivalent to Gemma's `tokenizer.model`."""
    validate_tokenizer_fields(fields)
    tokens = [str(t) for t in _sequence(fields, _K.LIST)]
    scores = [float(s) for s in _sequence(fields, _K.SCORES)]
    types = [gguf.TokenType(int(t)) for t in _sequence(fields, _K.TOKEN_TYPE)]
    bos, eos = int(fields[_K.BOS_ID]), int(fields[_K.EOS_ID])  # type: ignore[call-overload]
    pad, unk = _id(fields, _K.PAD_ID), _id(fields, _K.UNK_ID)
    if unk is None:
        unk = next((i for i, t in enumerate(tokens) if t == "<unk>"), None)
    if unk is None:
        raise MissingTokenizerError(
            f"the GGUF names no unknown piece ({_K.UNK_ID} is missing and there is no '<unk>'); "
            "SentencePiece needs one."
        )
    control = {bos, eos} | ({pad} if pad is not None else set())

    proto = sp_pb2.ModelProto()
    seen: dict[str, int] = {}
    for i, (text, score, gguf_type) in enumerate(zip(tokens, scores, types)):
        if i == unk:
            kind = _Piece.UNKNOWN
        elif i in control:
            kind = _Piece.CONTROL
        else:
            kind = _TYPE_MAP[gguf_type]
        piece = text.replace(" ", _SPACE)
        if piece in seen:
            raise MissingTokenizerError(
                f"pieces {seen[piece]} and {i} are both {piece!r} once spaces become U+2581; "
                "the GGUF vocabulary is not a SentencePiece one."
            )
        seen[piece] = i
        proto.pieces.append(_Piece(piece=piece, score=score, type=kind))

    trainer = proto.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(tokens)
    trainer.byte_fallback = True
    trainer.split_digits = True
    trainer.allow_whitespace_only_pieces = True
    # SentencePiece finds these by piece name; the ids are informative.
    trainer.unk_id, trainer.unk_piece = unk, proto.pieces[unk].piece
    trainer.bos_id, trainer.bos_piece = bos, proto.pieces[bos].piece
    trainer.eos_id, trainer.eos_piece = eos, proto.pieces[eos].piece
    if pad is None:
        trainer.pad_id = -1  # SentencePiece's "none"
    else:
        trainer.pad_id, trainer.pad_piece = pad, proto.pieces[pad].piece

    # Identity: no NFKC, no dummy prefix, runs of spaces kept (they have their own pieces).
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = False
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True

    n_user = sum(p.type == _Piece.USER_DEFINED for p in proto.pieces)
    logger.debug("SentencePiece model: %d pieces, %d user-defined", len(tokens), n_user)
    return proto.SerializeToString()


def _sequence(fields: Mapping[str, object], key: str) -> Sequence[Any]:
    value = fields[key]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise MissingTokenizerError(f"{key} should be a list, not {type(value).__name__}.")
    return value


def _id(fields: Mapping[str, object], key: str) -> int | None:
    value = fields.get(key)
    return None if value is None else int(value)  # type: ignore[call-overload]
