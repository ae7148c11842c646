// The view of gemma_nb.Chat (an anywidget ES module: no build step, no CDN, no dependency).
//
// State from the kernel: `_log` (entries: id, role, content, state, stats, excluded), `status`,
// `busy`, `model_name`, `context_length` and the settings. While an answer streams, the kernel
// sends {type: "delta", id, text} messages; the view appends them to that entry until the entry
// arrives committed (state "done" or "stopped") with its full text. To the kernel the view
// sends {type: "ask", text}, {type: "stop"} and {type: "new"}.
//
// Markdown is rendered by the small renderer below: the text is HTML-escaped first, then only
// the renderer's own tags are added, and links keep http(s)/mailto targets only.

// ---- Markdown -------------------------------------------------------------------------------

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

/** Markdown to HTML. An unclosed code fence (an answer still streaming) runs to the end. */
export function markdown(text) {
  // NUL marks the inline renderer's placeholders: none may come from the text itself.
  return blocks(text.replace(/\u0000/g, "\uFFFD").replace(/\r\n?/g, "\n").split("\n"));
}

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i += 1;
    } else if ((m = FENCE.exec(line))) {
      const close = new RegExp(`^ {0,3}${m[1][0]}{${m[1].length},}\\s*$`);
      const code = [];
      i += 1;
      while (i < lines.length && !close.test(lines[i])) code.push(lines[i++]);
      i += 1; // the closing fence (or past the end)
      out.push(codeBlock(code.join("\n"), m[2]));
    } else if ((m = HEADING.exec(line))) {
      const level = m[1].length;
      out.push(`<h${level}>${inline(m[2])}</h${level}>`);
      i += 1;
    } else if (RULE.test(line)) {
      out.push("<hr>");
      i += 1;
    } else if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        quoted.push(m[1]);
        i += 1;
      }
      out.push(`<blockquote>${blocks(quoted)}</blockquote>`);
    } else if (ITEM.test(line)) {
      i = list(lines, i, out);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])
               && lines[i + 1].includes("-")) {
      i = table(lines, i, out);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !startsBlock(lines, i)) para.push(lines[i++]);
      out.push(`<p>${para.map((l) => inline(l.trim())).join("<br>")}</p>`);
    }
  }
  return out.join("");
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
    || ITEM.test(line);
}

/** A list starting at lines[i]: items at its indent, deeper lines belong to the item. */
function list(lines, i, out) {
  const first = ITEM.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items = [];
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (m && m[1].length === indent && /\d/.test(m[2]) === ordered) {
      items.push([m[3]]);
      i += 1;
    } else if (lines[i].trim() && leading(lines[i]) > indent && items.length) {
      items[items.length - 1].push(lines[i].slice(Math.min(leading(lines[i]), indent + 4)));
      i += 1;
    } else if (!lines[i].trim() && i + 1 < lines.length && leading(lines[i + 1]) >= indent
               && (ITEM.test(lines[i + 1]) || leading(lines[i + 1]) > indent)) {
      i += 1; // a blank line inside the list
    } else {
      break;
    }
  }
  const tag = ordered ? "ol" : "ul";
  const start = ordered && parseInt(first[2], 10) !== 1 ? ` start="${parseInt(first[2], 10)}"` : "";
  // An item's first line, then its deeper lines as blocks (a nested list, a code block).
  const body = items.map((item) => `<li>${inline(item[0])}${blocks(item.slice(1))}</li>`);
  out.push(`<${tag}${start}>${body.join("")}</${tag}>`);
  return i;
}

function leading(line) {
  return line.length - line.trimStart().length;
}

function cells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

function table(lines, i, out) {
  const head = cells(lines[i]);
  const align = cells(lines[i + 1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : "");
  const style = (k) => (align[k] ? ` style="text-align:${align[k]}"` : "");
  i += 2;
  const rows = [];
  while (i < lines.length && lines[i].includes("|") && lines[i].trim()) rows.push(cells(lines[i++]));
  const th = head.map((c, k) => `<th${style(k)}>${inline(c)}</th>`).join("");
  const trs = rows.map((r) => `<tr>${head.map((_, k) => `<td${style(k)}>${inline(r[k] ?? "")}</td>`).join("")}</tr>`);
  out.push(`<table><thead><tr>${th}</tr></thead><tbody>${trs.join("")}</tbody></table>`);
  return i;
}

/** Inline Markdown: code spans, links, bold, italics, strikethrough; everything escaped. */
export function inline(text) {
  const kept = [];
  const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
  let s = text.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_, __, code) =>
    keep(`<code>${escapeHtml(code.trim() || code)}</code>`));
  s = s.replace(/!?\[([^\]]*)\]\(\s*(\S+?)(?:\s+"[^"]*")?\s*\)/g, (whole, label, url) =>
    /^(https?:|mailto:)/i.test(url)
      ? keep(`<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${escapeHtml(label)}</a>`)
      : whole);
  s = escapeHtml(s)
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  return s.replace(/\u0000(\d+)\u0000/g, (_, k) => kept[Number(k)]);
}

