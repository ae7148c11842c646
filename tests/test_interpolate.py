"""Brace-safe interpolation: only braces that name something in the namespace are replaced."""

from __future__ import annotations

import pytest

from gemma_nb.interpolate import MAX_ROWS, interpolate, render_value, resolve


class Point:
    x = 3

    @property
    def broken(self):
        raise RuntimeError("a property that fails")


NS = {"name": "Ada", "n": 42, "xs": [10, 20, 30], "d": {"k": "v", "n": [1, 2]}, "p": Point(),
      "In": ["", "a = 1", "b = 2"], "Out": {2: "two"}}


@pytest.mark.parametrize("text, expected", [
    ("Hello {name}", "Hello Ada"),
    ("{n} and {n}", "42 and 42"),
    ("{p.x}", "3"),
    ("{xs[0]} {xs[-1]}", "10 30"),
    ("{d['k']} {d[\"k\"]} {d['n'][1]}", "v v 2"),
    ("{In[2]} / {Out[2]}", "b = 2 / two"),
])
def test_references_are_replaced(text, expected):
    assert interpolate(text, NS) == expected


@pytest.mark.parametrize("text", [
    "{}", "{ }", "{undefined}", "{name.nope}", "{xs[7]}", "{d['missing']}", "{Out[9]}",
    "{p.broken}", "{0}", "{name!r}", "{name:>10}", "{n + 1}", "{{name}}", "{{ name }}",
    "{'a': 1}", '{"name": "x"}', "set() or {1, 2}", "f\"{x!r}\"", "{len}", "{name",
])
def test_everything_else_stays_exactly_as_written(text):
    assert interpolate(text, NS) == text


def test_code_and_json_prompt_keeps_its_braces_and_fills_its_variables():
    prompt = ('Fix this for {name}:\n'
              'def f(d):\n    return {k: v for k, v in d.items()} | {"n": {n}}\n'
              'Expected: {"result": [1, 2], "empty": {}}\n'
              'Template: "{{ user }}" and f"{value!r:>{width}}"')
    expected = prompt.replace("{name}", "Ada").replace("{n}}", "42}")
    assert interpolate(prompt, NS) == expected


def test_substitution_is_one_pass():
    assert interpolate("{a}", {"a": "{b}", "b": "no"}) == "{b}"


def test_kept_names_stay_literal():
    assert interpolate("{item} of {name}", {**NS, "item": "x"}, keep={"item"}) == "{item} of Ada"


def test_builtins_are_not_in_the_namespace():
    assert interpolate("{print} {str}", {}) == "{print} {str}"


def test_resolve_refuses_anything_but_a_reference():
    assert resolve("d['n'][0]", NS) == 1
    for bad in ("n + 1", "__import__('os')", "xs[0]()", ""):
        with pytest.raises(LookupError):
            resolve(bad, NS)


def test_dataframes_render_as_a_bounded_table():
    import pandas as pd
    df = pd.DataFrame({"a": range(1000), "b": ["x" * 500] * 1000,
                       **{f"c{i}": range(1000) for i in range(40)}})
    text = interpolate("Data:\n{df}", {"df": df})
    lines = text.splitlines()
    assert lines[0] == "Data:" and len(lines) < MAX_ROWS + 6 and "..." in text
    assert max(len(line) for line in lines) < 400
    assert "[1000 rows x 42 columns]" in text
    small = pd.DataFrame({"city": ["Paris", "Rome"], "people": [2.1, 2.8]})
    assert render_value(small) == small.to_string()
    assert "Paris" in interpolate("{small.city}", {"small": small})
