"""gemma_nb.lab, the kernel side of the JupyterLab extension: requests, prompts, answers and the
event lines the extension reads (its front end is tested by jest and Galata in labextension/).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from gemma_nb import lab
from gemma_nb.chat import format_chat
from gemma_nb.lab import LabRequest, LabRequestError, answer_text, build_prompt
from gemma_nb.model import Generation, Stream


def request_json(**fields) -> str:
    return json.dumps({"action": "explain", "source": "print(1)", **fields})


class ScriptedModel:
    """Answers every prompt with the same pieces; records what it was asked."""

    def __init__(self, pieces: list[str], name: str = "scripted-model", interrupt_after=None):
        self.pieces, self.interrupt_after = pieces, interrupt_after
        self.path, self.provider, self.load_s = Path("/models") / name, "cpu", 0.5
        self.calls: list[tuple[str, dict]] = []

    def stream(self, prompt: str, **kwargs) -> Stream:
        self.calls.append((prompt, kwargs))
        result = Generation("", [], "stop")

        def pieces():
            for i, piece in enumerate(self.pieces):
                if i == self.interrupt_after:
                    raise KeyboardInterrupt
                result.text += piece
                result.token_ids.append(i)
                yield piece

        return Stream(pieces(), result)


@pytest.fixture(autouse=True)
def fresh_kernel_state(monkeypatch):
    """No model kept from another test, no IPython shell unless a test makes one."""
    lab.unload()
    monkeypatch.setattr(lab, "_magics", lambda: None)
    yield
    lab.unload()


@pytest.fixture
def loads(monkeypatch) -> list[tuple[str, str]]:
    """Every (spec, provider) lab loads; each load returns a new ScriptedModel."""
    seen: list[tuple[str, str]] = []

    def resolve(spec, dtype="fp32", progress=True):
        if spec == "missing":
            raise lab.GemmaError("missing is neither a model folder, a weights file, nor 'default'")
        return Path("/models") / spec

    def load(folder, provider="cpu"):
        seen.append((folder.name, provider))
        return ScriptedModel(["It prints", " one."], name=folder.name)

    monkeypatch.setattr(lab, "resolve_model", resolve)
    monkeypatch.setattr(lab, "load", load)
    return seen


def run(text: str) -> list[dict]:
    events: list[dict] = []
    lab.run(text, events.append)
    return events


# ---- requests -------------------------------------------------------------------------------

def test_request_reads_every_field():
    request = LabRequest.from_json(json.dumps({
        "action": "fix", "source": "x", "error": "NameError", "model": "default",
        "max_tokens": 16, "temperature": 0.5}))
    assert request == LabRequest("fix", "x", "NameError", "default", 16, 0.5)


def test_request_defaults_let_the_kernel_choose_the_model():
    request = LabRequest.from_json(request_json())
    assert (request.error, request.model, request.max_tokens, request.temperature) == (
        "", "", 128, 0.0)


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ("[1]", "a JSON list"),
    (request_json(action="summarize"), "unknown action 'summarize'"),
    (json.dumps({"action": "explain"}), "needs an action and a source"),
    (request_json(shell="rm -rf /"), "unknown request fields: shell"),
    (request_json(source=3), "source must be a string"),
    (request_json(max_tokens=0), "max tokens must be a whole number >= 1"),
    (request_json(max_tokens="64"), "max tokens must be a whole number >= 1"),
    (request_json(max_tokens=True), "max tokens must be a whole number >= 1"),
    (request_json(max_tokens=1.5), "max tokens must be a whole number >= 1"),
    (request_json(temperature=-0.1), "temperature must be a number >= 0"),
    (request_json(temperature=None), "temperature must be a number >= 0"),
])
def test_malformed_request_raises_with_the_reason(text, message):
    with pytest.raises(LabRequestError, match=message):
        LabRequest.from_json(text)


def test_malformed_request_is_a_bad_request_event(loads):
    events = run(request_json(max_tokens=0))
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "bad-request"
    assert loads == []


# ---- prompts and answers --------------------------------------------------------------------

def test_prompt_holds_the_cell_verbatim_in_a_user_turn_then_the_primer():
    source = 'd = {"a": "{b}"}\nprint(f"{d!r}")  # braces and quotes stay as written'
    prompt = build_prompt(LabRequest("explain", source))
    user = f"{lab.TASKS['explain'].instruction}\n\n```python\n{source}\n```"
    assert prompt == format_chat([{"role": "user", "content": user}]) + "This cell"


def test_fix_prompt_holds_the_end_of_a_long_error():
    error = "Traceback (most recent call last)\n" + "frame\n" * 1000 + "NameError: x"
    prompt = build_prompt(LabRequest("fix", "print(x)", error=error))
    assert "It raised this error:\n```\n..." in prompt
    assert "NameError: x\n```" in prompt
    assert len(prompt) < lab.ERROR_CHARS + 500
    assert prompt.endswith("<start_of_turn>model\n```python\n")


def test_prompt_without_error_output_does_not_mention_one():
    assert "raised" not in build_prompt(LabRequest("fix", "print(x)", error="  \n"))


def test_explanation_keeps_the_primer_it_continues():
    assert answer_text(LabRequest("explain", "x"), " prints one.\n") == "This cell prints one."


@pytest.mark.parametrize("generated, code", [
    ("x = 1\nprint(x)\n", "x = 1\nprint(x)"),  # stopped at the closing fence
    ("x = 1\n```\nThe fix defines x.", "x = 1"),  # went on after the block
])
def test_fix_answer_is_the_code_of_the_block_the_primer_opened(generated, code):
    assert answer_text(LabRequest("fix", "print(x)"), generated) == code


def test_every_task_has_a_format_the_extension_inserts():
    assert {task.format for task in lab.TASKS.values()} <= {"markdown", "code"}
    assert set(lab.TASKS) == {"explain", "fix", "document"}


# ---- commands -------------------------------------------------------------------------------

def test_command_loads_the_default_model_and_answers(loads):
    events = run(request_json(max_tokens=8, temperature=0.7))
    assert [e["event"] for e in events] == ["status", "model", "answer"]
    assert "'default'" in events[0]["message"]
    assert events[1] == {"event": "model", "name": "default", "provider": "cpu", "load_s": 0.5}
    assert events[2] == {
        "event": "answer", "action": "explain", "format": "markdown",
        "text": "This cellIt prints one.", "model": "default", "provider": "cpu", "tokens": 2,
        "tokens_per_s": 0.0, "finish_reason": "stop"}
    model = lab._loaded.model
    _prompt, kwargs = model.calls[0]
    assert kwargs == {"max_new_tokens": 8, "temperature": 0.7, "stop": ["\n```"]}


def test_model_is_loaded_once_per_kernel(loads):
    run(request_json())
    run(request_json(action="document"))
    assert loads == [("default", "cpu")]


def test_another_model_path_replaces_the_loaded_model(loads):
    run(request_json())
    events = run(request_json(model="my-model"))
    assert loads == [("default", "cpu"), ("my-model", "cpu")]
    assert events[-1]["model"] == "my-model"


def test_missing_model_is_a_no_model_event(loads):
    events = run(request_json(model="missing"))
    assert [e["event"] for e in events] == ["status", "error"]
    assert events[1]["kind"] == "no-model"
    assert "neither a model folder" in events[1]["message"]


def test_generation_error_is_an_event(loads, monkeypatch):
    def too_long(prompt, **kwargs):
        raise lab.GemmaError("the prompt has 9000 tokens; the context holds 8192")

    run(request_json())
    monkeypatch.setattr(lab._loaded.model, "stream", too_long)
    events = run(request_json())
    assert events[-1] == {"event": "error", "kind": "generation",
                          "message": "the prompt has 9000 tokens; the context holds 8192"}


def test_interrupt_keeps_the_answer_so_far(monkeypatch):
    model = ScriptedModel(["x = 1\n", "print(x)\n", "never"], interrupt_after=2)
    monkeypatch.setattr(lab, "_model_for", lambda spec, emit: model)
    answer = run(request_json(action="fix"))[-1]
    assert answer["text"] == "x = 1\nprint(x)"
    assert answer["finish_reason"] == "interrupted"


def test_progress_is_reported_while_the_answer_streams(monkeypatch):
    monkeypatch.setattr(lab, "PROGRESS_INTERVAL_S", 0.0)
    model = ScriptedModel(["a", "b", "c"])
    monkeypatch.setattr(lab, "_model_for", lambda spec, emit: model)
    events = run(request_json())
    assert [e["tokens"] for e in events if e["event"] == "progress"] == [1, 2, 3]


def test_events_are_printed_one_json_line_each_with_the_prefix(monkeypatch, capsys):
    model = ScriptedModel(["line one\n\nline \"two\" {braces}"])
    monkeypatch.setattr(lab, "_model_for", lambda spec, emit: model)
    lab.run(request_json(action="document"))
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith(lab.PREFIX) for line in lines)
    answer = json.loads(lines[-1][len(lab.PREFIX):])
    assert answer["text"].endswith('line one\n\nline "two" {braces}')


# ---- sharing the %gemma magic's model -------------------------------------------------------

@pytest.fixture
def magics(monkeypatch):
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.extension_manager.load_extension("gemma_nb")
    magics = shell.magics_manager.registry["GemmaMagics"]
    magics.model, magics.model_is_configured = None, False
    monkeypatch.setattr(lab, "_magics", lambda: magics)
    yield magics
    magics.model, magics.model_is_configured = None, False
    for name, trait in magics.settings.traits(config=True).items():
        if name != "cache_dir":
            setattr(magics.settings, name, trait.default())


def test_command_uses_the_model_the_magic_loaded(magics, loads):
    magics.model = ScriptedModel(["ok"], name="loaded-by-magic")
    events = run(request_json())
    assert loads == []
    assert events[-1]["model"] == "loaded-by-magic"


def test_command_loads_the_magics_configured_model_and_shares_it(magics, loads):
    magics.settings.model, magics.settings.provider = "configured", "cuda"
    run(request_json())
    assert loads == [("configured", "cuda")]
    assert magics.model is lab._loaded.model and magics.model_is_configured


def test_model_path_of_the_settings_wins_over_the_magics_model(magics, loads):
    magics.model = ScriptedModel(["ok"], name="loaded-by-magic")
    events = run(request_json(model="my-model"))
    assert events[-1]["model"] == "my-model"
    assert magics.model.path.name == "loaded-by-magic"  # the magic keeps its own


# ---- a real model ---------------------------------------------------------------------------

def test_tiny_model_streams_a_code_answer(tiny_gemma2_model, monkeypatch):
    monkeypatch.setattr(lab, "_model_for", lambda spec, emit: tiny_gemma2_model)
    events = run(request_json(action="fix", source="print(x)", error="NameError: x",
                              max_tokens=6))
    answer = events[-1]
    assert answer["event"] == "answer" and answer["format"] == "code"
    assert 1 <= answer["tokens"] <= 6
    assert answer["model"] == tiny_gemma2_model.path.name


@pytest.mark.slow
def test_real_model_explains_a_cell_in_words(real_model_dir):
    source = "def area(r):\n    return 3.14159 * r ** 2\n\nprint(area(2))"
    events = run(request_json(source=source, model=str(real_model_dir), max_tokens=32))
    answer = events[-1]
    assert answer["event"] == "answer", events
    assert answer["text"].startswith("This cell") and len(answer["text"]) > len("This cell")
    assert "```" not in answer["text"]


def test_a_command_waits_for_a_model_another_request_holds(loads):
    import threading

    from gemma_nb.exclusive import model_lock

    run(request_json())  # loads the model the next command reuses
    lock = model_lock(lab._loaded.model)
    lock.acquire()  # a chat widget answering on the same model
    events: list[dict] = []
    command = threading.Thread(target=lab.run, args=(request_json(), events.append))
    command.start()
    command.join(0.5)
    assert command.is_alive() and events[-1]["event"] == "status"
    assert "waiting for the model" in events[-1]["message"]
    lock.release()
    command.join(10)
    assert events[-1]["event"] == "answer"
