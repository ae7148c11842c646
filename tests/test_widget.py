"""gemma_nb.Chat driven from Python, without a browser: what the front end would receive.

The widget's custom messages (`send`) are recorded instead of going to a comm. The tiny model
answers in a tenth of a second, so tests that need an answer to last (Stop, two chats at once)
slow its stream down: each piece waits `STEP_S` first, through the public `Model.stream`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import gemma_nb
from gemma_nb.chat import ChatFormatError, format_chat
from gemma_nb.exclusive import model_lock
from gemma_nb import model as model_module
from gemma_nb.model import Stream
from gemma_nb.widget import Chat, ChatBusyError
from gemma_nb.widget.chat import UPDATE_INTERVAL_S, WAITING, Deltas

STEP_S = 0.02  # per piece, in slowed streams: the tiny model's ~84 pieces last ~1.7 s
TIMEOUT_S = 60


class Recorder:
    """Stands in for the comm: keeps each custom message with the time it was sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, content: dict[str, Any], buffers: Any = None) -> None:
        self.messages.append((time.monotonic(), content))

    def deltas(self, entry_id: int | None = None) -> list[str]:
        return [m["text"] for _, m in self.messages
                if m["type"] == "delta" and entry_id in (None, m["id"])]

    def times(self) -> list[float]:
        return [t for t, m in self.messages if m["type"] == "delta"]


def recorded(chat: Chat) -> Recorder:
    recorder = Recorder()
    chat.send = recorder  # the instance's send: what would go to the front end
    return recorder


@pytest.fixture
def model(tiny_gemma2_model):
    return tiny_gemma2_model


@pytest.fixture
def slow_model(tiny_gemma2_model, monkeypatch):
    """The tiny model with each streamed piece delayed by STEP_S."""
    stream = tiny_gemma2_model.stream

    def slow_stream(*args: Any, **kwargs: Any) -> Stream:
        inner = stream(*args, **kwargs)

        def pieces():
            try:
                for piece in inner:
                    time.sleep(STEP_S)
                    yield piece
            finally:
                inner.close()

        return Stream(pieces(), inner.result)

    monkeypatch.setattr(tiny_gemma2_model, "stream", slow_stream)
    return tiny_gemma2_model


def answer_entry(chat: Chat) -> dict[str, Any]:
    return [e for e in chat._log if e["role"] == "assistant"][-1]