// ---- code highlighting ----------------------------------------------------------------------

const WORDS = (s) => s.split(" ");
const LANGUAGES = {
  python: {
    comment: /#.*/, string: /[rbfuRBFU]{0,2}("""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)/,
    keywords: WORDS("False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case"),
    builtins: WORDS("print len range list dict set tuple str int float bool open enumerate zip map filter sorted sum min max abs isinstance type super object self cls"),
    decorator: /@[\w.]+/,
  },
  clike: {
    comment: /\/\/.*|\/\*[\s\S]*?(?:\*\/|$)/, string: /"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?|`(?:\\.|[^`\\])*`?/,
    keywords: WORDS("abstract as async await break case catch class const continue default delete do else enum export extends false final finally fn for func function go if impl implements import in instanceof interface let loop match mod mut new nil null package private protected pub public return static struct super switch this throw throws true try type typeof undefined use var void while yield"),
    builtins: WORDS("int long short char float double bool boolean string String void size_t auto console Math Object Array Promise println printf fmt std"),
  },
  shell: {
    comment: /#.*/, string: /"(?:\\.|[^"\\])*"?|'[^']*'?/,
    keywords: WORDS("if then else elif fi for while until do done case esac function in return export local set unset source alias"),
    builtins: WORDS("echo cd ls cat grep sed awk pip python git cp mv rm mkdir curl sudo apt-get"),
    variable: /\$\{?\w+\}?/,
  },
  json: { string: /"(?:\\.|[^"\\\n])*"?/, keywords: WORDS("true false null"), builtins: [] },
  sql: {
    comment: /--.*/, string: /'(?:''|[^'])*'?/,
    keywords: WORDS("select from where and or not insert into values update set delete create table drop alter join left right inner outer on group by order having limit as distinct union all null is in like between case when then else end primary key"),
    builtins: WORDS("count sum avg min max coalesce"), ignoreCase: true,
  },
};
const ALIASES = {
  py: "python", python3: "python", ipython: "python", js: "clike", javascript: "clike",
  ts: "clike", typescript: "clike", java: "clike", c: "clike", cpp: "clike", "c++": "clike",
  cs: "clike", csharp: "clike", go: "clike", rust: "clike", rs: "clike", kotlin: "clike",
  swift: "clike", bash: "shell", sh: "shell", zsh: "shell", console: "shell", shell: "shell",
  json: "json", sql: "sql", python: "python",
};

/** Highlighted HTML of `code`: comments, strings, numbers, keywords, builtins. */
export function highlight(code, language) {
  const lang = LANGUAGES[ALIASES[(language || "").toLowerCase()]];
  if (!lang) return escapeHtml(code);
  const parts = [];
  for (const [name, re] of [["comment", lang.comment], ["string", lang.string],
    ["decorator", lang.decorator], ["variable", lang.variable]]) {
    if (re) parts.push(`(?<${name}>${re.source})`);
  }
  parts.push("(?<number>\\b(?:0[xob][\\da-fA-F_]+|\\d[\\d_]*(?:\\.\\d+)?(?:[eE][+-]?\\d+)?)\\b)");
  parts.push("(?<word>[A-Za-z_]\\w*)");
  const re = new RegExp(parts.join("|"), "g"); // not "m": an open string runs to the end
  const keywords = new Set(lang.keywords);
  const builtins = new Set(lang.builtins);
  let html = "";
  let last = 0;
  for (const m of code.matchAll(re)) {
    if (m[0] === "") continue;
    html += escapeHtml(code.slice(last, m.index));
    last = m.index + m[0].length;
    const g = m.groups;
    let cls = "";
    if (g.word !== undefined) {
      const w = lang.ignoreCase ? g.word.toLowerCase() : g.word;
      cls = keywords.has(w) ? "kw" : builtins.has(w) ? "bi" : "";
    } else {
      cls = { comment: "cm", string: "st", decorator: "dc", variable: "vr", number: "nu" }[
        Object.keys(g).find((k) => g[k] !== undefined)];
    }
    html += cls ? `<span class="gemma-hl-${cls}">${escapeHtml(m[0])}</span>` : escapeHtml(m[0]);
  }
  return html + escapeHtml(code.slice(last));
}

