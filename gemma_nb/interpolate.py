"""Brace-safe prompt interpolation: `{name}`, `{name.attr}`, `{name[0]}`, `{In[3]}`, `{Out[3]}`.

jupyter-ai interpolates with `str.format_map`, so any prompt holding code or JSON (`{}`,
`{"a": 1}`, `f"{x!r}"`) raises or is mangled. Here only a brace pair that holds a reference to
something in the namespace is replaced; every other brace stays exactly as written:

- the reference is a name, then any number of `.attr`, `[integer]` or `["key"]` steps;
- it is resolved with getattr / getitem on the namespace, never `eval`, so nothing runs except
  the attribute and item lookups it names;
- a name that is not defined, or a step that fails, leaves the braces literal;
- doubled braces (`{{name}}`, as in Mustache or f-string escapes) are left untouched.

Values render with `str()`, except pandas DataFrames and Series, which become a text table of at
most `MAX_ROWS` rows and `MAX_COLUMNS` columns so that a large frame cannot flood the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from typing import Any

__all__ = ["MAX_ROWS", "MAX_COLUMNS", "interpolate", "resolve", "render_value"]

MAX_ROWS = 20  # pandas shows the first and last 10 rows of a longer frame
MAX_COLUMNS = 12
MAX_CELL_CHARS = 60

_STEP = r"""(?:\.[A-Za-z_]\w*|\[\s*(?:-?\d+|'[^'\\\]]*'|"[^"\\\]]*")\s*\])"""
_BODY = r"[A-Za-z_]\w*" + _STEP + "*"
# With the braces around it, to leave {{name}} (Jinja, Mustache, f-string escapes) alone while
# still filling {"n": {n}}.
_REFERENCE = re.compile(r"(?P<open>\{?)\{(?P<ref>" + _BODY + r")\}(?P<close>\}?)")
_STEPS = re.compile(r"""\.(?P<attr>[A-Za-z_]\w*)|\[\s*(?P<index>-?\d+|'[^']*'|"[^"]*")\s*\]""")
_NAME = re.compile(r"[A-Za-z_]\w*")


def resolve(reference: str, namespace: Mapping[str, Any]) -> Any:
    """The value `reference` ("df.col", "In[3]", "d['k']") names in `namespace`, or raise
    LookupError when it names nothing there."""
    name = _NAME.match(reference)
    if re.fullmatch(_BODY, reference) is None or name is None or name.group() not in namespace:
        raise LookupError(reference)
    value = namespace[name.group()]
    rest = reference[name.end():]
    for step in _STEPS.finditer(rest):
        try:
            if step.group("attr") is not None:
                value = getattr(value, step.group("attr"))
            else:
                index = step.group("index")
                value = value[index[1:-1] if index[0] in "'\"" else int(index)]
        # A user's __getattr__ / __getitem__ may raise anything; a failed lookup means "not a
        # reference", so the braces stay literal rather than the cell failing.
        except Exception as exc:
            raise LookupError(reference) from exc
    return value


def render_value(value: Any) -> str:
    """The text a value contributes to a prompt: DataFrames as a bounded table, else str()."""
    if not _is_pandas(value):
        return str(value)
    if hasattr(value, "columns"):  # a DataFrame
        return value.to_string(max_rows=MAX_ROWS, max_cols=MAX_COLUMNS,
                               max_colwidth=MAX_CELL_CHARS)
    return value.to_string(max_rows=MAX_ROWS)  # a Series


def _is_pandas(value: Any) -> bool:
    # Duck-typed so pandas is never imported here: a DataFrame or Series from any pandas.
    return type(value).__module__.startswith("pandas.") and hasattr(value, "to_string")


def interpolate(text: str, namespace: Mapping[str, Any], keep: Container[str] = ()) -> str:
    """`text` with every `{reference}` that names a value in `namespace` replaced by it.

    Names in `keep` are never replaced (`--map` keeps `{item}` for each item)."""

    def substitute(match: re.Match[str]) -> str:
        reference, open_, close = match.group("ref", "open", "close")
        if (open_ and close) or _NAME.match(reference).group() in keep:  # type: ignore[union-attr]
            return match.group()
        try:
            return open_ + render_value(resolve(reference, namespace)) + close
        except LookupError:
            return match.group()

    return _REFERENCE.sub(substitute, text)