def until(condition, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not hold in time")
        time.sleep(0.005)


# ---- asking ---------------------------------------------------------------------------------


def test_an_answer_streams_as_deltas_and_lands_in_messages(model):
    chat = Chat(model, max_tokens=40)
    sent = recorded(chat)
    chat.ask("Hello")
    assert chat.busy
    assert chat.wait(TIMEOUT_S)
    expected = model.chat([{"role": "user", "content": "Hello"}], max_new_tokens=40).text
    assert chat.messages == [{"role": "user", "content": "Hello"},
                             {"role": "assistant", "content": expected}]
    entry = answer_entry(chat)
    assert "".join(sent.deltas(entry["id"])) == expected  # deltas add up to the answer
    assert entry["state"] == "done"
    assert entry["stats"]["answer_tokens"] > 0
    assert "answer tokens" in entry["stats"]["line"] and "tok/s" in entry["stats"]["line"]
    assert not chat.busy and chat.status == ""


class StateSyncs:
    """Stands in for `send_state`: each state message the front end would get, as the values
    it carries."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.messages: list[dict[str, Any]] = []

    def __call__(self, key: str | set[str] | None = None) -> None:
        keys = {key} if isinstance(key, str) else set(key or ())
        if keys:
            self.messages.append({k: getattr(self.chat, k) for k in keys})


def synced(chat: Chat) -> StateSyncs:
    syncs = StateSyncs(chat)
    chat.send_state = syncs
    return syncs


@pytest.mark.parametrize("fails", [False, True], ids=["answered", "failed"])
def test_the_front_end_gets_the_ending_and_idle_together(model, monkeypatch, fails):
    """A finished answer (or its error) and busy=False arrive in one state message: a front end
    that showed the one before the other would show Send disabled under a finished answer."""
    def broken_stream(*args: Any, **kwargs: Any) -> Stream:
        raise RuntimeError("the session died")

    if fails:
        monkeypatch.setattr(model, "stream", broken_stream)
    chat = Chat(model, max_tokens=8)
    recorded(chat)
    syncs = synced(chat)
    chat.ask("Hello")
    assert chat.wait(TIMEOUT_S)

    def ended(message: dict[str, Any]) -> bool:
        return any(e["role"] == "error" or e.get("state") == "done"
                   for e in message.get("_log", ()))

    first_ended = next(m for m in syncs.messages if ended(m))
    assert first_ended.get("busy") is False and first_ended.get("status") == ""
    assert syncs.messages[-1] is first_ended  # nothing after it


def test_the_system_prompt_and_history_reach_the_model(model):
    chat = Chat(model, system="Be brief.", max_tokens=8)
    recorded(chat)
    chat.ask("one")
    chat.wait(TIMEOUT_S)
    chat.ask("two")
    chat.wait(TIMEOUT_S)
    first = chat.messages[2]["content"]
    expected = model.generate(format_chat([
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"},
        {"role": "assistant", "content": first}, {"role": "user", "content": "two"}]),
        max_new_tokens=8).text
    assert chat.messages[0] == {"role": "system", "content": "Be brief."}
    assert chat.messages[-1] == {"role": "assistant", "content": expected}


def test_deltas_are_batched_by_time_not_sent_per_token(slow_model):
    chat = Chat(slow_model, max_tokens=120)
    sent = recorded(chat)
    start = time.monotonic()
    chat.ask("Hello")
    chat.wait(TIMEOUT_S)
    seconds = time.monotonic() - start
    n_pieces = len(slow_model.tokenizer.encode(answer_entry(chat)["content"]))
    times = sent.times()
    assert len(times) < n_pieces  # several pieces a message
    assert len(times) <= seconds / UPDATE_INTERVAL_S + 2
    gaps = [b - a for a, b in zip(times, times[1:-1])]  # the last is the final flush
    assert min(gaps) >= UPDATE_INTERVAL_S * 0.9


def test_deltas_send_the_first_piece_at_once_then_batch():
    now = [0.0]
    out: list[str] = []
    deltas = Deltas(out.append, interval=0.04, clock=lambda: now[0])
    deltas.push("a")
    for piece in "bcd":
        now[0] += 0.01
        deltas.push(piece)
    now[0] += 0.02
    deltas.push("e")
    deltas.push("f")
    deltas.flush()
    assert out == ["a", "bcde", "f"]


def test_an_empty_message_is_refused(model):
    with pytest.raises(gemma_nb.GemmaError, match="empty"):
        Chat(model).ask("  \n")


# ---- stop -----------------------------------------------------------------------------------


def test_stop_keeps_the_partial_text_and_frees_the_model(slow_model):
    chat = Chat(slow_model, max_tokens=200)
    sent = recorded(chat)
    chat.ask("Hello")
    until(lambda: len("".join(sent.deltas())) > 5)
    chat.stop()
    assert chat.wait(5)
    entry = answer_entry(chat)
    full = slow_model.chat([{"role": "user", "content": "Hello"}], max_new_tokens=200).text
    assert entry["state"] == "stopped" and entry["stats"]["finish"] == "stopped"
    assert entry["content"] and entry["content"] == "".join(sent.deltas(entry["id"]))
    assert full.startswith(entry["content"]) and len(entry["content"]) < len(full)
    assert entry["stats"]["line"].endswith("stopped")
    assert chat.messages[-1] == {"role": "assistant", "content": entry["content"]}
    lock = model_lock(slow_model)
    assert lock.acquire(blocking=False)  # Stop released the model
    lock.release()


def test_stop_while_the_prompt_is_read_ends_it_after_the_running_chunk(model, monkeypatch):
    monkeypatch.setattr(model_module, "PREFILL_CHUNK", 2)
    chunks: list[int] = []
    run_chunk = model._prefill_chunk

    def slow_chunk(cache, chunk, last):
        chunks.append(len(chunk))
        time.sleep(0.2)
        return run_chunk(cache, chunk, last)

    monkeypatch.setattr(model, "_prefill_chunk", slow_chunk)
    chat = Chat(model, max_tokens=20)
    question = "Tell me a story about a cat, a dog and a bird."
    chat.ask(question)
    until(lambda: chunks)
    chat.stop()
    assert chat.wait(5)
    entry = answer_entry(chat)
    assert entry["state"] == "stopped" and entry["content"] == ""
    prompt = model.tokenizer.encode(format_chat([{"role": "user", "content": question}]))
    assert len(prompt) >= 10 and sum(chunks) <= 4  # at most the running chunk and one more


def test_the_front_end_stop_message_stops_it(slow_model):
    chat = Chat(slow_model, max_tokens=200)
    sent = recorded(chat)
    chat._on_front_end(chat, {"type": "ask", "text": "Hello"}, [])
    until(lambda: sent.deltas())
    chat._on_front_end(chat, {"type": "stop"}, [])
    assert chat.wait(5)
    assert answer_entry(chat)["state"] == "stopped"


# ---- two chats, one model -------------------------------------------------------------------


def test_two_chats_on_one_model_wait_in_turn_and_never_interleave(slow_model):
    first, second = Chat(slow_model, max_tokens=60), Chat(slow_model, max_tokens=60)
    sent_first, sent_second = recorded(first), recorded(second)
    statuses: list[str] = []
    second.observe(lambda change: statuses.append(change["new"]), names=["status"])
    first.ask("Hello")
    until(lambda: sent_first.deltas())
    second.ask("Hello")
    until(lambda: WAITING in statuses, timeout=10)
    assert first.wait(TIMEOUT_S) and second.wait(TIMEOUT_S)
    assert max(sent_first.times()) < min(sent_second.times())  # one after the other
    assert "answering" in statuses[statuses.index(WAITING):]
    assert answer_entry(first)["content"] == answer_entry(second)["content"]  # both greedy


def test_stop_while_waiting_for_the_model_gives_up_the_turn(slow_model):
    first, second = Chat(slow_model, max_tokens=200), Chat(slow_model, max_tokens=60)
    sent_first, sent_second = recorded(first), recorded(second)
    first.ask("Hello")
    until(lambda: sent_first.deltas())
    second.ask("Hello")
    until(lambda: second.status == WAITING, timeout=10)
    second.stop()
    assert second.wait(5)
    assert first.busy  # the first answer goes on
    entry = answer_entry(second)
    assert entry["state"] == "stopped" and entry["content"] == "" and not sent_second.deltas()
    first.stop()
    assert first.wait(5)


@pytest.fixture
def magics(monkeypatch):
    """The %gemma magics of an IPython shell; the model they hold is restored afterwards."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.extension_manager.load_extension("gemma_nb")
    magics = shell.magics_manager.registry["GemmaMagics"]
    monkeypatch.setattr(magics, "model", None)
    monkeypatch.setattr(magics, "model_is_configured", False)
    return magics


def test_the_magic_waits_for_a_chat_answering_on_its_model(slow_model, magics, capsys):
    shell = magics.shell
    magics.model = slow_model
    chat = Chat(slow_model, max_tokens=40)
    sent = recorded(chat)
    chat.ask("Hello")
    until(lambda: sent.deltas())
    shell.run_cell_magic("gemma", "--max-tokens 4 -o cell_answer", "Hi")
    cell_done = time.monotonic()
    assert "waiting for the model" in capsys.readouterr().out
    assert not chat.busy and max(sent.times()) < cell_done
    assert shell.user_ns["cell_answer"].text


# ---- the context ----------------------------------------------------------------------------


def test_turns_that_outgrow_the_context_are_dropped_with_a_notice(model):
    long = "tell me more about this " * 8  # ~40 tokens a message; the context holds 256
    history = []
    for i in range(4):
        history += [{"role": "user", "content": f"{i} {long}"},
                    {"role": "assistant", "content": f"{i} {long}"}]
    chat = Chat(model, max_tokens=32)
    recorded(chat)
    chat.messages = history
    chat.ask("and now?")
    chat.wait(TIMEOUT_S)
    notices = [e for e in chat._log if e["role"] == "notice"]
    assert len(notices) == 1 and "no longer fit in the context" in notices[0]["content"]
    dropped = [e for e in chat._log if e["excluded"] == "context"]
    assert dropped and len(dropped) % 2 == 0
    assert [e["content"] for e in dropped] == [m["content"] for m in history[:len(dropped)]]
    assert chat.messages[: -2] == history[len(dropped):]  # what the model reads now
    assert answer_entry(chat)["state"] == "done"
    prompt_tokens = answer_entry(chat)["stats"]["prompt_tokens"]
    assert prompt_tokens + 32 <= model.config.context_length
    ids = [e["id"] for e in chat._log]
    question = next(e for e in chat._log if e["content"] == "and now?")
    assert ids.index(notices[0]["id"]) == ids.index(question["id"]) - 1  # where it happened


def test_a_message_too_long_for_the_context_shows_an_error(model):
    chat = Chat(model, max_tokens=32)
    recorded(chat)
    chat.ask("word " * 400)
    chat.wait(TIMEOUT_S)
    errors = [e for e in chat._log if e["role"] == "error"]
    assert len(errors) == 1 and "context" in errors[0]["content"]
    assert [e["excluded"] for e in chat._log if e["role"] == "user"] == ["unanswered"]
    assert chat.messages == [] and not chat.busy
    chat.ask("short")  # the chat goes on
    chat.wait(TIMEOUT_S)
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]


