"""Showing what a run produced: `ResultView` for its result, `LogView` for its output.

A result is shown by what it is (`result_kind`): a list of flat records as a paginated
table, other lists and objects as a JSON tree, rich values (Windmill's `{"html": ...}`,
`{"png": ...}`, `{"markdown": ...}` and Jupyter display bundles) as HTML, images or
Markdown, anything else as plain text. HTML from a run is always passed through
`sanitize_html` first; Markdown is rendered with raw HTML off and then sanitised too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import html
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import panel as pn
import param
from markdown_it import MarkdownIt

from kernels.messages import DisplayEvent, RunResult
from widgets.sanitize import escape_markdown, sanitize_html

# Result kinds, in the order `result_kind` tries them.
RECORDS, RICH, JSON_TREE, TEXT = "records", "rich", "json", "text"
# A rich value: a one-key object naming its MIME type, as in Windmill's rich results.
_RICH_KEYS = {
    "html": "text/html",
    "markdown": "text/markdown",
    "md": "text/markdown",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "svg": "image/svg+xml",
}
# For a display bundle (several MIME types for one output): the richest one we can show.
_MIME_PREFERENCE = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/svg+xml",
    "text/html",
    "text/markdown",
    "application/json",
    "text/plain",
)
_IMAGE_PANES: dict[str, Any] = {
    "image/png": pn.pane.PNG,
    "image/jpeg": pn.pane.JPG,
    "image/gif": pn.pane.GIF,
}
_SCALARS = (str, int, float, bool, type(None))


def result_kind(value: Any) -> str:
    """How a result is shown: "records", "rich", "json" or "text"."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(row, dict) for row in value)
        and all(isinstance(v, _SCALARS) for row in value for v in row.values())
    ):
        return RECORDS
    if _rich_bundle(value) is not None:
        return RICH
    if isinstance(value, dict | list):
        return JSON_TREE
    return TEXT


