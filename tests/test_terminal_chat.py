"""`gemma-nb chat`: reading messages, keeping the conversation, and a real session in a pty.

The tiny model answers 200 tokens in a fraction of a second, faster than a Ctrl-C can land, so
Ctrl-C in the middle of an answer is driven on the real Gemma 3 270M (`slow`).
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from gemma_nb.terminal_chat import MORE, PROMPT, read_message, run_chat

SPEED = r"\[\d+ tokens, [\d.]+ tok/s, first token [\d.]+ s\]"
STOPPED = r"\[stopped; \d+ tokens, [\d.]+ tok/s, first token [\d.]+ s\]"


def scripted(*lines: str):
    """An `input` replacement answering `lines` in turn, then end of input (Ctrl-D)."""
    queue: Iterator[str] = iter(lines)
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(queue)
        except StopIteration:
            raise EOFError from None

    read.prompts = prompts  # type: ignore[attr-defined]
    return read


# ------------------------------------------------------------------------------ read_message


def test_one_line_is_one_message():
    assert read_message(scripted("hello there")) == "hello there"


def test_a_trailing_backslash_continues_the_message():
    read = scripted("first \\", "second\\", "third")
    assert read_message(read) == "first \nsecond\nthird"
    assert read.prompts == [PROMPT, MORE, MORE]


def test_a_fenced_block_keeps_its_lines():
    assert read_message(scripted('"""def f():', "    return 1", '"""')) == (
        "def f():\n    return 1\n")
    assert read_message(scripted('"""one line"""')) == "one line"


def test_end_of_input_inside_a_block_raises_eof():
    with pytest.raises(EOFError):
        read_message(scripted('"""open'))


# ---------------------------------------------------------------------------------- run_chat


def test_the_conversation_is_kept_as_messages(tiny_gemma2_model):
    model, out = tiny_gemma2_model, io.StringIO()
    run_chat(model, "Be brief.", scripted("Hello", "And then?"), out, max_new_tokens=8)
    first = model.chat([{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hello"}], max_new_tokens=8)
    second = model.chat([{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hello"},
                         {"role": "assistant", "content": first.text},
                         {"role": "user", "content": "And then?"}], max_new_tokens=8)
    text = out.getvalue()
    assert first.text + "\n" in text and second.text + "\n" in text
    assert len(re.findall(SPEED, text)) == 2


def test_reset_forgets_and_system_applies(tiny_gemma2_model):
    model, out = tiny_gemma2_model, io.StringIO()
    run_chat(model, None, scripted("Hello", "/reset", "/system Talk like a pirate.",
                                   "/system", "Hello", "/nope", "/exit", "never read"),
             out, max_new_tokens=8)
    plain = model.chat([{"role": "user", "content": "Hello"}], max_new_tokens=8)
    pirate = model.chat([{"role": "system", "content": "Talk like a pirate."},
                         {"role": "user", "content": "Hello"}], max_new_tokens=8)
    text = out.getvalue()
    assert plain.text != pirate.text
    assert text.index(plain.text + "\n") < text.index("[conversation cleared]")
    assert "[system prompt: Talk like a pirate.]" in text
    assert text.rindex(pirate.text + "\n") > text.index("[system prompt set]")
    assert "[unknown command; /help lists them]" in text


def test_a_conversation_past_the_context_is_an_error_line_not_a_crash(tiny_gemma2_model):
    out = io.StringIO()
    run_chat(tiny_gemma2_model, None, scripted("word " * 300, "Hello"), out, max_new_tokens=4)
    text = out.getvalue()
    assert "error: the prompt has" in text and "/reset" in text
    assert len(re.findall(SPEED, text)) == 1  # the next message is answered


# ----------------------------------------------------------------------------------- the pty


def _ctrl_c_as_in_a_terminal() -> None:
    # A run started with `cmd &` from a script has SIGINT ignored, and a child inherits that
    # across exec: its Ctrl-C would do nothing. In a terminal the chat starts with the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_chat(model_dir: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "gemma_nb.cli", "chat", str(model_dir), *args],
                          encoding="utf-8", codec_errors="replace", timeout=120,
                          dimensions=(40, 200), preexec_fn=_ctrl_c_as_in_a_terminal)
    child.expect_exact(PROMPT)
    return child


def finish(child: pexpect.spawn) -> int:
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


@pytest.fixture
def closing() -> Iterator[list]:
    children: list[pexpect.spawn] = []
    yield children
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def test_a_terminal_session_question_reset_ctrl_c_exit(tiny_gemma2_model, closing):
    child = spawn_chat(tiny_gemma2_model.path, "-n", "24")
    closing.append(child)
    expected = tiny_gemma2_model.chat([{"role": "user", "content": "Hello there"}],
                                      max_new_tokens=24)
    child.sendline("Hello there")
    child.expect(SPEED)
    assert expected.text.replace("\n", "\r\n")[:8] in child.before
    child.expect_exact(PROMPT)

    child.sendline("/help")
    child.expect_exact("/reset")
    child.expect_exact(PROMPT)
    child.sendline("/reset")
    child.expect_exact("[conversation cleared]")
    child.expect_exact(PROMPT)

    child.send("half a line")
    # Press Ctrl-C after the line is on screen, as a person does: a Ctrl-C landing while
    # CPython's readline loop is still handling a key is only seen at the next key.
    child.expect_exact("half a line")
    time.sleep(0.2)
    child.sendintr()  # Ctrl-C at the prompt drops the line and keeps the program
    child.expect_exact(PROMPT)
    child.sendline("line one \\")
    child.expect_exact(MORE)
    child.sendline("line two")
    child.expect(SPEED)
    child.expect_exact(PROMPT)
    assert finish(child) == 0


@pytest.mark.slow
def test_ctrl_c_mid_answer_stops_it_and_returns_to_the_prompt(real_model_dir, closing):
    child = spawn_chat(real_model_dir, "-n", "4000")
    closing.append(child)
    child.sendline("Count from 1 to 1000, separated by commas.")
    child.expect_exact("\r\n")  # the echoed question
    child.expect(r"\S\S\S")  # the answer has begun; 4000 tokens take minutes here
    child.sendintr()
    child.expect(STOPPED, timeout=30)
    child.expect_exact(PROMPT)
    child.sendline("/reset")  # the program goes on
    child.expect_exact("[conversation cleared]")
    child.expect_exact(PROMPT)
    assert finish(child) == 0


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread masks from /proc")
def test_only_the_main_thread_can_receive_ctrl_c(tiny_gemma2_model):
    # A Ctrl-C handed to a native worker thread leaves input() asleep: the chat hung at its
    # prompt now and then before the workers of numpy and onnxruntime were started deaf to it.
    script = (
        "import os, sys, gemma_nb\n"
        "gemma_nb.load(sys.argv[1], threads=2)\n"  # an intra-op pool with a worker, always
        "for task in sorted(os.listdir('/proc/self/task')):\n"
        "    status = open(f'/proc/self/task/{task}/status').read()\n"
        "    mask = int(status.split('SigBlk:')[1].split()[0], 16)\n"
        "    print(int(task) == os.getpid(), bool(mask & 1 << 1))\n")
    out = subprocess.run([sys.executable, "-c", script, str(tiny_gemma2_model.path)],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    threads = [line.split() for line in out if line]
    assert ["True", "False"] in threads  # the main thread still takes Ctrl-C
    workers = [blocked for main, blocked in threads if main == "False"]
    assert workers and all(blocked == "True" for blocked in workers)  # (how many: per build)