function codeBlock(code, language) {
  const label = language ? escapeHtml(language) : "code";
  return `<div class="gemma-code"><div class="gemma-code-head"><span>${label}</span>`
    + `<button class="gemma-button gemma-copy-code" type="button">Copy</button></div>`
    + `<pre><code>${highlight(code, language)}</code></pre></div>`;
}

// ---- the view -------------------------------------------------------------------------------

const ROLE_NAMES = { user: "You", assistant: "Gemma", notice: "Notice", error: "Error" };
const EXCLUDED = { context: "not in the context any more", unanswered: "not answered" };

function copyText(text, button) {
  const done = () => {
    const before = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = before; }, 1500);
  };
  const fallback = () => { // clipboard API needs a secure context; execCommand does not
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    done();
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, fallback);
  } else {
    fallback();
  }
}

const TEMPLATE = `
<div class="gemma-chat-head">
  <span class="gemma-chat-title">Gemma chat</span>
  <span class="gemma-chat-model"></span>
  <span class="gemma-chat-spacer"></span>
  <button class="gemma-button gemma-chat-new" type="button" title="Forget the conversation">New conversation</button>
</div>
<details class="gemma-chat-settings">
  <summary>Settings</summary>
  <label>System prompt <textarea class="gemma-set-system" rows="2" placeholder="(none)"></textarea></label>
  <div class="gemma-chat-settings-row">
    <label>Temperature <input class="gemma-set-temperature" type="number" min="0" max="2" step="0.1"></label>
    <label>Max tokens <input class="gemma-set-max-tokens" type="number" min="1" step="1"></label>
  </div>
</details>
<div class="gemma-chat-log" aria-live="polite"></div>
<div class="gemma-chat-status" role="status"></div>
<div class="gemma-chat-compose">
  <textarea class="gemma-chat-input" rows="2" placeholder="Ask Gemma… (Enter sends, Shift+Enter adds a line)"></textarea>
  <div class="gemma-chat-buttons">
    <button class="gemma-button gemma-primary gemma-chat-send" type="button">Send</button>
    <button class="gemma-button gemma-chat-stop" type="button">Stop</button>
  </div>
</div>`;

