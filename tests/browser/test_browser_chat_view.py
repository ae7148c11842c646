"""The chat view (gemma_nb/widget/chat.js) in chromium, on a stand-in for the widget model.

No kernel and no JupyterLab: the page is the ES module and its CSS, rendered on a fake model
whose state and custom messages the test drives, so every case is fast and exact. The page is
served as http://localhost/ (Playwright's routing), a secure context, so the clipboard works.
test_browser_chat.py runs the real thing end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gemma_nb.widget

pytestmark = pytest.mark.slow

WIDGET = Path(gemma_nb.widget.__file__).parent

FAKE_MODEL = """
class FakeModel {
  constructor(state) { this.state = state; this.handlers = {}; this.sent = []; }
  get(name) { return this.state[name]; }
  set(name, value) { this.state[name] = value; }
  save_changes() { this.saved = (this.saved ?? 0) + 1; }
  on(name, callback) { (this.handlers[name] ??= []).push(callback); }
  off(name, callback) { this.handlers[name] = (this.handlers[name] ?? []).filter((c) => c !== callback); }
  send(message) { this.sent.push(message); }
  update(name, value) {  // as a change from the kernel
    this.state[name] = value;
    for (const callback of this.handlers[`change:${name}`] ?? []) callback();
  }
  custom(message) { for (const callback of this.handlers["msg:custom"] ?? []) callback(message, []); }
}
const model = new FakeModel(STATE);
window.chat = { model, markdown, highlight, inline };
render({ model, el: document.getElementById("root") });
"""

STATE = {"_log": [], "status": "", "busy": False, "model_name": "gemma-3-270m-fp32",
         "context_length": 32768, "system": "", "temperature": 0.0, "max_tokens": 512}


@pytest.fixture
def view(page):
    html = ("<!doctype html><html><head><meta charset='utf-8'><style>"
            + (WIDGET / "chat.css").read_text() + "</style></head><body><div id='root'></div>"
            + "<script type='module'>" + (WIDGET / "chat.js").read_text()
            + FAKE_MODEL.replace("STATE", json.dumps(STATE)) + "</script></body></html>")
    page.route("http://localhost/**",
               lambda route: route.fulfill(body=html, content_type="text/html"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin="http://localhost")
    page.goto("http://localhost/chat.html")
    page.wait_for_function("window.chat !== undefined")
    return page


def md(page, text: str) -> str:
    return page.evaluate("(text) => window.chat.markdown(text)", text)


def entry(i: int, role: str, content: str, state: str = "", stats=None, excluded: str = ""):
    return {"id": i, "role": role, "content": content, "state": state, "stats": stats,
            "excluded": excluded}


# ---- Markdown -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "**<b>x</b>**",
    "`<i>`", "```html\n<script>alert(1)</script>\n```", "| <a> | b |\n|---|---|\n| <img> | 1 |",
    "[click](javascript:alert(1))", '[x](https://a.example/" onmouseover="alert(1))',
])
def test_markdown_never_lets_html_through(view, text):
    html = md(view, text)
    view.evaluate("(html) => { document.getElementById('root').innerHTML = html; }", html)
    assert view.locator("#root script, #root img, #root i, #root b").count() == 0
    assert view.locator("#root [onerror], #root [onmouseover], #root a[href^='javascript']"
                        ).count() == 0


def test_markdown_links_keep_web_targets_only(view):
    html = md(view, "[docs](https://example.com/a?b=1&c=2) and [mail](mailto:a@b.c)")
    assert '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" ' in html
    assert 'href="mailto:a@b.c"' in html
    assert "rel=\"noopener noreferrer\"" in html


def test_markdown_blocks(view):
    html = md(view, "# Title\n\nSome **bold**, *it*, `code` and ~~old~~.\nNext line.\n\n"
                    "- one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n---\n\n"
                    "| a | b |\n|:--|--:|\n| 1 | 2 |")
    for part in ["<h1>Title</h1>", "<strong>bold</strong>", "<em>it</em>", "<code>code</code>",
                 "<del>old</del>", "<br>Next line.", "<ul><li>one</li><li>two<ul><li>nested",
                 "<ol><li>first</li><li>second</li></ol>", "<blockquote><p>quoted</p>",
                 "<hr>", '<th style="text-align:right">b</th>', "<td>1</td>"]:
        assert part in html, part


def test_code_blocks_are_highlighted_and_an_open_fence_runs_to_the_end(view):
    html = md(view, "```python\ndef f(x):\n    return 'hi'  # note\n```\nafter")
    assert '<span class="gemma-hl-kw">def</span>' in html
    assert '<span class="gemma-hl-st">&#39;hi&#39;</span>' in html
    assert '<span class="gemma-hl-cm"># note</span>' in html
    assert html.endswith("<p>after</p>")
    streaming = md(view, "Here:\n```js\nconst x = 1;")  # the answer is still coming
    assert '<div class="gemma-code">' in streaming and '<span class="gemma-hl-kw">const</span>' in streaming
    assert '<span class="gemma-hl-nu">1</span>' in streaming


def test_unknown_languages_are_escaped_not_highlighted(view):
    html = md(view, "```brainfuck\n<+>\n```")
    assert "&lt;+&gt;" in html and "gemma-hl" not in html


# ---- the view -------------------------------------------------------------------------------


def test_enter_sends_and_shift_enter_adds_a_line(view):
    box = view.locator(".gemma-chat-input")
    box.click()
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert view.evaluate("window.chat.model.sent") == []
    assert box.input_value() == "first line\nsecond line"
    box.press("Enter")
    assert view.evaluate("window.chat.model.sent") == [
        {"type": "ask", "text": "first line\nsecond line"}]
    assert box.input_value() == ""


def test_send_button_sends_and_blank_input_sends_nothing(view):
    view.locator(".gemma-chat-send").click()
    view.locator(".gemma-chat-input").fill("hi")
    view.locator(".gemma-chat-send").click()
    assert view.evaluate("window.chat.model.sent") == [{"type": "ask", "text": "hi"}]


def test_deltas_stream_into_the_answer_then_the_commit_shows_the_speed(view):
    log = [entry(1, "user", "Say hi"), entry(2, "assistant", "", "waiting")]
    view.evaluate("(log) => { window.chat.model.update('_log', log); "
                  "window.chat.model.update('busy', true); "
                  "window.chat.model.update('status', 'answering'); }", log)
    answer = view.locator(".gemma-msg-assistant .gemma-msg-body")
    assert view.locator(".gemma-typing").count() == 1
    assert view.locator(".gemma-chat-send").is_disabled()
    assert view.locator(".gemma-chat-stop").is_enabled()
    view.evaluate("window.chat.model.update('_log', [...window.chat.model.get('_log')"
                  ".slice(0, 1), {...window.chat.model.get('_log')[1], state: 'streaming'}])")
    view.evaluate("window.chat.model.custom({type: 'delta', id: 2, text: 'Hello '})")
    assert answer.inner_text().strip() == "Hello"
    view.evaluate("window.chat.model.custom({type: 'delta', id: 2, text: '**there**'})")
    assert answer.locator("strong").inner_text() == "there"
    view.locator(".gemma-chat-stop").click()
    assert view.evaluate("window.chat.model.sent") == [{"type": "stop"}]
    stats = {"line": "9 prompt tokens · 2 answer tokens · 12.0 tok/s · first token 0.10 s"}
    final = [entry(1, "user", "Say hi"), entry(2, "assistant", "Hello **there**", "done", stats)]
    view.evaluate("(log) => { window.chat.model.update('_log', log); "
                  "window.chat.model.update('busy', false); }", final)
    assert view.locator(".gemma-msg-assistant .gemma-msg-stats").inner_text() == stats["line"]
    assert view.locator(".gemma-cursor").count() == 0
    assert view.locator(".gemma-chat-send").is_enabled()


def test_notices_errors_and_dropped_turns_are_visible(view):
    log = [entry(1, "user", "old", excluded="context"),
           entry(2, "assistant", "old answer", "done", excluded="context"),
           entry(3, "notice", "The oldest 2 messages no longer fit in the context"),
           entry(4, "user", "<b>new</b>", excluded="unanswered"),
           entry(5, "error", "ContextLengthError <b>x</b>")]
    view.evaluate("(log) => window.chat.model.update('_log', log)", log)
    assert view.locator(".gemma-msg-excluded").count() == 3
    assert "not in the context" in view.locator(".gemma-msg-excluded").first.inner_text()
    assert "no longer fit" in view.locator(".gemma-msg-notice").inner_text()
    assert view.locator(".gemma-msg-error").inner_text().endswith("ContextLengthError <b>x</b>")
    assert view.locator(".gemma-msg b").count() == 0


def test_waiting_for_the_model_is_shown(view):
    view.evaluate("window.chat.model.update('status', 'waiting for the model: busy')")
    status = view.locator(".gemma-chat-status")
    assert status.inner_text() == "waiting for the model: busy"
    assert "gemma-waiting" in status.get_attribute("class")


def test_copy_puts_the_message_markdown_on_the_clipboard(view):
    text = "Use `x`:\n```python\nprint(1)\n```"
    view.evaluate("(log) => window.chat.model.update('_log', log)",
                  [entry(1, "assistant", text, "done")])
    message = view.locator(".gemma-msg-assistant")
    message.hover()
    message.locator(".gemma-copy").click()
    assert view.evaluate("navigator.clipboard.readText()") == text
    message.locator(".gemma-copy-code").click()
    assert view.evaluate("navigator.clipboard.readText()") == "print(1)"


def test_new_conversation_and_settings_reach_the_model(view):
    view.locator(".gemma-chat-new").click()
    view.locator(".gemma-chat-settings summary").click()
    view.locator(".gemma-set-system").fill("Be brief.")
    view.locator(".gemma-set-system").blur()
    view.locator(".gemma-set-temperature").fill("-3")
    view.locator(".gemma-set-temperature").blur()
    view.locator(".gemma-set-max-tokens").fill("99999999")
    view.locator(".gemma-set-max-tokens").blur()
    state = view.evaluate("window.chat.model.state")
    assert view.evaluate("window.chat.model.sent") == [{"type": "new"}]
    assert state["system"] == "Be brief."
    assert state["temperature"] == 0  # clamped to >= 0
    assert state["max_tokens"] == 32767  # at most the context minus one