# ---- errors ---------------------------------------------------------------------------------


def test_a_failure_while_generating_is_shown_in_the_widget(model, monkeypatch):
    def broken_stream(*args: Any, **kwargs: Any) -> Stream:
        def pieces():
            yield "Hal"
            raise RuntimeError("the session died")

        return Stream(pieces(), gemma_nb.Generation("", [], "length"))

    monkeypatch.setattr(model, "stream", broken_stream)
    chat = Chat(model, max_tokens=32)
    recorded(chat)
    chat.ask("Hello")
    chat.wait(TIMEOUT_S)
    errors = [e["content"] for e in chat._log if e["role"] == "error"]
    assert errors == ["RuntimeError: the session died"]
    assert not [e for e in chat._log if e["role"] == "assistant"]
    assert chat.messages == [] and not chat.busy
    assert not model_lock(model).locked()


def test_a_model_that_cannot_load_is_shown_in_the_widget(tmp_path):
    chat = Chat(tmp_path / "nothing-here")
    recorded(chat)
    chat.ask("Hello")
    chat.wait(TIMEOUT_S)
    errors = [e["content"] for e in chat._log if e["role"] == "error"]
    assert len(errors) == 1 and "nothing-here" in errors[0]


def test_asking_while_answering_is_refused_and_the_front_end_sees_why(slow_model):
    chat = Chat(slow_model, max_tokens=200)
    sent = recorded(chat)
    chat.ask("Hello")
    until(lambda: sent.deltas())
    with pytest.raises(ChatBusyError, match="Stop"):
        chat.ask("again")
    chat._on_front_end(chat, {"type": "ask", "text": "again"}, [])
    assert any(e["role"] == "error" and "answering" in e["content"] for e in chat._log)
    chat.stop()
    chat.wait(5)


