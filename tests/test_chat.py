"""gemma_nb.chat: Gemma's chat format, checked against the official Gemma 3 chat template."""

from __future__ import annotations

import pytest

from gemma_nb.chat import ChatFormatError, format_chat
from gemma_nb.errors import GemmaError

# The chat template of Gemma 3's tokenizer_config.json, verbatim except that the branches for
# list contents (images) are dropped. Rendered with jinja2 as transformers renders templates.
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""


def official(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(GEMMA3_TEMPLATE)
    # bos_token empty: format_chat leaves BOS to Tokenizer.encode
    return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           bos_token="")


CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  padded \n"}, {"role": "assistant", "content": "\nok "},
     {"role": "user", "content": "code: {x} {{y}} <b>"}],
    [{"role": "system", "content": "sys "}, {"role": "user", "content": "a"},
     {"role": "assistant", "content": "b"}],
]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_matches_official_template(messages: list[dict[str, str]],
                                   add_generation_prompt: bool) -> None:
    assert format_chat(messages, add_generation_prompt) == official(messages,
                                                                     add_generation_prompt)


def test_single_user_turn_with_generation_prompt() -> None:
    assert format_chat([{"role": "user", "content": "hi"}]) == (
        "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n")


def test_system_is_merged_into_first_user_turn() -> None:
    text = format_chat([{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hello"},
                        {"role": "assistant", "content": "Hi."},
                        {"role": "user", "content": "Bye"}], add_generation_prompt=False)
    assert text == ("<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n"
                    "<start_of_turn>model\nHi.<end_of_turn>\n"
                    "<start_of_turn>user\nBye<end_of_turn>\n")


@pytest.mark.parametrize("role", ["assistant", "model"])
def test_assistant_role_becomes_model(role: str) -> None:
    text = format_chat([{"role": "user", "content": "a"}, {"role": role, "content": "b"}], False)
    assert text.endswith("<start_of_turn>model\nb<end_of_turn>\n")


def test_no_bos_in_text() -> None:
    assert not format_chat([{"role": "user", "content": "a"}]).startswith("<bos>")


@pytest.mark.parametrize("messages, match", [
    ([], "no messages"),
    ([{"role": "system", "content": "s"}], "needs a user message after it"),
    ([{"role": "assistant", "content": "a"}], "'user' turn is due"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "'model' turn is due"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}], "alternating"),
    ([{"role": "tool", "content": "a"}], "role 'tool'"),
    ([{"content": "a"}], "needs a 'role'"),
    ([{"role": "user", "content": None}], "needs a 'content' string"),
    (["hello"], "needs a 'role'"),
])
def test_bad_conversations_raise(messages: list, match: str) -> None:
    with pytest.raises(ChatFormatError, match=match):
        format_chat(messages)


def test_chat_format_error_is_a_gemma_error() -> None:
    assert issubclass(ChatFormatError, GemmaError)
