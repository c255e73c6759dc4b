"""The result viewer picks a pane per kind of result; the log view batches its updates."""

from __future__ import annotations

import base64
import socket
import struct
import threading
import urllib.request
import zlib
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import pytest

from kernels.messages import DisplayEvent, RunError, RunResult
from tests.conftest import wait_for
from widgets.results import LogView, ResultView, result_kind


def tiny_png() -> bytes:
    """A valid 1x1 PNG, built by hand so the test needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = tiny_png()
PNG_B64 = base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ([{"id": 1, "name": "a"}, {"id": 2, "name": None, "ok": True}], "records"),
        ([{"id": 1, "tags": ["x"]}], "json"),  # a nested value: not a flat table
        ([], "json"),
        ([1, 2], "json"),
        ({"a": {"b": 1}}, "json"),
        ({"html": "<b>x</b>"}, "rich"),
        ({"png": PNG_B64}, "rich"),
        ({"markdown": "# x"}, "rich"),
        ({"html": "<b>x</b>", "other": 1}, "json"),  # two keys: plain data
        ({"html": 3}, "json"),
        ("text", "text"),
        (3.5, "text"),
        (None, "text"),
        (True, "text"),
    ],
)
def test_result_kind(value: Any, kind: str):
    assert result_kind(value) == kind


def test_records_show_as_a_paginated_read_only_table():
    rows = [{"id": i, "name": f"<b>n{i}</b>", "ok": i % 2 == 0} for i in range(45)]
    view = ResultView(result=rows)
    table = view.result_pane
    assert isinstance(table, pn.widgets.Tabulator)
    pd.testing.assert_frame_equal(table.value, pd.DataFrame.from_records(rows))
    assert (table.pagination, table.page_size, table.disabled, table.show_index) == (
        "remote",
        20,
        True,
        False,
    )
    # Text cells are plain text: a record's "<b>" is shown, not rendered.
    assert table.formatters == {"name": {"type": "plaintext"}}
    assert view.__panel__().objects == [table]


def test_objects_and_lists_show_as_a_json_tree():
    view = ResultView(result={"a": [1, {"b": 2}]}, depth=3)
    assert isinstance(view.result_pane, pn.pane.JSON)
    assert (view.result_pane.object, view.result_pane.depth) == ({"a": [1, {"b": 2}]}, 3)


@pytest.mark.parametrize(
    ("value", "text"), [("hi <b>", "hi <b>"), (3, "3"), (None, "null"), (False, "false")]
)
def test_scalars_show_as_plain_text(value: Any, text: str):
    pane = ResultView(result=value).result_pane
    assert isinstance(pane, pn.pane.Str)
    assert pane.object == text


def test_html_result_is_sanitised():
    pane = ResultView(
        result={"html": '<p onclick="x()">hi<script>alert(1)</script></p>'}
    ).result_pane
    assert isinstance(pane, pn.pane.HTML)
    assert pane.object == "<p>hi</p>"


def test_markdown_result_renders_without_raw_html():
    pane = ResultView(
        result={"markdown": "# Title\n\n<script>x</script> [a](javascript:x)"}
    ).result_pane
    assert isinstance(pane, pn.pane.HTML)
    assert (
        pane.object == "<h1>Title</h1>\n<p>&lt;script&gt;x&lt;/script&gt; [a](javascript:x)</p>\n"
    )


def test_image_result_shows_the_decoded_bytes():
    pane = ResultView(result={"png": PNG_B64}).result_pane
    assert isinstance(pane, pn.pane.PNG)
    assert pane.object == PNG


def test_broken_base64_image_says_so():
    pane = ResultView(result={"png": "not base64!"}).result_pane
    assert isinstance(pane, pn.pane.Alert)
    assert pane.alert_type == "warning"
    assert "not valid base64" in pane.object


def test_display_outputs_show_before_the_result_richest_type_first():
    displays = [
        DisplayEvent(data={"image/png": PNG_B64, "text/plain": "<Figure>"}),
        {"kind": "display", "data": {"text/html": "<i onmouseover=x>t</i>"}, "metadata": {}},
        {"image/svg+xml": "<svg onload='alert(1)'></svg>", "text/plain": "svg"},
        {"text/plain": "just text"},
        {"application/x-unknown": "?"},
    ]
    view = ResultView(result=1, displays=displays)
    png, html, svg, text, unknown = view.display_panes
    assert isinstance(png, pn.pane.PNG) and png.object == PNG
    assert isinstance(html, pn.pane.HTML) and html.object == "<i>t</i>"
    assert isinstance(svg, pn.pane.SVG) and svg.encode is True  # shown through <img>
    assert isinstance(text, pn.pane.Str) and text.object == "just text"
    assert isinstance(unknown, pn.pane.Str) and "application/x-unknown" in unknown.object
    assert view.__panel__().objects == [*view.display_panes, view.result_pane]


def test_error_shows_an_alert_with_the_traceback_folded():
    error = {
        "name": "ValueError",
        "message": "bad <b>value</b>",
        "traceback": "Traceback...\n  line 3",
    }
    view = ResultView(error=error)
    assert view.result_pane is None  # a failed run has no result to show
    alert, details = view.error_view.objects
    assert isinstance(alert, pn.pane.Alert)
    assert alert.alert_type == "danger"
    assert alert.object == r"**ValueError**: bad &lt;b&gt;value&lt;/b&gt;"
    assert isinstance(details, pn.Card)
    assert details.collapsed
    assert details.objects[0].object == "Traceback...\n  line 3"


def test_error_without_traceback_is_just_the_alert():
    view = ResultView(error={"name": "TimeoutError", "message": "stopped after 5 s"})
    assert isinstance(view.error_view, pn.pane.Alert)
    assert view.__panel__().objects == [view.error_view]


def test_from_run_result_shows_the_kernel_error():
    run = RunResult(
        status="error",
        error=RunError(kind="code", name="KeyError", message="'x'", traceback="tb", line=4),
    )
    view = ResultView.from_run_result(run)
    alert = view.error_view.objects[0]
    assert alert.object == r"**KeyError** \(line 4\): 'x'"


def test_changing_the_result_re_renders():
    view = ResultView(result="a")
    view.result = [{"x": 1}]
    assert isinstance(view.result_pane, pn.widgets.Tabulator)
    assert view.__panel__().objects == [view.result_pane]
    view.show_result = False
    assert view.__panel__().objects == []


# -- LogView ---------------------------------------------------------------------------


class ManualScheduler:
    """Stands in for the session's event loop: callbacks run when the test says."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    def __call__(self, callback: Callable[[], None]) -> None:
        with self.lock:
            self.callbacks.append(callback)

    def run(self) -> None:
        with self.lock:
            due, self.callbacks = self.callbacks, []
        for callback in due:
            callback()


