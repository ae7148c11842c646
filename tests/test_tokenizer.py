"""gemma_nb.tokenizer on a tiny hand-built SentencePiece model shaped like Gemma's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from gemma_nb.tokenizer import IncrementalDecoder, Tokenizer, TokenizerError

P = sp_pb2.ModelProto.SentencePiece
SPECIALS = [("<pad>", P.CONTROL), ("<eos>", P.CONTROL), ("<bos>", P.CONTROL), ("<unk>", P.UNKNOWN),
            ("<start_of_turn>", P.USER_DEFINED), ("<end_of_turn>", P.USER_DEFINED),
            ("\n", P.USER_DEFINED), ("\u2581\u2581", P.USER_DEFINED)]
# BPE needs every intermediate merge; higher score merges first.
NORMAL = ["\u2581", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "llo", "hello", "\u2581w",
          "\u2581wo", "\u2581wor", "\u2581worl", "\u2581world"]
BYTE0 = len(SPECIALS)  # id of <0x00>


def tiny_model(with_end_of_turn: bool = True, with_bos: bool = True) -> bytes:
    proto = sp_pb2.ModelProto()
    specials = SPECIALS if with_end_of_turn else [s for s in SPECIALS if s[0] != "<end_of_turn>"]
    if not with_bos:
        specials = [("<s>", P.NORMAL) if s[0] == "<bos>" else s for s in specials]
    for piece, kind in specials:
        proto.pieces.append(P(piece=piece, score=0.0, type=kind))
    for b in range(256):
        proto.pieces.append(P(piece=f"<0x{b:02X}>", score=0.0, type=P.BYTE))
    for i, piece in enumerate(NORMAL):
        proto.pieces.append(P(piece=piece, score=-float(i), type=P.NORMAL))
    t = proto.trainer_spec
    t.model_type, t.vocab_size, t.byte_fallback = sp_pb2.TrainerSpec.BPE, len(proto.pieces), True
    t.pad_id, t.eos_id, t.bos_id, t.unk_id = 0, 1, 2, 3
    # SentencePiece finds bos/eos/pad/unk by piece name, not by these ids.
    t.pad_piece, t.eos_piece, t.bos_piece, t.unk_piece = "<pad>", "<eos>", "<bos>", "<unk>"
    n = proto.normalizer_spec
    n.name, n.add_dummy_prefix, n.remove_extra_whitespaces, n.escape_whitespaces = (
        "identity", False, False, True)
    return proto.SerializeToString()


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_bytes(tiny_model())


def stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    decoder = IncrementalDecoder(tok)
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def test_special_ids(tok: Tokenizer) -> None:
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.end_of_turn_id) == (0, 1, 2, 5)
    assert tok.vocab_size == len(SPECIALS) + 256 + len(NORMAL)
    assert tok.piece(4) == "<start_of_turn>"


def test_end_of_turn_id_is_none_without_the_piece() -> None:
    assert Tokenizer.from_bytes(tiny_model(with_end_of_turn=False)).end_of_turn_id is None


def test_encode_adds_bos_unless_asked_not_to(tok: Tokenizer) -> None:
    ids = tok.encode("hello world", add_bos=False)
    assert [tok.piece(i) for i in ids] == ["hello", "\u2581world"]
    assert tok.encode("hello world") == [2, *ids]
    assert tok.encode("") == [2]


def test_no_dummy_prefix_and_space_runs_kept(tok: Tokenizer) -> None:
    assert [tok.piece(i) for i in tok.encode("  hello", add_bos=False)] == ["\u2581\u2581", "hello"]


def test_turn_markers_are_recognised_in_text(tok: Tokenizer) -> None:
    ids = tok.encode("<start_of_turn>hello<end_of_turn>\n", add_bos=False)
    assert [tok.piece(i) for i in ids] == ["<start_of_turn>", "hello", "<end_of_turn>", "\n"]


def test_decode_drops_bos_eos_pad_and_keeps_turn_markers(tok: Tokenizer) -> None:
    ids = [0, 2, *tok.encode("<start_of_turn>hello world", add_bos=False), 5, 1]
    assert tok.decode(ids) == "<start_of_turn>hello world<end_of_turn>"


def test_decode_accepts_numpy_ids(tok: Tokenizer) -> None:
    assert tok.decode(np.array(tok.encode("hello"), dtype=np.int64)) == "hello"


def test_unknown_characters_fall_back_to_bytes_and_round_trip(tok: Tokenizer) -> None:
    ids = tok.encode("é日", add_bos=False)
    assert ids == [BYTE0 + b for b in "é日".encode()]
    assert tok.decode(ids) == "é日"


def test_incremental_decoder_holds_back_split_characters(tok: Tokenizer) -> None:
    ids = tok.encode("hé日 world", add_bos=False)  # é is 2 byte pieces, 日 is 3
    assert stream(tok, ids) == ["h", "", "é", "", "", "日", " world", ""]


@pytest.mark.parametrize("text", ["hello world", "  hello\n<end_of_turn>", "é日😀é", "w"])
def test_incremental_decoder_pieces_join_to_decode(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert "".join(stream(tok, ids + [1])) == tok.decode(ids) == text


def test_incremental_decoder_flush_returns_an_unfinished_character(tok: Tokenizer) -> None:
    first_byte = BYTE0 + "é".encode()[0]
    assert stream(tok, [BYTE0 + ord("h"), first_byte]) == ["h", "", "\ufffd"]


def test_incremental_decoder_emits_a_real_replacement_character(tok: Tokenizer) -> None:
    ids = tok.encode("\ufffdhello", add_bos=False)  # U+FFFD itself, as 3 byte pieces
    assert "".join(stream(tok, ids)[:-1]) == "\ufffdhello"


def test_from_file_reads_a_model(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.model"
    path.write_bytes(tiny_model())
    assert Tokenizer.from_file(path).encode("hello") == [2, NORMAL.index("hello") + BYTE0 + 256]


def test_model_without_bos_raises() -> None:
    with pytest.raises(TokenizerError, match="no <bos> or <eos>"):
        Tokenizer.from_bytes(tiny_model(with_bos=False))


def test_from_file_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no tokenizer model"):
        Tokenizer.from_file(tmp_path / "tokenizer.model")


def test_from_file_not_a_model_raises(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.model"
    path.write_text("not a model")
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        Tokenizer.from_file(path)