# ---- history from Python --------------------------------------------------------------------


def test_messages_can_be_set_read_and_validated(model):
    chat = Chat(model)
    conversation = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    chat.messages = conversation
    assert chat.messages == conversation and chat.system == "Be brief."
    with pytest.raises(ChatFormatError, match="end with an assistant"):
        chat.messages = conversation[:2]
    assert chat.messages == conversation  # unchanged by a refused value


def test_messages_cannot_be_replaced_mid_answer(slow_model):
    chat = Chat(slow_model, max_tokens=200)
    sent = recorded(chat)
    chat.ask("Hello")
    until(lambda: sent.deltas())
    with pytest.raises(ChatBusyError):
        chat.messages = []
    chat.stop()
    chat.wait(5)


def test_new_conversation_stops_the_answer_and_forgets(slow_model):
    chat = Chat(slow_model, system="Be brief.", max_tokens=200)
    sent = recorded(chat)
    chat.ask("Hello")
    until(lambda: sent.deltas())
    chat._on_front_end(chat, {"type": "new"}, [])
    assert chat.wait(5)
    assert chat._log == [] and chat.messages == [{"role": "system", "content": "Be brief."}]
    assert not model_lock(slow_model).locked()


def test_a_conversation_saves_and_loads_with_its_settings(model, tmp_path):
    chat = Chat(model, system="Be brief.", temperature=0.5, max_tokens=16, seed=3)
    recorded(chat)
    chat.ask("Hello")
    chat.wait(TIMEOUT_S)
    path = tmp_path / "chat.json"
    chat.save(path)
    again = Chat(model)
    again.load(path)
    assert again.messages == chat.messages
    assert (again.temperature, again.max_tokens, again.seed) == (0.5, 16, 3)


def test_settings_are_validated(model):
    with pytest.raises(Exception, match="temperature must be >= 0"):
        Chat(model, temperature=-1)
    chat = Chat(model)
    with pytest.raises(Exception, match="max_tokens must be >= 1"):
        chat.max_tokens = 0


def test_a_chat_without_a_model_uses_the_one_the_magic_holds(model, magics):
    magics.model = model
    chat = Chat(max_tokens=32)
    recorded(chat)
    chat.ask("Hello")
    chat.wait(TIMEOUT_S)
    assert chat._model is model and chat.model_name == model.path.name
    assert chat.context_length == model.config.context_length


def test_gemma_nb_exports_chat_lazily():
    import subprocess
    import sys

    code = ("import gemma_nb, sys; light = 'anywidget' not in sys.modules; "
            "print(light, gemma_nb.Chat.__name__, 'anywidget' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["True", "Chat", "True"]


def test_the_view_module_and_style_ship_with_the_widget(model):
    chat = Chat(model)
    assert "export default { render }" in chat._esm
    assert ".gemma-chat" in chat._css


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    """Every test ends with its chats idle: a leaked worker would hold a model's lock."""
    yield
    until(lambda: not [t for t in threading.enumerate() if t.name == "gemma-nb-chat"], 10)
