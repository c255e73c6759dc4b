"""Completions from a live kernel in a page's code editor.

Panel's `CodeEditor` (Ace) has no server-side completion hook, so `KernelCompletions`,
a small `ReactiveHTML` component placed next to the editor, finds that editor's Ace
instance in the page and gives it a completer that asks `POST /api/complete` (with the
page's session cookie and the `X-XSRF-Token` header the API wants from cookie
sessions). Ace shows the matches as the user types (after a `.` or two letters, or on
Ctrl-Space).

The script is plain inline JavaScript, served with the page: nothing comes from a CDN.
It is not a `JSComponent`: Panel loads those through a `blob:` URL that es-module-shims
fetches, which the studio's `connect-src 'self'` policy refuses. When the endpoint
fails (no kernel yet, a viewer without the run right, a timeout) the completer falls
back to Ace's words-in-the-document completer, so the editor stays usable; no error
reaches the user's typing.

    editor = pn.widgets.CodeEditor(language="python")
    layout = with_completions(editor)  # the editor, and the completer beside it
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import panel as pn
import param
from panel.reactive import ReactiveHTML

_RENDER = r"""
const MARK = "gmKernelCompleter";

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

// Ace and the document count UTF-16 units; Jupyter counts code points.
function codePoints(text, units) { return Array.from(text.slice(0, units)).length; }
function units(text, points) {
  let index = 0;
  for (let i = 0; i < points && index < text.length; i++) {
    index += text.codePointAt(index) > 0xffff ? 2 : 1;
  }
  return index;
}

// The element with class `marker`, searched through open shadow roots (Bokeh renders each
// view in its own).
function findHost(root, marker) {
  const direct = root.querySelector("." + marker);
  if (direct) return direct;
  for (const el of root.querySelectorAll("*")) {
    if (el.shadowRoot) {
      const found = findHost(el.shadowRoot, marker);
      if (found) return found;
    }
  }
  return null;
}

function aceEditor(marker) {
  const host = findHost(document, marker);
  const node = host && host.shadowRoot && host.shadowRoot.querySelector(".ace_editor");
  return node && node.env && node.env.editor ? node.env.editor : null;
}

function makeCompleter(model, langTools) {
  const Range = ace.require("ace/range").Range;
  const fallback = langTools && langTools.textCompleter;
  const completer = {
    id: "gristmill-kernel",
    identifierRegexps: [/[a-zA-Z_0-9\u00A2-\uFFFF]/],
    triggerCharacters: ["."],
    getCompletions(editor, session, pos, prefix, callback) {
      const code = session.getValue();
      const at = session.doc.positionToIndex(pos);
      const body = {code, cursor: codePoints(code, at), language: model.language};
      if (model.path) body.path = model.path;
      fetch(model.endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-XSRF-Token": cookie("_xsrf")},
        body: JSON.stringify(body),
      })
        .then((response) => response.ok ? response.json() : Promise.reject(response.status))
        .then((answer) => {
          const start = units(code, answer.cursor_start);
          const n = answer.matches.length;
          callback(null, answer.matches.map((match, i) => ({
            caption: match,
            value: match,
            meta: answer.types[i] || "",
            score: 1000 + n - i,
            completer,
            gmStart: start,
          })));
        })
        .catch(() => {
          if (fallback) fallback.getCompletions(editor, session, pos, prefix, callback);
          else callback(null, []);
        });
    },
    // Jupyter says which span a match replaces; it may start before Ace's prefix.
    insertMatch(editor, data) {
      const session = editor.session;
      const end = editor.getCursorPosition();
      const endIndex = session.doc.positionToIndex(end);
      if (typeof data.gmStart !== "number" || data.gmStart > endIndex) {
        editor.execCommand("insertstring", data.value);
        return;
      }
      const start = session.doc.indexToPosition(data.gmStart);
      session.replace(Range.fromPoints(start, end), data.value);
    },
  };
  return completer;
}

function attach(model) {
  const editor = aceEditor(model.target_class);
  if (!editor || typeof ace === "undefined") return false;
  if (editor[MARK]) return true;
  const langTools = ace.require("ace/ext/language_tools");
  editor[MARK] = makeCompleter(model, langTools);
  editor.completers = [editor[MARK]];
  editor.setOptions({
    enableBasicAutocompletion: true,
    enableLiveAutocompletion: true,
    liveAutocompletionDelay: 250,
    liveAutocompletionThreshold: 2,
  });
  return true;
}

// The editor may render after this component: look for it until it is there.
let tries = 0;
const timer = setInterval(() => {
  if (attach(data) || ++tries > 600) clearInterval(timer);
}, 100);
state.timer = timer;
"""


class KernelCompletions(ReactiveHTML):
    """Gives the `CodeEditor` carrying the CSS class `target_class` completions from a
    live kernel (`POST /api/complete`). Renders nothing visible; place it on the same
    page as the editor (`with_completions` does both)."""

    target_class = param.String(doc="CSS class marking the editor to complete in")
    language = param.String(default="python", doc="language sent to the endpoint")
    path = param.String(default="", doc="workspace path of the script, for the run check")
    endpoint = param.String(default="/api/complete", doc="URL of the completion endpoint")

    _template = "<div id='gm_completions'></div>"
    _scripts: ClassVar[dict[str, str]] = {"render": _RENDER, "remove": "clearInterval(state.timer)"}

    @classmethod
    def attach(cls, editor: pn.widgets.CodeEditor, **params: Any) -> KernelCompletions:
        """Mark `editor` and return the component that completes in it."""
        marker = f"gm-completions-{uuid.uuid4().hex[:12]}"
        editor.css_classes = [*editor.css_classes, marker]
        params.setdefault("language", editor.language or "python")
        return cls(target_class=marker, width=0, height=0, margin=0, **params)


def with_completions(editor: pn.widgets.CodeEditor, **params: Any) -> pn.Column:
    """`editor` with completions from a live kernel, as one layout to place on a page."""
    completions = KernelCompletions.attach(editor, **params)
    return pn.Column(editor, completions, sizing_mode=editor.sizing_mode, margin=0)