function render({ model, el }) {
  el.classList.add("gemma-chat");
  el.innerHTML = TEMPLATE;
  const $ = (selector) => el.querySelector(selector);
  const log = $(".gemma-chat-log");
  const input = $(".gemma-chat-input");
  const sendButton = $(".gemma-chat-send");
  const stopButton = $(".gemma-chat-stop");
  const status = $(".gemma-chat-status");
  const system = $(".gemma-set-system");
  const temperature = $(".gemma-set-temperature");
  const maxTokens = $(".gemma-set-max-tokens");
  const streams = new Map(); // entry id -> text received as deltas so far
  const nodes = new Map(); // entry id -> {key, node}: unchanged entries are not re-rendered

  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const toBottom = () => { log.scrollTop = log.scrollHeight; };

  function entryNode(entry) {
    const node = document.createElement("div");
    node.className = `gemma-msg gemma-msg-${entry.role}`;
    node.dataset.id = entry.id;
    if (entry.state) node.dataset.state = entry.state;
    if (entry.excluded) node.classList.add("gemma-msg-excluded");
    const tag = entry.excluded ? `<span class="gemma-msg-tag">${EXCLUDED[entry.excluded] ?? ""}</span>` : "";
    const copy = entry.role === "user" || entry.role === "assistant"
      ? `<button class="gemma-button gemma-copy" type="button" title="Copy this message">Copy</button>` : "";
    node.innerHTML = `<div class="gemma-msg-head"><span class="gemma-msg-role">${ROLE_NAMES[entry.role] ?? ""}</span>${tag}${copy}</div>`
      + `<div class="gemma-msg-body"></div><div class="gemma-msg-stats"></div>`;
    fillBody(node, entry);
    if (entry.stats) node.querySelector(".gemma-msg-stats").textContent = entry.stats.line;
    return node;
  }

  function fillBody(node, entry) {
    const body = node.querySelector(".gemma-msg-body");
    const live = entry.state === "waiting" || entry.state === "streaming";
    const text = live ? streams.get(entry.id) ?? "" : entry.content;
    if (entry.role === "notice" || entry.role === "error") {
      body.textContent = text;
    } else if (live && !text) {
      body.innerHTML = `<span class="gemma-typing"><i></i><i></i><i></i></span>`;
    } else {
      body.innerHTML = markdown(text) + (live ? `<span class="gemma-cursor"></span>` : "");
    }
    if (entry.state === "stopped" && !text) body.innerHTML = "<p><em>(stopped before the first token)</em></p>";
  }

  function renderLog() {
    const follow = nearBottom();
    const entries = model.get("_log");
    const seen = new Set();
    const children = [];
    for (const entry of entries) {
      seen.add(entry.id);
      if (entry.state !== "waiting" && entry.state !== "streaming") streams.delete(entry.id);
      const key = JSON.stringify(entry);
      let cached = nodes.get(entry.id);
      if (!cached || cached.key !== key) {
        cached = { key, node: entryNode(entry), entry };
        nodes.set(entry.id, cached);
      }
      children.push(cached.node);
    }
    for (const id of [...nodes.keys()]) if (!seen.has(id)) nodes.delete(id);
    for (const id of [...streams.keys()]) if (!seen.has(id)) streams.delete(id);
    log.replaceChildren(...children);
    if (!children.length) {
      log.innerHTML = `<div class="gemma-chat-empty">Ask a question below.</div>`;
    }
    if (follow) toBottom();
  }

  function renderStatus() {
    const busy = model.get("busy");
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
    el.classList.toggle("gemma-busy", busy);
    const text = model.get("status");
    status.textContent = text;
    status.classList.toggle("gemma-waiting", text.startsWith("waiting"));
  }

  function renderHeader() {
    const n = model.get("context_length");
    $(".gemma-chat-model").textContent = model.get("model_name") + (n ? ` · ${n} tokens of context` : "");
    if (n) maxTokens.max = String(n - 1);
  }

  function renderSettings() {
    if (document.activeElement !== system) system.value = model.get("system");
    if (document.activeElement !== temperature) temperature.value = String(model.get("temperature"));
    if (document.activeElement !== maxTokens) maxTokens.value = String(model.get("max_tokens"));
  }

  function onMessage(msg) {
    if (!msg || msg.type !== "delta") return;
    streams.set(msg.id, (streams.get(msg.id) ?? "") + msg.text);
    const cached = nodes.get(msg.id);
    if (!cached) return; // its entry has not arrived yet: renderLog picks the text up
    const follow = nearBottom();
    fillBody(cached.node, { ...cached.entry, state: "streaming" });
    if (follow) toBottom();
  }

  function send() {
    const text = input.value;
    if (!text.trim() || model.get("busy")) return;
    model.send({ type: "ask", text });
    input.value = "";
  }

  input.addEventListener("keydown", (event) => {
    event.stopPropagation(); // typing here must not trigger the notebook's shortcuts
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  for (const field of [system, temperature, maxTokens]) {
    field.addEventListener("keydown", (event) => event.stopPropagation());
  }
  sendButton.addEventListener("click", send);
  stopButton.addEventListener("click", () => model.send({ type: "stop" }));
  $(".gemma-chat-new").addEventListener("click", () => model.send({ type: "new" }));
  system.addEventListener("change", () => {
    model.set("system", system.value);
    model.save_changes();
  });
  temperature.addEventListener("change", () => {
    const value = Math.max(0, Number(temperature.value) || 0);
    model.set("temperature", value);
    model.save_changes();
    temperature.value = String(value);
  });
  maxTokens.addEventListener("change", () => {
    const limit = model.get("context_length") ? model.get("context_length") - 1 : Infinity;
    const value = Math.min(limit, Math.max(1, Math.round(Number(maxTokens.value) || 1)));
    model.set("max_tokens", value);
    model.save_changes();
    maxTokens.value = String(value);
  });
  log.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("gemma-copy-code")) {
      copyText(button.closest(".gemma-code").querySelector("code").textContent, button);
    } else if (button.classList.contains("gemma-copy")) {
      const cached = nodes.get(Number(button.closest(".gemma-msg").dataset.id));
      if (cached) copyText(cached.entry.content || streams.get(cached.entry.id) || "", button);
    }
  });

  const handlers = [
    ["change:_log", renderLog], ["change:busy", renderStatus], ["change:status", renderStatus],
    ["change:model_name", renderHeader], ["change:context_length", renderHeader],
    ["change:system", renderSettings], ["change:temperature", renderSettings],
    ["change:max_tokens", renderSettings], ["msg:custom", onMessage],
  ];
  for (const [name, handler] of handlers) model.on(name, handler);
  renderHeader();
  renderSettings();
  renderStatus();
  renderLog();
  return () => { for (const [name, handler] of handlers) model.off(name, handler); };
}

export default { render };