def _rich_bundle(value: Any) -> dict[str, Any] | None:
    """`{"png": b64}` -> `{"image/png": b64}`; None when `value` is not a rich value."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, content),) = value.items()
        if key in _RICH_KEYS and isinstance(content, str):
            return {_RICH_KEYS[key]: content}
    return None


def _markdown_html(text: str) -> str:
    # commonmark with raw HTML off: `<script>` in Markdown stays text; links are then
    # checked by the sanitizer like any other HTML.
    return sanitize_html(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def _text_pane(text: str) -> pn.viewable.Viewable:
    return pn.pane.Str(text, sizing_mode="stretch_width", styles={"white-space": "pre-wrap"})


def mime_pane(bundle: Mapping[str, Any]) -> pn.viewable.Viewable:
    """A pane for a MIME bundle (`{"image/png": b64, "text/plain": ...}`), richest first."""
    mime = next((m for m in _MIME_PREFERENCE if m in bundle), None)
    if mime is None:
        return _text_pane(f"(output of type {', '.join(bundle) or 'none'}, which cannot be shown)")
    content = bundle[mime]
    if mime in _IMAGE_PANES:
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError, TypeError):
            return _alert(f"The {mime} output is not valid base64; it cannot be shown.", "warning")
        return _IMAGE_PANES[mime](data, sizing_mode="scale_width", max_width=800)
    if mime == "image/svg+xml":
        # Encoded, the SVG is shown through <img>, where its scripts cannot run.
        return pn.pane.SVG(str(content), encode=True, sizing_mode="scale_width", max_width=800)
    if mime == "text/html":
        return pn.pane.HTML(sanitize_html(str(content)), sizing_mode="stretch_width")
    if mime == "text/markdown":
        return pn.pane.HTML(_markdown_html(str(content)), sizing_mode="stretch_width")
    if mime == "application/json":
        return pn.pane.JSON(content, depth=2, sizing_mode="stretch_width")
    return _text_pane(str(content))


def _alert(text: str, kind: str = "danger") -> pn.pane.Alert:
    return pn.pane.Alert(escape_markdown(text), alert_type=kind, sizing_mode="stretch_width")


def error_pane(error: Mapping[str, Any]) -> pn.viewable.Viewable:
    """An alert naming the error, with its traceback (if any) folded underneath."""
    name = str(error.get("name") or "Error")
    message = str(error.get("message") or "")
    where = f" (line {error['line']})" if isinstance(error.get("line"), int) else ""
    field = f" in argument '{error['field']}'" if error.get("field") else ""
    alert = pn.pane.Alert(
        f"**{escape_markdown(name)}**{escape_markdown(where + field)}: {escape_markdown(message)}",
        alert_type="danger",
        sizing_mode="stretch_width",
    )
    traceback = error.get("traceback")
    if not traceback:
        return alert
    details = pn.Card(
        _text_pane(str(traceback)),
        title="Traceback",
        collapsed=True,
        sizing_mode="stretch_width",
    )
    return pn.Column(alert, details, sizing_mode="stretch_width", margin=0)


def display_bundle(output: Any) -> dict[str, Any] | None:
    """The MIME bundle of a display output: a `DisplayEvent`, its `as_dict`, or a bundle."""
    if isinstance(output, DisplayEvent):
        return dict(output.data)
    if isinstance(output, Mapping):
        if output.get("kind") == "display" and isinstance(output.get("data"), Mapping):
            return dict(output["data"])
        return dict(output)
    return None


class ResultView(pn.viewable.Viewer):
    """A run's outcome: its error (if it failed), its display outputs, then its result."""

    result = param.Parameter(default=None, doc="The run's result (JSON).")
    error = param.Dict(
        default=None,
        allow_None=True,
        doc='The run\'s error: {"name", "message", "traceback"?, "line"?, "field"?}.',
    )
    displays = param.List(
        default=[], doc="Display outputs: MIME bundles or kernels.messages.DisplayEvent."
    )
    show_result = param.Boolean(
        default=True, doc="Whether to show the result (off while a run is still going)."
    )
    page_size = param.Integer(default=20, bounds=(1, None), doc="Rows per page of a table.")
    depth = param.Integer(default=2, doc="Levels of a JSON tree open at first (-1: all).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._layout = pn.Column(sizing_mode="stretch_width")
        self.result_pane: pn.viewable.Viewable | None = None
        self.error_view: pn.viewable.Viewable | None = None
        self.display_panes: list[pn.viewable.Viewable] = []
        self._render()
        self.param.watch(
            lambda _: self._render(), ["result", "error", "displays", "show_result", "page_size"]
        )

    @classmethod
    def from_run_result(
        cls, run: RunResult, displays: Iterable[Any] = (), **params: Any
    ) -> ResultView:
        """A view of a kernel run's `RunResult` and the display events it streamed."""
        error = dataclasses.asdict(run.error) if run.error is not None else None
        return cls(result=run.value, error=error, displays=list(displays), **params)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    @property
    def kind(self) -> str:
        """How the result is shown (see `result_kind`)."""
        return result_kind(self.result)

    def _render(self) -> None:
        self.error_view = error_pane(self.error) if self.error else None
        self.display_panes = [
            mime_pane(bundle)
            for output in self.displays
            if (bundle := display_bundle(output)) is not None
        ]
        show = self.show_result and not (self.error and self.result is None)
        self.result_pane = self._result_pane(self.result) if show else None
        self._layout.objects = [
            p for p in (self.error_view, *self.display_panes, self.result_pane) if p is not None
        ]

    def _result_pane(self, value: Any) -> pn.viewable.Viewable:
        kind = result_kind(value)
        if kind == RECORDS:
            frame = pd.DataFrame.from_records(value)
            text_columns = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
            return pn.widgets.Tabulator(
                frame,
                pagination="remote",
                page_size=self.page_size,
                disabled=True,
                show_index=False,
                sizing_mode="stretch_width",
                # Cells as text, never markup: a record's strings come from the run.
                formatters={c: {"type": "plaintext"} for c in text_columns},
            )
        if kind == RICH:
            bundle = _rich_bundle(value)
            assert bundle is not None
            return mime_pane(bundle)
        if kind == JSON_TREE:
            return pn.pane.JSON(value, depth=self.depth, sizing_mode="stretch_width")
        text = value if isinstance(value, str) else json.dumps(value)
        return _text_pane(text)


# -- logs -------------------------------------------------------------------------------

_LOG_CSS = """
pre.gm-log { margin: 0; font-family: var(--mono-font, ui-monospace, SFMono-Regular, Menlo, monospace);
  font-size: 0.85em; white-space: pre-wrap; overflow-wrap: anywhere; }
.gm-stderr { color: var(--danger-text-color, #c62828); }
.gm-system { color: var(--secondary-text-color, #757575); font-style: italic; }
"""
Segment = tuple[str, str]  # (stream, text)
_STREAM_CLASS = {"stderr": "stderr", "system": "system", "note": "system"}


class LogView(pn.viewable.Viewer):
    """An append-only, auto-scrolling log of a run's output; stderr shows in red.

    `append` may be called very often and from any thread: text is buffered and shown
    at most once per `throttle_ms`, on the session's own thread (Bokeh's
    `add_next_tick_callback`, the one document method safe to call from elsewhere).
    Each flush adds one small pane, so an update sends only the new text; panes are
    merged now and then, keeping the last `max_chars` characters.
    """

    max_chars = param.Integer(default=200_000, bounds=(1_000, None), doc="Characters kept.")
    max_panes = param.Integer(default=64, bounds=(2, None), doc="Panes before they are merged.")
    throttle_ms = param.Integer(default=100, bounds=(0, None), doc="Least time between updates.")
    height = param.Integer(default=300, doc="Height of the log in pixels.")
    schedule = param.Callable(
        default=None,
        doc="Runs a flush later on the session's thread; default: the current document's "
        "add_next_tick_callback, or at once outside a session.",
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._lock = threading.Lock()
        self._pending: list[Segment] = []
        self._scheduled = False
        self._last_flush = 0.0
        self._panes: list[list[Segment]] = []  # the segments each shown pane holds
        self._trimmed = 0
        self._doc = pn.state.curdoc
        self._column = pn.Column(
            scroll=True,
            auto_scroll_limit=200,
            height=self.height,
            sizing_mode="stretch_width",
            styles={"border": "1px solid var(--border-color, #ddd)", "border-radius": "4px"},
        )

    def __panel__(self) -> pn.viewable.Viewable:
        if self._doc is None:
            self._doc = pn.state.curdoc
        return self._column

    @property
    def text(self) -> str:
        """Everything shown so far (after trimming), streams interleaved in order."""
        return "".join(text for pane in self._panes for stream, text in pane if stream != "note")

    @property
    def panes(self) -> list[pn.viewable.Viewable]:
        return list(self._column.objects)

    def append(self, text: str, stream: str = "stdout") -> None:
        """Add output; `stream` is "stdout", "stderr" or "system" (Gristmill's own notes)."""
        if not text:
            return
        with self._lock:
            self._pending.append((stream, text))
            if self._scheduled:
                return
            self._scheduled = True
        scheduler = self._scheduler()
        if scheduler is None:
            self.flush()
        else:
            scheduler(self._flush_when_due)

    def clear(self) -> None:
        """Forget everything shown and pending (a new run in the same view)."""
        with self._lock:
            self._pending.clear()
        self._panes = []
        self._trimmed = 0
        self._column.clear()

    def _scheduler(self) -> Callable[[Callable[[], None]], Any] | None:
        if self.schedule is not None:
            return self.schedule
        doc = self._doc
        if doc is not None and doc.session_context is not None:
            return doc.add_next_tick_callback
        return None

    def _flush_when_due(self) -> None:
        wait = self.throttle_ms / 1000 - (time.monotonic() - self._last_flush)
        doc = self._doc
        if wait > 0 and self.schedule is None and doc is not None:
            doc.add_timeout_callback(self._flush_when_due, int(wait * 1000) + 1)
            return
        self.flush()

    def flush(self) -> None:
        """Show everything appended so far now (also the end of a run's output)."""
        with self._lock:
            new, self._pending = self._pending, []
            self._scheduled = False
        self._last_flush = time.monotonic()
        if not new:
            return
        segments = _merge(new)
        if self._panes and not self._panes[-1][-1][1].endswith("\n"):
            # The last pane ends mid-line: replace it, so the line is not split in two.
            segments = _merge([*self._panes.pop(), *segments])
            self._column.pop(-1)
        if len(self._panes) + 1 > self.max_panes:
            segments = self._compact(segments)
        self._panes.append(segments)
        self._column.append(self._pane(segments))

    def _compact(self, segments: list[Segment]) -> list[Segment]:
        """Merge every pane into one holding the last `max_chars` characters."""
        shown = [s for pane in self._panes for s in pane if s[0] != "note"]
        merged = _merge(shown + segments)
        total = sum(len(t) for _, t in merged)
        cut = max(0, total - self.max_chars)
        kept: list[Segment] = []
        for stream, text in merged:
            if cut >= len(text):
                cut -= len(text)
                self._trimmed += len(text)
                continue
            kept.append((stream, text[cut:]))
            self._trimmed += cut
            cut = 0
        self._panes = []
        self._column.clear()
        if self._trimmed:
            kept.insert(0, ("note", f"… {self._trimmed} earlier characters not shown\n"))
        return kept

    def _pane(self, segments: list[Segment]) -> pn.pane.HTML:
        body = "".join(
            f'<span class="gm-{_STREAM_CLASS[stream]}">{html.escape(text)}</span>'
            if stream in _STREAM_CLASS
            else html.escape(text)
            for stream, text in segments
        )
        return pn.pane.HTML(
            f'<pre class="gm-log">{body}</pre>',
            margin=(0, 5),
            sizing_mode="stretch_width",
            stylesheets=[_LOG_CSS],
        )


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring segments of the same stream."""
    out: list[Segment] = []
    for stream, text in segments:
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + text)
        else:
            out.append((stream, text))
    return out
