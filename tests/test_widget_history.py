"""The chat widget's log and conversation rules, without a widget or a model."""

from __future__ import annotations

import json

import pytest

from gemma_nb.chat import ChatFormatError
from gemma_nb.errors import ContextLengthError
from gemma_nb.model import Generation, Timings
from gemma_nb.widget.history import (FORMAT, answer_stats, check_messages, conversation, dumps,
                                     loads, overflow_notice, turns_to_drop)


def entry(i, role, content, state="", excluded=""):
    return {"id": i, "role": role, "content": content, "state": state, "stats": None,
            "excluded": excluded}


def test_conversation_is_what_the_model_reads():
    log = [entry(1, "user", "old", excluded="context"),
           entry(2, "assistant", "old answer", "done", excluded="context"),
           entry(3, "notice", "dropped"),
           entry(4, "user", "failed", excluded="unanswered"),
           entry(5, "error", "boom"),
           entry(6, "user", "hi"),
           entry(7, "assistant", "partial", "stopped"),
           entry(8, "user", "again"),
           entry(9, "assistant", "", "streaming")]
    assert conversation(log) == [{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "partial"},
                                 {"role": "user", "content": "again"}]


def words(text: str) -> int:
    """A stand-in tokenizer: one token a word."""
    return len(text.split())


def turns(n_pairs: int, size: int) -> list[dict[str, str]]:
    out = []
    for i in range(n_pairs):
        out += [{"role": "user", "content": f"q{i} " + "w " * size},
                {"role": "assistant", "content": f"a{i} " + "w " * size}]
    return out + [{"role": "user", "content": "last"}]


def test_nothing_is_dropped_while_it_fits():
    assert turns_to_drop("", turns(2, 10), words, context_length=200, max_tokens=50) == 0


def test_the_oldest_pairs_go_first_until_it_fits():
    history = turns(4, 10)  # ~11 words a turn
    drop = turns_to_drop("be brief", history, words, context_length=80, max_tokens=30)
    assert drop % 2 == 0 and drop > 0
    kept = history[drop:]
    assert kept[0]["role"] == "user" and kept[-1]["content"] == "last"
    assert turns_to_drop("be brief", kept, words, 80, 30) == 0
    assert turns_to_drop("be brief", history[drop - 2:], words, 80, 30) > 0  # fewest dropped


def test_a_message_that_alone_overflows_is_a_context_error():
    with pytest.raises(ContextLengthError, match="Shorten the message"):
        turns_to_drop("", [{"role": "user", "content": "w " * 100}], words, 80, 30)


def test_max_tokens_as_large_as_the_context_is_a_clear_error():
    with pytest.raises(ContextLengthError, match="lower max tokens"):
        turns_to_drop("", turns(0, 1), words, context_length=64, max_tokens=64)


def test_the_overflow_notice_says_how_many_and_why():
    assert "oldest message no longer fit" in overflow_notice(1, 256, 32)
    text = overflow_notice(4, 8192, 512)
    assert "4 messages" in text and "8192 tokens" in text and "512" in text


def test_answer_stats_carry_counts_speed_and_a_line():
    result = Generation("hello world", [5, 6, 7], "length",
                        Timings(prompt_tokens=12, time_to_first_token_s=0.25, decode_s=0.1,
                                generated_tokens=3))
    stats = answer_stats(result, stopped=False, seconds=0.4)
    assert stats["answer_tokens"] == 3 and stats["prompt_tokens"] == 12
    assert stats["tokens_per_s"] == 20.0 and stats["finish"] == "length"
    assert stats["line"] == ("12 prompt tokens · 3 answer tokens · 20.0 tok/s · "
                             "first token 0.25 s · max tokens reached")
    assert answer_stats(result, stopped=True, seconds=0.4)["line"].endswith("· stopped")


def test_messages_with_a_system_prompt_split_into_system_and_turns():
    system, got = check_messages([{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "hi"},
                                  {"role": "model", "content": "hello"}])
    assert system == "Be brief."
    assert got == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert check_messages([]) == ("", [])


@pytest.mark.parametrize("messages, error", [
    ("hi", "list of dicts"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternating"),
    ([{"role": "assistant", "content": "a"}], "alternating"),
    ([{"role": "tool", "content": "a"}], "role 'tool'"),
    ([{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}], "content"),
    ([{"role": "user", "content": "a"}], "end with an assistant"),
    ([{"role": "system", "content": None}], "system message"),
])
def test_bad_messages_say_what_is_wrong(messages, error):
    with pytest.raises(ChatFormatError, match=error):
        check_messages(messages)


def test_a_saved_conversation_loads_back():
    text = dumps("sys", [{"role": "user", "content": "é"}, {"role": "assistant", "content": "ok"}],
                 {"temperature": 0.5})
    assert json.loads(text)["format"] == FORMAT
    messages, settings = loads(text)
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1]["content"] == "é" and settings == {"temperature": 0.5}


def test_a_plain_list_of_messages_loads_too():
    assert loads('[{"role": "user", "content": "x"}]') == ([{"role": "user", "content": "x"}], {})


@pytest.mark.parametrize("text, error", [("{nope", "invalid JSON"), ('{"a": 1}', "format"),
                                         ('{"format": "gemma-nb-chat", "settings": 3}',
                                          "settings")])
def test_a_file_that_is_not_a_saved_chat_says_so(text, error):
    with pytest.raises(ChatFormatError, match=error):
        loads(text)
