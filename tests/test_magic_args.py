"""Parsing %gemma / %%gemma arguments into typed objects, before anything runs."""

from __future__ import annotations

import pytest

from gemma_nb.magic_args import (CellArgs, LineCommand, MagicArgumentError, cell_usage,
                                 line_usage, parse_cell_args, parse_line, unescape)


def test_no_options_is_a_one_shot_markdown_answer_with_configured_defaults():
    assert parse_cell_args("") == CellArgs()
    assert CellArgs().temperature is None and CellArgs().format == "markdown"


def test_every_option_is_parsed_to_its_type():
    args = parse_cell_args(
        "--system 'Be brief.' --temperature 0.7 --top-k 40 --top-p 0.9 --max-tokens 64 "
        "--seed 3 --stop END --stop '\\n\\n' --chat -f json -o answer")
    assert args == CellArgs(system="Be brief.", temperature=0.7, top_k=40, top_p=0.9,
                            max_tokens=64, seed=3, stop=("END", "\n\n"), chat=True,
                            format="json", out="answer")


def test_quotes_follow_shell_rules_not_single_spaces():
    args = parse_cell_args('--system "Answer  in French, please."   --stop "a b"')
    assert args.system == "Answer  in French, please." and args.stop == ("a b",)


def test_long_and_short_format_and_out_flags():
    assert parse_cell_args("-f code -o x") == parse_cell_args("--format code --out x")


def test_stop_escapes_are_newlines_and_tabs_only():
    assert unescape(r"\n\t\r\\") == "\n\t\r\\"
    assert unescape(r"\x41 \u00e9") == r"\x41 \u00e9"  # nothing else is decoded


def test_map_takes_an_expression():
    assert parse_cell_args("--map df.country -o out").map == "df.country"


@pytest.mark.parametrize("line, message", [
    ("--foo", "unrecognized arguments: --foo"),
    ("--temperature abc", "--temperature: not a number: 'abc'"),
    ("--temperature -1", "must be >= 0"),
    ("--temperature nan", "not a finite number"),
    ("--max-tokens 0", "--max-tokens: must be at least 1"),
    ("--max-tokens 2.5", "not an integer"),
    ("--top-p 0", "must be in (0, 1]"),
    ("--top-k -1", "must be >= 0"),
    ("-o 1abc", "'1abc' is not a valid Python variable name"),
    ("-o class", "'class' is not a valid Python variable name"),
    ("-f xml", "invalid choice: 'xml'"),
    ("--chat --raw", "not allowed with argument --chat"),
    ("--raw --system hi", "--system needs the chat format"),
    ("--map xs --chat", "--map answers each item on its own: drop --chat"),
    ("--map xs -f json", "-f/--format does not apply"),
    ("--system 'unclosed", "No closing quotation"),
    ("hello", "unrecognized arguments: hello"),
    ("--temp 0.5", "unrecognized arguments"),  # no abbreviations: --temp is a typo
])
def test_bad_cell_options_raise_one_line(line, message):
    with pytest.raises(MagicArgumentError) as info:
        parse_cell_args(line)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_line_subcommands():
    assert parse_line("") == LineCommand("help")
    assert parse_line("load model-dir --provider cuda --dtype int4") == LineCommand(
        "load", "model-dir", "cuda", "int4")
    assert parse_line("load 'a folder/with spaces'").path == "a folder/with spaces"
    for name in ("info", "unload", "reset", "help"):
        assert parse_line(name) == LineCommand(name)


@pytest.mark.parametrize("line, message", [
    ("load", "required: path"),
    ("load x --dtype q4", "invalid choice: 'q4'"),
    ("reset now", "unrecognized arguments: now"),
    ("what is 2+2", "unknown subcommand 'what'"),
])
def test_bad_lines_raise_one_line(line, message):
    with pytest.raises(MagicArgumentError) as info:
        parse_line(line)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_usage_names_every_option_and_subcommand():
    usage = cell_usage()
    for flag in ("--system", "--temperature", "--top-k", "--top-p", "--max-tokens", "--seed",
                 "--stop", "--chat", "--raw", "--format", "--out", "--map"):
        assert flag in usage
    for command in ("load", "info", "unload", "reset", "help", "%config Gemma"):
        assert command in line_usage()