def test_outside_a_session_appends_show_at_once_and_stderr_is_marked():
    log = LogView()
    log.append("hello <world>\n")
    log.append("oops\n", "stderr")
    assert log.text == "hello <world>\noops\n"
    assert [pane.object for pane in log.panes] == [
        '<pre class="gm-log">hello &lt;world&gt;\n</pre>',
        '<pre class="gm-log"><span class="gm-stderr">oops\n</span></pre>',
    ]


def test_many_small_appends_make_one_update():
    scheduler = ManualScheduler()
    log = LogView(schedule=scheduler, throttle_ms=0)
    for i in range(1000):
        log.append(f"line {i}\n", "stderr" if i % 10 == 0 else "stdout")
    assert len(scheduler.callbacks) == 1
    assert log.panes == []
    scheduler.run()
    assert len(log.panes) == 1
    assert log.text == "".join(f"line {i}\n" for i in range(1000))
    log.append("more\n")
    assert len(scheduler.callbacks) == 1  # a new batch, a new update
    scheduler.run()
    assert len(log.panes) == 2


def test_a_line_split_across_updates_stays_one_line():
    log = LogView()
    log.append("abc")
    log.append("def\n", "stdout")
    log.append("ghi\n")
    assert [p.object for p in log.panes] == [
        '<pre class="gm-log">abcdef\n</pre>',
        '<pre class="gm-log">ghi\n</pre>',
    ]


def test_old_output_is_merged_and_trimmed():
    log = LogView(max_panes=4, max_chars=1000)
    for i in range(300):
        log.append(f"{i:04d}\n")  # 5 characters a line, one pane per append
    assert len(log.panes) <= 4
    assert len(log.text) <= 1000 + 5 * 4
    assert log.text.endswith("0298\n0299\n")
    assert "earlier characters not shown" in log.panes[0].object
    assert "earlier characters not shown" not in log.text


def test_appends_from_other_threads_all_arrive_in_order():
    scheduler = ManualScheduler()
    log = LogView(schedule=scheduler, throttle_ms=0)

    def write(name: str) -> None:
        for i in range(200):
            log.append(f"{name}{i}\n")

    threads = [threading.Thread(target=write, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    scheduler.run()
    lines = log.text.splitlines()
    assert sorted(lines) == sorted(f"{n}{i}" for n in "abcd" for i in range(200))
    for n in "abcd":
        assert [line for line in lines if line[0] == n] == [f"{n}{i}" for i in range(200)]


def test_clear_starts_over():
    log = LogView()
    log.append("x\n")
    log.clear()
    assert (log.text, log.panes) == ("", [])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_in_a_served_session_a_writer_thread_is_batched_onto_the_session():
    """A real Panel server session: a thread appends, the session's loop shows it."""
    views: list[LogView] = []
    done = threading.Event()

    def app() -> pn.viewable.Viewable:
        log = LogView(throttle_ms=50, max_panes=10_000)  # no merging: count updates
        views.append(log)

        def write() -> None:
            for i in range(2000):
                log.append(f"line {i}\n", "stderr" if i % 7 == 0 else "stdout")
            done.set()

        threading.Thread(target=write, daemon=True).start()
        return log

    port = _free_port()
    server = pn.serve({"/log": app}, port=port, address="127.0.0.1", threaded=True, show=False)
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/log") == 200, what="the page")
        wait_for(lambda: bool(views) and done.is_set(), what="the writer thread")
        log = views[0]
        expected = "".join(f"line {i}\n" for i in range(2000))
        wait_for(lambda: log.text == expected, what="all lines shown")
        # 2000 appends reached the page in a handful of updates, not one each.
        assert 1 <= len(log.panes) < 100
    finally:
        server.stop()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except OSError:
        return 0


def test_views_render_to_bokeh_models():
    view = ResultView(
        result=[{"a": 1, "b": "x"}],
        error={"name": "E", "message": "m", "traceback": "t"},
        displays=[{"image/png": PNG_B64}, {"text/html": "<b>x</b>"}],
    )
    log = LogView()
    log.append("out\n")
    log.append("err\n", "stderr")
    root = pn.Column(view, log).get_root()
    assert root.select_one({"type": pn.models.tabulator.DataTabulator}) is not None
